// libvirt, natively (docs/libvirt.md): Debian's libvirtd, started by the test in a private
// directory, starts TCG domains whose RAM hugezero-libvirt-hook leases from hugezerod. Label
// libvirt (and guest: it boots the stock kernel of scripts/guest, so it runs with the guest
// suites, after the fixture that builds it). Root, libvirt-daemon-system and 224 free 2 MiB
// pages; skipped without them, unless HUGEZERO_TEST_REQUIRE lists libvirt (CI).
#include <doctest/doctest.h>

#include <cstring>
#include <filesystem>
#include <string>

#include <fcntl.h>
#include <pwd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/real_pages.hpp"
#include "libvirt/libvirt_host.hpp"
#include "support/skip.hpp"
#include "support/threads.hpp"

using hugezero::test::domain_spec;
using hugezero::test::libvirt_host;
using hugezero::test::wait_until;

namespace {

std::string trimmed(std::string s)
{
    while (!s.empty() && (s.back() == '\n' || s.back() == ' '))
        s.pop_back();
    return s;
}

// What the machine lacks for these tests (fails on CI, skips elsewhere), else empty.
std::string unmet(const hugezero::test::tiny_guest& guest)
{
    std::string why = libvirt_host::missing();
    if (why.empty())
        why = guest.error;
    return why;
}

bool skipped_for(const std::string& why)
{
    if (why.empty())
        return false;
    if (hugezero::test::required("libvirt"))
        FAIL(why);
    hugezero::test::report_skip(why);
    return true;
}

// Whether @p pages were reserved: where CI requires these tests, a failure; elsewhere a skip
// (real_pages reported it).
bool reserved(const hugezero::test::real_pages& pages)
{
    if (!pages.ok && hugezero::test::required("libvirt"))
        FAIL("the free 2 MiB pages these tests need cannot be reserved");
    return pages.ok;
}

// The directory libvirt made for running domain @p d's RAM files.
std::filesystem::path domain_ram_dir(const libvirt_host& host, const std::string& id, const domain_spec& d)
{
    return host.ram() / "libvirt" / "qemu" / (id + "-" + d.name);
}

// Whether @p path (a lease's file) holds @p pattern.
bool holds(const std::filesystem::path& path, const std::string& pattern)
{
    const hugezero::unique_fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    struct stat st {};
    if (!fd || ::fstat(fd.get(), &st) != 0 || st.st_size == 0)
        return false;
    const auto size = static_cast<std::size_t>(st.st_size);
    void* map = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd.get(), 0);
    if (map == MAP_FAILED)
        return false;
    const bool found = ::memmem(map, size, pattern.data(), pattern.size()) != nullptr;
    ::munmap(map, size);
    return found;
}

std::string status_word(libvirt_host& host, const char* key)
{
    hugezerod::client c(host.daemon().socket());
    return c.status().daemon.at(key);
}

// Every reservoir file of the pool's directory is a ready one: no lease's name is left.
void check_no_lease_left(const libvirt_host& host)
{
    std::string left;
    const bool none = wait_until([&] {
        left.clear();
        for (const auto& e : std::filesystem::directory_iterator(host.pool()))
            if (e.path().filename().string().rfind("hugezero.", 0) != 0)
                left += e.path().string() + " ";
        return left.empty();
    });
    CHECK_MESSAGE(none, "lease files left: " << left);
}

} // namespace

TEST_SUITE("libvirt")
{
    TEST_CASE("a domain of two guest cells and a dimm starts on three warm leases owned by QEMU's user, survives a libvirtd restart, and gives them back")
    {
        const auto guest = hugezero::test::tiny_guest::make();
        if (skipped_for(unmet(guest)))
            return;
        hugezero::test::real_pages pages(224);
        if (!reserved(pages))
            return;
        {
            libvirt_host host(guest, "target = 192M\nchunk = 64M\n");
            domain_spec d;
            d.pattern = "hugezero-libvirt-" + std::to_string(::getpid());
            d.dimm_mib = 32;
            host.define(d);
            const auto started = host.virsh({"start", d.name});
            REQUIRE_MESSAGE(started.exit_code == 0, started.err);
            const std::string id = trimmed(host.virsh({"domid", d.name}).out);
            const auto dir = domain_ram_dir(host, id, d);
            const passwd* qemu = ::getpwnam("libvirt-qemu");
            REQUIRE(qemu != nullptr);
            struct stat owner {};
            REQUIRE(::stat(dir.c_str(), &owner) == 0);
            CHECK(owner.st_uid == qemu->pw_uid);
            CHECK(status_word(host, "detached") == "3");
            for (const char* alias : {"ram-node0", "ram-node1", "dimm0"}) {
                CAPTURE(alias);
                struct stat placed {};
                struct stat leased {};
                REQUIRE(::stat((dir / alias).c_str(), &placed) == 0);
                REQUIRE(::stat((host.pool() / ("libvirt-" + d.uuid + "-" + alias)).c_str(), &leased) == 0);
                CHECK(placed.st_ino == leased.st_ino); // QEMU opened the lease
                CHECK(placed.st_uid == owner.st_uid);
                CHECK(placed.st_gid == owner.st_gid);
                CHECK((placed.st_mode & 07777) == 0600);
                CHECK(placed.st_size == (std::string(alias) == "dimm0" ? 32 : 64) << 20);
            }
            const std::string maps = hugezero::test::file_text("/proc/" + std::to_string(host.qemu_pid(d)) + "/maps");
            CHECK(maps.find((dir / "ram-node0").string()) != std::string::npos);
            CHECK(maps.find((dir / "ram-node1").string()) != std::string::npos);
            CHECK(maps.find((dir / "dimm0").string()) != std::string::npos);
            const bool booted = wait_until([&] { return hugezero::test::file_text(host.console(d)).find("HUGEZERO-GUEST-INIT") != std::string::npos; },
                                           std::chrono::seconds(120));
            REQUIRE_MESSAGE(booted, hugezero::test::file_text(host.console(d)));
            CHECK((holds(dir / "ram-node0", d.pattern) || holds(dir / "ram-node1", d.pattern)));
            CHECK(hugezero::test::metric(host.daemon().metrics(), "hugezero_cold_pages_served_total{node=\"0\",page_size=\"2M\"}") == 0);

            host.restart_libvirtd();
            CHECK(trimmed(host.virsh({"domstate", d.name}).out) == "running");
            CHECK(status_word(host, "detached") == "3");

            const auto destroyed = host.virsh({"destroy", d.name});
            REQUIRE_MESSAGE(destroyed.exit_code == 0, destroyed.err);
            CHECK(wait_until([&] { return status_word(host, "detached") == "0"; }, std::chrono::seconds(30)));
            CHECK_FALSE(std::filesystem::exists(dir));
            check_no_lease_left(host);
            CHECK(host.virsh({"undefine", d.name}).exit_code == 0);
            CHECK(wait_until([&] { return hugezero::test::metric(host.daemon().metrics(), "hugezero_leases_out{node=\"0\",page_size=\"2M\"}") == 0; }));
        } // the daemon stops and the mount goes, with the reservoir's files
        pages.check_none_lost();
    }

    TEST_CASE("a domain that fails to start leaks no lease: QEMU refuses its command line, or the hook cannot lease its RAM warm")
    {
        const auto guest = hugezero::test::tiny_guest::make();
        if (skipped_for(unmet(guest)))
            return;
        hugezero::test::real_pages pages(96);
        if (!reserved(pages))
            return;
        {
            libvirt_host host(guest, "target = 64M\nchunk = 32M\n");
            domain_spec bad_qemu;
            bad_qemu.name = "hz-bad-qemu";
            bad_qemu.cells_mib = {32, 32};
            bad_qemu.extra_qemu_arg = "-no-such-option";
            host.define(bad_qemu);
            const auto refused = host.virsh({"start", bad_qemu.name});
            CHECK(refused.exit_code != 0);
            CHECK(hugezero::test::metric(host.daemon().metrics(), "hugezerod_leases_granted_total") == 2); // placed, then QEMU failed
            CHECK(wait_until([&] { return status_word(host, "detached") == "0"; }));
            check_no_lease_left(host);

            domain_spec too_big;
            too_big.name = "hz-too-big";
            too_big.uuid = "7d1e2f3a-4b5c-4d6e-8f70-8192a3b4c5d6";
            too_big.cells_mib = {32, 64}; // the first fits the reservoir, the second does not: the first goes back
            too_big.cold = "refuse";
            host.define(too_big);
            const auto cold = host.virsh({"start", too_big.name});
            CHECK(cold.exit_code != 0);
            CHECK_MESSAGE(cold.err.find("hugezero: domain hz-too-big: start/begin: hugezerod: ") != std::string::npos, cold.err);
            CHECK(status_word(host, "detached") == "0");
            check_no_lease_left(host);
            CHECK(wait_until([&] { return hugezero::test::metric(host.daemon().metrics(), "hugezero_leases_out{node=\"0\",page_size=\"2M\"}") == 0; }));
        }
        pages.check_none_lost();
    }
}
