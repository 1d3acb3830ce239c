// Debian's real libvirtd, started by a test or a benchmark as root with every file of its own
// in a private directory (tests/libvirt/private-libvirtd: its own mount namespace), set up as
// docs/libvirt.md tells an operator to: a hugetlbfs mount holding hugezerod's named reservoir
// (<mount>/pool) and libvirt's memory_backing_dir (<mount>/ram, hugezerod's place_directories),
// and the hook hugezero-libvirt-hook in hooks/qemu.d. Its /run/hugezerod is the test daemon's
// socket directory, so the hook reaches that daemon. Domains boot the tiny guest.
#ifndef HUGEZERO_TESTS_LIBVIRT_LIBVIRT_HOST_HPP
#define HUGEZERO_TESTS_LIBVIRT_LIBVIRT_HOST_HPP

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/daemon_process.hpp"
#include "daemon/tiny_guest.hpp"
#include "support/hugetlbfs.hpp"
#include "support/subprocess.hpp"
#include "support/temp_dir.hpp"
#include "support/threads.hpp"

namespace hugezero::test {

/// What a domain's RAM is.
enum class domain_ram {
    leased,   ///< our <metadata>, <source type='file'/>, shared: the hook leases it
    prealloc, ///< libvirt's own <hugepages/> with <allocation mode='immediate' threads=N/>
    plain,    ///< ordinary RAM
};

/// One domain of the tiny guest, as XML.
struct domain_spec {
    std::string name = "hz-test";
    std::string uuid = "3f0c2a9e-5b7d-4c1e-8a6f-0d9b8e7c6a51";
    std::vector<unsigned> cells_mib = {64, 64}; ///< guest NUMA cells (one vCPU each)
    domain_ram ram = domain_ram::leased;
    unsigned prealloc_threads = 1;
    std::string cold = "allow";                  ///< the hook's cold= attribute
    std::string pattern = "hugezero";            ///< what the guest's init writes into its RAM
    std::string extra_qemu_arg;                  ///< a <qemu:commandline> argument (a start that fails)
    unsigned dimm_mib = 0;                       ///< a memory device (dimm) on the last cell, if not 0
};

class libvirt_host {
public:
    /// Why this machine cannot run it (empty: it can).
    static std::string missing()
    {
        if (::geteuid() != 0)
            return "needs root (libvirtd, huge pages, hugetlbfs)";
        for (const char* p : {"/usr/sbin/libvirtd", "/usr/bin/virsh"})
            if (::access(p, X_OK) != 0)
                return std::string(p) + " is missing: install libvirt-daemon-system and libvirt-clients (scripts/install-packages tests)";
        if (::getpwnam("libvirt-qemu") == nullptr)
            return "no user libvirt-qemu: install libvirt-daemon-system";
        return {};
    }

    /// Sets up the directory and starts hugezerod (with @p reservoir_keys added to its 2 MiB
    /// reservoir on node 0, and @p pool_keys to its [pool]) and libvirtd.
    libvirt_host(const tiny_guest& guest, const std::string& reservoir_keys, const std::string& pool_keys = "quiet_after_lease = 0ms\n")
    {
        ::chmod(dir_.path().c_str(), 0755); // QEMU, as libvirt-qemu, reads the kernel and writes the console here
        expect(mount_.ok(), mount_.reason());
        std::filesystem::create_directories(pool());
        std::filesystem::create_directories(ram());
        std::filesystem::copy_file(guest.kernel, dir_.path() / "bzImage");
        std::filesystem::copy_file(guest.initramfs, dir_.path() / "initramfs.cpio");
        daemon_ = std::make_unique<daemon_process>("[daemon]\nplace_directories = " + ram().string()
                                                   + "\n[pool]\n" + pool_keys + "[reservoir]\nnode = 0\npage = 2M\ndirectory = "
                                                   + pool().string() + "\n" + reservoir_keys);
        expect(daemon_->wait_ready(), "hugezerod did not start: " + daemon_->log());
        const auto etc = libvirt_dir() / "etc";
        std::filesystem::create_directories(etc / "hooks" / "qemu.d");
        std::ofstream(etc / "qemu.conf") << "memory_backing_dir = \"" << ram().string() << "\"\nhugetlbfs_mount = \""
                                         << mount_.path().string() << "\"\nstdio_handler = \"file\"\n";
        std::filesystem::create_symlink(HUGEZERO_LIBVIRT_HOOK, etc / "hooks" / "qemu.d" / "hugezero");
        start_libvirtd();
    }
    libvirt_host(const libvirt_host&) = delete;
    libvirt_host& operator=(const libvirt_host&) = delete;
    ~libvirt_host()
    {
        for (const auto& name : defined_) {
            (void)virsh({"destroy", name});
            (void)virsh({"undefine", name});
        }
        stop_libvirtd();
        if (daemon_)
            (void)daemon_->stop();
    }

    [[nodiscard]] std::filesystem::path pool() const { return mount_.path() / "pool"; }
    [[nodiscard]] std::filesystem::path ram() const { return mount_.path() / "ram"; }
    [[nodiscard]] std::filesystem::path libvirt_dir() const { return dir_.path() / "libvirt"; }
    [[nodiscard]] std::filesystem::path console(const domain_spec& d) const { return dir_.path() / (d.name + ".console"); }
    [[nodiscard]] daemon_process& daemon() { return *daemon_; }

    /// virsh against this libvirtd.
    process_result virsh(std::vector<std::string> args) const
    {
        args.insert(args.begin(), {"/usr/bin/virsh", "-q", "-c", "qemu:///system?socket=" + (libvirt_dir() / "run" / "libvirt-sock").string()});
        return run_process(args);
    }

    /// Defines @p d (undefined again when the host goes).
    void define(const domain_spec& d)
    {
        const auto xml = dir_.path() / (d.name + ".xml");
        std::ofstream(xml) << domain_xml(d);
        const auto r = virsh({"define", xml.string()});
        expect(r.exit_code == 0, "virsh define " + xml.string() + ": " + r.err);
        defined_.push_back(d.name);
    }

    /// The running domain's QEMU process.
    [[nodiscard]] pid_t qemu_pid(const domain_spec& d) const
    {
        std::ifstream in(libvirt_dir() / "run" / "qemu" / (d.name + ".pid"));
        pid_t pid = 0;
        in >> pid;
        return pid;
    }

    /// Stops libvirtd (SIGTERM: domains keep running) and starts it again.
    void restart_libvirtd()
    {
        stop_libvirtd();
        start_libvirtd();
    }

    /// The domain XML of @p d.
    [[nodiscard]] std::string domain_xml(const domain_spec& d) const
    {
        std::ostringstream x;
        x << "<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>\n  <name>" << d.name << "</name>\n  <uuid>"
          << d.uuid << "</uuid>\n";
        unsigned total = 0;
        for (const unsigned c : d.cells_mib)
            total += c;
        if (d.dimm_mib != 0)
            x << "  <maxMemory slots='2' unit='MiB'>" << total + 2 * d.dimm_mib << "</maxMemory>\n";
        x << "  <memory unit='MiB'>" << total + d.dimm_mib << "</memory>\n  <vcpu>" << d.cells_mib.size() << "</vcpu>\n";
        if (d.ram == domain_ram::leased)
            x << "  <metadata><hugezero:memory xmlns:hugezero='https://hugezero.dev/xmlns/libvirt/1' page='2M' cold='" << d.cold
              << "'/></metadata>\n  <memoryBacking><source type='file'/><access mode='shared'/></memoryBacking>\n";
        else if (d.ram == domain_ram::prealloc)
            x << "  <memoryBacking><hugepages><page size='2048' unit='KiB'/></hugepages><allocation mode='immediate' threads='"
              << d.prealloc_threads << "'/></memoryBacking>\n";
        x << "  <os><type arch='x86_64' machine='pc'>hvm</type><kernel>" << (dir_.path() / "bzImage").string() << "</kernel><initrd>"
          << (dir_.path() / "initramfs.cpio").string() << "</initrd>\n    <cmdline>console=ttyS0 panic=-1 loglevel=1 hz.pattern="
          << d.pattern << "</cmdline></os>\n  <cpu mode='custom'><model fallback='allow'>qemu64</model><numa>\n";
        for (std::size_t i = 0; i < d.cells_mib.size(); ++i)
            x << "    <cell id='" << i << "' cpus='" << i << "' memory='" << d.cells_mib[i] << "' unit='MiB'/>\n";
        x << "  </numa></cpu>\n  <numatune>\n";
        for (std::size_t i = 0; i < d.cells_mib.size(); ++i)
            x << "    <memnode cellid='" << i << "' mode='strict' nodeset='0'/>\n";
        x << "  </numatune>\n  <features><acpi/></features>\n"
             "  <on_poweroff>destroy</on_poweroff><on_reboot>destroy</on_reboot><on_crash>destroy</on_crash>\n"
             "  <devices><emulator>/usr/bin/qemu-system-x86_64</emulator><serial type='file'><source path='"
          << console(d).string() << "'/></serial><console type='file'><source path='" << console(d).string()
          << "'/><target type='serial'/></console><memballoon model='none'/>";
        if (d.dimm_mib != 0)
            x << "<memory model='dimm'><target><size unit='MiB'>" << d.dimm_mib << "</size><node>" << d.cells_mib.size() - 1
              << "</node></target></memory>";
        x << "</devices>\n";
        if (!d.extra_qemu_arg.empty())
            x << "  <qemu:commandline><qemu:arg value='" << d.extra_qemu_arg << "'/></qemu:commandline>\n";
        x << "</domain>\n";
        return x.str();
    }

private:
    // Setting up failed: a test fails with @p why, a benchmark stops with it.
    static void expect(bool ok, const std::string& why)
    {
        if (!ok)
            throw std::runtime_error(why);
    }

    void start_libvirtd()
    {
        const auto socket = libvirt_dir() / "run" / "libvirt-sock";
        std::filesystem::remove(socket);
        libvirtd_ = std::make_unique<child_process>(std::vector<std::string>{
            std::string(HUGEZERO_SOURCE_DIR) + "/tests/libvirt/private-libvirtd", libvirt_dir().string(),
            std::filesystem::path(daemon_->socket()).parent_path().string()});
        const bool up = wait_until([&] { return std::filesystem::exists(socket) && virsh({"list"}).exit_code == 0; },
                                   std::chrono::seconds(60));
        expect(up, "libvirtd did not answer within 60 s; its log: " + file_text(libvirt_dir() / "log" / "libvirtd.log"));
    }

    void stop_libvirtd()
    {
        if (!libvirtd_)
            return;
        libvirtd_->send(SIGTERM);
        (void)libvirtd_->wait(std::chrono::seconds(30));
        libvirtd_.reset();
    }

    temp_dir dir_;
    hugetlbfs_mount mount_{page_2mib};
    std::unique_ptr<daemon_process> daemon_;
    std::unique_ptr<child_process> libvirtd_;
    std::vector<std::string> defined_;
};

} // namespace hugezero::test

#endif
