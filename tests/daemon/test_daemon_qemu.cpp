// The whole path, for real: hugezerod holds a reservoir of 2 MiB pages, hugezero-run gets a
// lease from it and execs Debian's QEMU on it, and a Linux guest kernel (the stock kernel of
// scripts/guest) boots on that memory to its init. The init (busybox) writes a pattern into
// its RAM (a tmpfs file) and then a marker on the serial console; the test waits for the
// marker and finds the pattern through the lease, opened from QEMU's fd. When QEMU exits, the
// connection it inherited closes and the daemon takes the lease back.
// Labels daemon and guest: it runs with the guest suites (ctest --preset guest), which build
// the kernel once (cached outside the clone).
#include <doctest/doctest.h>

#include <cstring>
#include <random>
#include <string>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "daemon/daemon_process.hpp"
#include "daemon/tiny_guest.hpp"
#include "support/hugepages.hpp"
#include "support/skip.hpp"

using hugezero::test::daemon_process;
using hugezero::test::wait_until;
using namespace std::chrono_literals;

TEST_SUITE("daemon")
{
    TEST_CASE("a Linux guest boots through hugezero-run on leased 2 MiB pages, and its writes are in the lease")
    {
        if (!hugezero::test::running_as_root())
            return hugezero::test::report_skip("needs root (huge pages)");
        const auto guest = hugezero::test::tiny_guest::make();
        if (!guest.error.empty() && hugezero::test::required("guest"))
            FAIL(guest.error); // CI: scripts/test requires the guest suites
        if (!guest.error.empty())
            return hugezero::test::report_skip(guest.error);
        hugezero::test::hugepage_reservation pages(hugezero::page_2mib, 200);
        if (!pages.ok())
            return hugezero::test::report_skip(pages.reason());
        daemon_process d("[pool]\nquiet_after_lease = 0ms\n[reservoir]\nnode = 0\npage = 2M\ntarget = 256M\nchunk = 256M\n");
        REQUIRE_MESSAGE(d.wait_ready(), d.log());
        const std::string pattern = "hugezero-pattern-" + std::to_string(std::random_device{}());
        const std::string console = (d.dir() / "console.log").string();
        hugezero::test::child_process run(guest.launch_command(HUGEZERO_RUN, d.socket(), 256, pattern, console));
        const bool booted = wait_until([&] { return hugezero::test::file_text(console).find("HUGEZERO-GUEST-INIT " + pattern) != std::string::npos; },
                                       120s);
        REQUIRE_MESSAGE(booted, hugezero::test::file_text(console));
        CHECK(d.reservoir("leases_out") == 1);
        CHECK(d.reservoir("cold_pages_served") == 0); // all 128 pages warm
        // hugezero-run exec'd QEMU: its pid is run's, the lease its fd 3.
        const std::string lease_path = "/proc/" + std::to_string(run.pid()) + "/fd/3";
        const int fd = ::open(lease_path.c_str(), O_RDONLY | O_CLOEXEC);
        REQUIRE(fd >= 0);
        struct stat st {};
        REQUIRE(::fstat(fd, &st) == 0);
        CHECK(st.st_size == static_cast<off_t>(256) << 20);
        void* map = ::mmap(nullptr, static_cast<std::size_t>(st.st_size), PROT_READ, MAP_SHARED, fd, 0);
        REQUIRE(map != MAP_FAILED);
        const void* found = ::memmem(map, static_cast<std::size_t>(st.st_size), pattern.data(), pattern.size());
        CHECK_MESSAGE(found != nullptr, "the guest's pattern is not in the lease");
        ::munmap(map, static_cast<std::size_t>(st.st_size));
        ::close(fd);
        run.send(SIGTERM);
        (void)run.wait(60s);
        // QEMU's end closed the connection it held: the daemon took the lease back.
        CHECK(wait_until([&] { return d.reservoir("leases_out") == 0 && d.status().daemon.at("leases") == "0"; }, 30s));
        CHECK(d.stop().exit_code == 0);
    }
}
