// A Linux guest small enough to boot in seconds under TCG: the stock kernel that scripts/guest
// builds (`scripts/guest build`, or the ctest fixture guest.kernels.build; never here), and an initramfs of a static busybox whose init writes a pattern (from the
// kernel command line, hz.pattern=) into a tmpfs file, that is into guest RAM, then prints
// "HUGEZERO-GUEST-INIT <pattern>" on the serial console and waits. Used by the daemon's QEMU
// test and by bench_daemon.
#ifndef HUGEZERO_TESTS_DAEMON_TINY_GUEST_HPP
#define HUGEZERO_TESTS_DAEMON_TINY_GUEST_HPP

#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <sys/stat.h>
#include <unistd.h>

#include "support/subprocess.hpp"
#include "support/temp_dir.hpp"

namespace hugezero::test {

inline constexpr const char* tiny_guest_init = R"(#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox mount -t tmpfs -o size=64m tmpfs /mnt
pattern=$(/bin/busybox sed -n 's/.*hz\.pattern=\([^ ]*\).*/\1/p' /proc/cmdline)
/bin/busybox yes "$pattern" | /bin/busybox head -c 4194304 > /mnt/pattern
echo "HUGEZERO-GUEST-INIT $pattern" > /dev/ttyS0
exec /bin/busybox sleep 100000
)";

class tiny_guest {
public:
    std::string qemu;      ///< qemu-system-x86_64
    std::string kernel;    ///< bzImage
    std::string initramfs; ///< the cpio archive
    std::string error;     ///< Why it cannot be had (then the rest is empty).

    /// Finds QEMU and the stock kernel (built and cached by `scripts/guest build`: a guest test
    /// requires the fixture that builds it) and writes the initramfs.
    static tiny_guest make()
    {
        tiny_guest g;
        for (const char* q : {"/usr/bin/qemu-system-x86_64", "/usr/local/bin/qemu-system-x86_64"})
            if (::access(q, X_OK) == 0)
                g.qemu = q;
        if (g.qemu.empty())
            return failed("qemu-system-x86_64 is missing: install qemu-system-x86");
        if (::access("/bin/busybox", X_OK) != 0)
            return failed("/bin/busybox is missing: install busybox-static");
        const auto built = run_process({std::string(HUGEZERO_SOURCE_DIR) + "/scripts/guest", "kernel", "--kernel", "stock"});
        if (built.exit_code != 0)
            return failed(built.err);
        std::istringstream paths(built.out);
        std::getline(paths, g.kernel);
        g.dir_ = std::make_shared<temp_dir>();
        const auto root = g.dir_->path() / "root";
        std::filesystem::create_directories(root / "bin");
        for (const char* d : {"proc", "dev", "mnt"})
            std::filesystem::create_directories(root / d);
        std::filesystem::copy_file("/bin/busybox", root / "bin" / "busybox");
        std::ofstream(root / "init") << tiny_guest_init;
        ::chmod((root / "init").c_str(), 0755);
        g.initramfs = (g.dir_->path() / "initramfs.cpio").string();
        const auto archived = run_process({"/bin/sh", "-c", "cd \"$0\" && find . | /bin/busybox cpio -o -H newc > \"$1\" 2>/dev/null",
                                           root.string(), g.initramfs});
        if (archived.exit_code != 0)
            return failed("cannot write the initramfs: " + archived.err);
        return g;
    }

    /// QEMU's arguments for a guest of @p mib MiB whose RAM is the file @p mem_path (shared),
    /// its console to @p console; with @p qmp a QMP socket at that path.
    [[nodiscard]] std::vector<std::string> qemu_args(unsigned mib, const std::string& mem_path, const std::string& pattern,
                                                     const std::string& console, const std::string& qmp = "",
                                                     const std::string& backend = "") const
    {
        const std::string size = std::to_string(mib) + "M";
        std::vector<std::string> a = {qemu, "-accel", "tcg,thread=multi", "-cpu", "max", "-smp", "1", "-m", size,
                                      "-object",
                                      backend.empty() ? "memory-backend-file,id=m0,size=" + size + ",mem-path=" + mem_path + ",share=on"
                                                      : backend,
                                      "-machine", "memory-backend=m0", "-kernel", kernel, "-initrd", initramfs, "-append",
                                      "console=ttyS0 panic=-1 loglevel=1 hz.pattern=" + pattern, "-nographic", "-no-reboot",
                                      "-monitor", "none", "-serial", "file:" + console};
        if (!qmp.empty()) {
            a.emplace_back("-qmp");
            a.push_back("unix:" + qmp + ",server=on,wait=off");
        }
        return a;
    }

    /// hugezero-run (@p run) asking @p socket for @p mib MiB on node 0, then QEMU on it.
    [[nodiscard]] std::vector<std::string> launch_command(const std::string& run, const std::string& socket, unsigned mib,
                                                          const std::string& pattern, const std::string& console,
                                                          const std::string& qmp = "") const
    {
        std::vector<std::string> a = {run, "--quiet", "--socket", socket, "--size", std::to_string(mib) + "M", "--"};
        for (auto& arg : qemu_args(mib, "{path}", pattern, console, qmp))
            a.push_back(std::move(arg));
        return a;
    }

private:
    static tiny_guest failed(std::string why)
    {
        tiny_guest g;
        g.error = std::move(why);
        return g;
    }
    std::shared_ptr<temp_dir> dir_; // the initramfs lives as long as the guest description
};

} // namespace hugezero::test

#endif
