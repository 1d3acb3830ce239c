// Named reservoirs on this machine's huge pages (root; each test reserves the pages it needs,
// mounts a hugetlbfs of its own, and undoes both, or skips with the reason): the files are in
// the directory, a lease is a path named as asked that another program can open, the next pool
// adopts (and scrubs) what the previous one left, and names that cannot be had fail clearly.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <optional>
#include <string>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hugezero/hugezero.hpp>

#include "support/expect.hpp"
#include "support/hstates.hpp"
#include "support/hugepages.hpp"
#include "support/hugetlbfs.hpp"
#include "support/pool_pages.hpp"
#include "support/sim_pool.hpp"
#include "support/sizes.hpp"
#include "support/skip.hpp"
#include "support/threads.hpp"

using namespace hugezero::literals;
using namespace std::chrono_literals;
using hugezero::test::all_zero;
using hugezero::test::contains;
using hugezero::test::free_pages;
using hugezero::test::hugetlbfs_mount;
using hugezero::test::node0_2m;
using hugezero::test::one_reservoir;
using hugezero::test::mib;

namespace {

#define REQUIRE_NAMED(reservation, mount)                                                                   \
    HUGEZERO_SKIP_IF(!hugezero::test::running_as_root(), "needs root to reserve huge pages and mount hugetlbfs"); \
    HUGEZERO_SKIP_IF(!(reservation).ok(), (reservation).reason());                                              \
    HUGEZERO_SKIP_IF(!(mount).ok(), (mount).reason())

hugezero::pool_options named(const hugetlbfs_mount& mount, std::uint64_t target, std::uint64_t chunk = 0)
{
    auto options = hugezero::test::recycling(one_reservoir(node0_2m, target, chunk));
    options.reservoirs[0].directory = mount.path();
    options.retry_period = 5ms;
    return options;
}

hugezero::acquire_options called(const std::string& name)
{
    hugezero::acquire_options options;
    options.name = name;
    return options;
}

std::size_t ready_files_in(const hugetlbfs_mount& mount)
{
    const auto names = mount.names();
    return static_cast<std::size_t>(std::count_if(names.begin(), names.end(), [](const std::string& n) {
        return n.rfind("hugezero.node0.2MiB.", 0) == 0;
    }));
}

bool maps_show(const std::string& text)
{
    std::ifstream maps("/proc/self/maps");
    for (std::string line; std::getline(maps, line);)
        if (contains(line, text))
            return true;
    return false;
}

// Writes 0xa5 over every byte of the file at @p path, as a tenant of a previous run might have.
void scribble(const std::filesystem::path& path)
{
    const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    REQUIRE(fd >= 0);
    struct stat st {};
    REQUIRE(::fstat(fd, &st) == 0);
    void* p = ::mmap(nullptr, static_cast<std::size_t>(st.st_size), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    REQUIRE(p != MAP_FAILED);
    std::memset(p, 0xa5, static_cast<std::size_t>(st.st_size));
    ::munmap(p, static_cast<std::size_t>(st.st_size));
    ::close(fd);
}

} // namespace

TEST_SUITE("named")
{
    TEST_CASE("a named reservoir keeps its files in its directory, and a lease is a path named as asked")
    {
        const hugezero::test::hugepage_reservation reservation(2_MiB, 16);
        const auto free_before = free_pages(2_MiB);
        {
            const hugetlbfs_mount mount(2_MiB);
            REQUIRE_NAMED(reservation, mount);
            const auto m = hugezero::machine::open();
            hugezero::pool p(m, named(mount, 16 * mib, 8 * mib));
            p.start();
            REQUIRE(p.wait_filled(30s));
            CHECK(ready_files_in(mount) == 2);
            p.stop();
            auto got = p.acquire(node0_2m, 16 * mib, called("vm-1"));
            REQUIRE_MESSAGE(got, got.message);
            INFO(got.lease);
            CHECK(got.lease.path() == mount.path() / "vm-1");
            CHECK(got.lease.cold_pages() == 4);
            CHECK(ready_files_in(mount) == 1);
            // Another program opens it by its path, as QEMU's mem-path= would.
            const int other = ::open(got.lease.path().c_str(), O_RDWR | O_CLOEXEC);
            REQUIRE(other >= 0);
            struct stat st {};
            CHECK(::fstat(other, &st) == 0);
            CHECK(static_cast<std::uint64_t>(st.st_size) == 16 * mib);
            ::close(other);
            {
                const auto ram = got.lease.map();
                CHECK(all_zero(ram));
                CHECK(maps_show(got.lease.path().string()));
            }
            const auto path = got.lease.path();
            got.lease.close();
            CHECK_FALSE(std::filesystem::exists(path)); // the file goes with the lease
        }
        CHECK(free_pages(2_MiB) == free_before); // unmounted: the ready files' pages too
    }

    TEST_CASE("the next pool on the directory adopts the ready files, scrubs them, and serves them warm")
    {
        const hugezero::test::hugepage_reservation reservation(2_MiB, 16);
        const auto free_before = free_pages(2_MiB);
        {
            const hugetlbfs_mount mount(2_MiB);
            REQUIRE_NAMED(reservation, mount);
            const auto m = hugezero::machine::open();
            {
                hugezero::pool first(m, named(mount, 16 * mib, 8 * mib));
                first.start();
                REQUIRE(first.wait_filled(30s));
            } // its ready files stay
            REQUIRE(ready_files_in(mount) == 2);
            for (const auto& name : mount.names())
                scribble(mount.path() / name); // not to be trusted
            hugezero::pool second(m, named(mount, 16 * mib, 8 * mib));
            CHECK(second.statistics(node0_2m).scrubbing_pages == 8);
            second.start();
            REQUIRE(second.wait_filled(30s));
            const auto s = second.statistics(node0_2m);
            CHECK(s.scrubbed_pages == 8);
            CHECK(s.refill_pages == 0); // nothing allocated again
            second.stop();
            for (int i = 0; i < 2; ++i) {
                auto got = second.acquire(node0_2m, 8 * mib);
                REQUIRE_MESSAGE(got, got.message);
                CHECK(got.lease.cold_pages() == 0);
                CHECK(all_zero(got.lease.map()));
            }
        }
        CHECK(free_pages(2_MiB) == free_before);
    }

    TEST_CASE("a file in use elsewhere, or not whole, is not adopted")
    {
        const hugezero::test::hugepage_reservation reservation(2_MiB, 16);
        const hugetlbfs_mount mount(2_MiB);
        REQUIRE_NAMED(reservation, mount);
        const auto m = hugezero::machine::open();
        {
            hugezero::pool first(m, named(mount, 16 * mib, 8 * mib));
            first.start();
            REQUIRE(first.wait_filled(30s));
        }
        const auto names = mount.names();
        REQUIRE(names.size() == 2);
        const int held = ::open((mount.path() / names[0]).c_str(), O_RDWR | O_CLOEXEC); // a VM of the old pool's?
        REQUIRE(held >= 0);
        const int emptied = ::open((mount.path() / names[1]).c_str(), O_RDWR | O_CLOEXEC);
        REQUIRE(::ftruncate(emptied, 0) == 0); // its pages gone
        ::close(emptied);
        {
            hugezero::pool second(m, named(mount, 16 * mib, 8 * mib));
            CHECK(second.statistics(node0_2m).scrubbing_pages == 0);
            CHECK(std::filesystem::exists(mount.path() / names[0])); // left alone
            CHECK_FALSE(std::filesystem::exists(mount.path() / names[1])); // removed
        }
        ::close(held);
    }

    TEST_CASE("a lease given back goes back under a ready name, scrubbed, and is served again")
    {
        const hugezero::test::hugepage_reservation reservation(2_MiB, 8);
        const hugetlbfs_mount mount(2_MiB);
        REQUIRE_NAMED(reservation, mount);
        const auto m = hugezero::machine::open();
        hugezero::pool p(m, named(mount, 8 * mib));
        hugezero::test::fill_then_pause(p);
        auto got = p.acquire(node0_2m, 8 * mib, called("vm-2"));
        REQUIRE_MESSAGE(got, got.message);
        std::memset(got.lease.map().data(), 0x5a, 8 * mib);
        const auto r = p.recycle(std::move(got.lease));
        REQUIRE_MESSAGE(r.status == hugezero::recycle_status::recycled, r.message);
        CHECK_FALSE(std::filesystem::exists(mount.path() / "vm-2"));
        CHECK(ready_files_in(mount) == 1);
        p.resume();
        REQUIRE(p.wait_filled(30s));
        auto again = p.acquire(node0_2m, 8 * mib);
        REQUIRE_MESSAGE(again, again.message);
        CHECK(again.lease.cold_pages() == 0);
        CHECK(all_zero(again.lease.map()));
    }

    TEST_CASE("a lease name that is taken fails with EEXIST before the pool changes anything, naming the holder, and a bad one throws")
    {
        const hugezero::test::hugepage_reservation reservation(2_MiB, 8);
        const hugetlbfs_mount mount(2_MiB);
        REQUIRE_NAMED(reservation, mount);
        const auto m = hugezero::machine::open();
        hugezero::pool p(m, named(mount, 8 * mib));
        p.start();
        REQUIRE(p.wait_filled(30s));
        p.stop();
        const hugezero::unique_fd holder(::open((mount.path() / "vm-3").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
        const auto got = p.acquire(node0_2m, 8 * mib, called("vm-3"));
        CHECK_FALSE(got);
        CHECK(got.error.value() == EEXIST);
        CHECK_MESSAGE(contains(got.message, "a file named vm-3 is in " + mount.path().string() + " already: a lease not given back yet, "
                                            "held by fd " + std::to_string(holder.get()) + " of process " + std::to_string(::getpid())),
                      got.message);
        CHECK(p.statistics(node0_2m).ready_pages == 4); // untouched
        CHECK_THROWS_AS((void)p.acquire(node0_2m, 8 * mib, called("a/b")), std::invalid_argument);
        CHECK_THROWS_AS((void)p.acquire(node0_2m, 8 * mib, called("hugezero.node0.2MiB.1")), std::invalid_argument);
    }

    TEST_CASE("a directory in use by another pool, not on hugetlbfs, or of another page size is refused, naming it")
    {
        const hugetlbfs_mount mount(2_MiB);
        HUGEZERO_SKIP_IF(!hugezero::test::running_as_root(), "needs root to mount hugetlbfs");
        REQUIRE_MESSAGE(mount.ok(), mount.reason());
        const auto m = hugezero::machine::open();
        const auto refused = [&](const hugezero::pool_options& options, const std::string& says) {
            try {
                hugezero::pool p(m, options);
                FAIL("no error");
            } catch (const std::system_error& e) {
                CHECK_MESSAGE(contains(e.what(), says), e.what());
            }
        };
        {
            hugezero::pool holder(m, named(mount, 8 * mib));
            refused(named(mount, 8 * mib), mount.path().string() + " is in use by another pool");
        }
        hugezero::test::temp_dir plain;
        auto options = one_reservoir(node0_2m, 8 * mib);
        options.reservoirs[0].directory = plain.path();
        refused(options, plain.path().string() + " is not on a hugetlbfs mount");
        options.reservoirs[0].directory = "/nonexistent/hz";
        refused(options, "cannot open the reservoir directory /nonexistent/hz");
        const auto hstates = m.topology().hstates();
        if (std::find(hstates.begin(), hstates.end(), hugezero::test::node0_1g) != hstates.end()) {
            auto gigantic = one_reservoir(hugezero::test::node0_1g, 1_GiB);
            gigantic.reservoirs[0].directory = mount.path();
            refused(gigantic, "2048 KiB pages, not 1GiB");
        }
    }

    TEST_CASE("a cold memfd lease carries the name asked for in /proc/self/maps")
    {
        const hugezero::test::hugepage_reservation reservation(2_MiB, 2);
        HUGEZERO_SKIP_IF(!hugezero::test::running_as_root(), "needs root to reserve huge pages");
        HUGEZERO_SKIP_IF(!reservation.ok(), reservation.reason());
        const auto m = hugezero::machine::open();
        hugezero::pool p(m); // no reservoir: the lease is a new memfd
        auto got = p.acquire(node0_2m, 2 * mib, called("vm-7"));
        REQUIRE_MESSAGE(got, got.message);
        CHECK(got.lease.path().empty());
        const auto ram = got.lease.map();
        CHECK(maps_show("/memfd:vm-7"));
    }

    TEST_CASE("named files on the simulated kernel are refused")
    {
        hugezero::test::sim_pool_machine s(hugezero::sim::machine_builder().nodes(1).pages(2_MiB, 8));
        auto options = one_reservoir(node0_2m, 8 * mib);
        options.reservoirs[0].directory = "/dev/hugepages";
        CHECK_THROWS_WITH_AS(hugezero::pool(s.machine, options), doctest::Contains("named files need the real kernel"),
                             std::invalid_argument);
    }
}
