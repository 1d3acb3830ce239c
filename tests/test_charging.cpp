// Charging a reservoir's pages to a tenant's cgroup, on this machine's huge pages and cgroup v2
// (root; each test reserves the pages it needs, makes its cgroups and undoes both, or skips with
// the reason). The test process itself moves into a cgroup of its own, so that both sides of
// the charge can be read: hugetlb.2MB.current of the reservoir's cgroup and of the pool's.
#include <doctest/doctest.h>

#include <chrono>
#include <cstring>
#include <optional>
#include <string>

#include <sys/mman.h>

#include <hugezero/hugezero.hpp>

#include "support/cgroups.hpp"
#include "support/expect.hpp"
#include "support/hstates.hpp"
#include "support/hugepages.hpp"
#include "support/pool_pages.hpp"
#include "support/sim_pool.hpp"
#include "support/sizes.hpp"
#include "support/skip.hpp"
#include "support/threads.hpp"

using namespace hugezero::literals;
using namespace std::chrono_literals;
using hugezero::test::node0_2m;
using hugezero::test::one_reservoir;
using hugezero::test::test_cgroup;
using resources = hugezero::test::pool_resources;
using hugezero::test::mib;

namespace {

#define REQUIRE_CHARGING(reservation, tenant, pool_side)                                                     \
    HUGEZERO_SKIP_IF(!hugezero::test::running_as_root(), "needs root to reserve huge pages and make cgroups"); \
    HUGEZERO_SKIP_IF(!(reservation).ok(), (reservation).reason());                                             \
    HUGEZERO_SKIP_IF(!(tenant).ok(), (tenant).reason());                                                       \
    HUGEZERO_SKIP_IF(!(pool_side).ok(), (pool_side).reason())

hugezero::pool_options charged_reservoir(std::uint64_t target, const test_cgroup& tenant)
{
    auto options = one_reservoir(node0_2m, target);
    options.reservoirs[0].cgroup = tenant.path();
    options.retry_period = 5ms;
    return options;
}

} // namespace

TEST_SUITE("charging")
{
    TEST_CASE("a charged reservoir's pages, warm and cold, are charged to its cgroup and not to the pool's")
    {
        const hugezero::test::hugepage_reservation reservation(2_MiB, 24);
        const test_cgroup tenant("hz-tenant");
        const test_cgroup pool_side("hz-pool");
        REQUIRE_CHARGING(reservation, tenant, pool_side);
        const hugezero::test::process_in_cgroup moved(tenant.root(), pool_side.path());
        REQUIRE(moved.ok());
        const resources before(2_MiB);
        {
            const auto m = hugezero::machine::open();
            hugezero::pool p(m, charged_reservoir(32 * mib, tenant));
            p.start();
            REQUIRE(p.wait_filled(30s));
            CHECK(tenant.charged(2_MiB) == 32 * mib);
            CHECK(pool_side.charged(2_MiB) == 0);
            p.stop(); // no refill meanwhile
            auto got = p.acquire(node0_2m, 40 * mib); // 4 pages more, cold: allocated for this call
            REQUIRE_MESSAGE(got, got.message);
            CHECK(got.lease.cold_pages() == 4);
            CHECK(tenant.charged(2_MiB) == 40 * mib);
            CHECK(pool_side.charged(2_MiB) == 0);
            const auto ram = got.lease.map();
            CHECK(hugezero::test::all_zero(ram));
        }
        CHECK(tenant.charged(2_MiB) == 0); // the pages went back, and their charge with them
        CHECK(pool_side.charged(2_MiB) == 0);
        before.check_restored(); // the helper processes are gone too
    }

    TEST_CASE("the same reservoir without a cgroup is charged to the pool's process, as any allocation")
    {
        const hugezero::test::hugepage_reservation reservation(2_MiB, 16);
        const test_cgroup tenant("hz-tenant");
        const test_cgroup pool_side("hz-pool");
        REQUIRE_CHARGING(reservation, tenant, pool_side);
        const hugezero::test::process_in_cgroup moved(tenant.root(), pool_side.path());
        REQUIRE(moved.ok());
        const auto m = hugezero::machine::open();
        hugezero::pool p(m, one_reservoir(node0_2m, 16 * mib));
        p.start();
        REQUIRE(p.wait_filled(30s));
        CHECK(pool_side.charged(2_MiB) == 16 * mib);
        CHECK(tenant.charged(2_MiB) == 0);
    }

    TEST_CASE("a charged reservoir stops at its cgroup's hugetlb limit, and a lease beyond it fails with ENOSPC")
    {
        const hugezero::test::hugepage_reservation reservation(2_MiB, 24);
        const test_cgroup tenant("hz-tenant");
        const test_cgroup pool_side("hz-pool");
        REQUIRE_CHARGING(reservation, tenant, pool_side);
        REQUIRE(tenant.limit(2_MiB, 8 * mib));
        const resources before(2_MiB);
        {
            const auto m = hugezero::machine::open();
            hugezero::pool p(m, charged_reservoir(32 * mib, tenant));
            p.start();
            REQUIRE(hugezero::test::wait_until(
                [&] { return p.statistics(node0_2m).state == hugezero::reservoir_state::out_of_pages; }, 30s));
            CHECK(p.statistics(node0_2m).ready_bytes() == 8 * mib);
            CHECK(tenant.charged(2_MiB) == 8 * mib);
            p.stop();
            const auto got = p.acquire(node0_2m, 16 * mib);
            CHECK_FALSE(got);
            CHECK(got.error.value() == ENOSPC);
            CHECK(hugezero::test::contains(got.message, "hugetlb limit of its cgroup " + tenant.path().string()));
            CHECK(tenant.charged(2_MiB) == 8 * mib); // the failed lease kept nothing
        }
        CHECK(tenant.charged(2_MiB) == 0);
        before.check_restored();
    }

    TEST_CASE("a helper started while a lease is mapped and open holds neither: the lease is still recycled")
    {
        const hugezero::test::hugepage_reservation reservation(2_MiB, 16);
        const test_cgroup tenant("hz-tenant");
        const test_cgroup pool_side("hz-pool");
        REQUIRE_CHARGING(reservation, tenant, pool_side);
        const auto m = hugezero::machine::open();
        hugezero::pool first(m, hugezero::test::recycling(one_reservoir(node0_2m, 8 * mib)));
        hugezero::test::fill_then_pause(first);
        auto got = first.acquire(node0_2m, 8 * mib);
        REQUIRE_MESSAGE(got, got.message);
        std::optional<hugezero::pool> charged;
        {
            const auto ram = got.lease.map();
            std::memset(ram.data(), 0x5a, ram.size());
            // The charged pool starts its first helper now, a copy of this process, which has
            // the lease's fd and mapping; it lives on while the lease is given back.
            charged.emplace(m, charged_reservoir(8 * mib, tenant));
        }
        const auto result = first.recycle(std::move(got.lease));
        CHECK_MESSAGE(result.status == hugezero::recycle_status::recycled, result.message);
    }

    TEST_CASE("a reservoir's cgroup that cannot be used fails the pool's construction, naming it")
    {
        const auto m = hugezero::machine::open();
        const auto fails = [&](const std::filesystem::path& cgroup, const std::string& says) {
            auto options = one_reservoir(node0_2m, 8 * mib);
            options.reservoirs[0].cgroup = cgroup;
            try {
                hugezero::pool p(m, options);
                FAIL("no error for " << cgroup);
            } catch (const std::system_error& e) {
                INFO(e.what());
                CHECK(hugezero::test::contains(e.what(), cgroup.string()));
                CHECK(hugezero::test::contains(e.what(), says));
            }
        };
        fails("/nonexistent/hz-cgroup", "cannot open cgroup");
        fails("/tmp", "is not a cgroup v2 directory");
        if (const auto mount = hugezero::test::cgroup2_mount()) {
            const test_cgroup tenant("hz-tenant");
            if (tenant.ok()) {
                // It delegates a controller to child cgroups: cgroup v2 places no process there.
                REQUIRE(hugezero::test::write_line(tenant.path() / "cgroup.subtree_control", "+hugetlb"));
                fails(tenant.path(), "cannot start a process in cgroup");
            }
        }
    }

    TEST_CASE("a reservoir's cgroup on the simulated kernel is refused: charging runs real processes")
    {
        hugezero::test::sim_pool_machine s(hugezero::sim::machine_builder().nodes(1).pages(2_MiB, 8));
        auto options = one_reservoir(node0_2m, 8 * mib);
        options.reservoirs[0].cgroup = "/sys/fs/cgroup";
        CHECK_THROWS_WITH_AS(hugezero::pool(s.machine, options),
                             doctest::Contains("charging to a cgroup needs the real kernel"), std::invalid_argument);
    }
}
