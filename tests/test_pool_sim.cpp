// The stock-kernel pool on the simulated kernel (label pool-sim): without root or huge pages,
// deterministic, on two nodes, with every hugetlb file call able to fail. The same pool code runs
// on real huge pages in test_pool.cpp; here the kernel's ground truth (where every page of a file
// is, what was allocated and given back, how many pages were being zeroed at once) is visible.
#include <doctest/doctest.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <future>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <signal.h>

#include <hugezero/hugezero.hpp>

#include "support/hstates.hpp"
#include "support/recording_backend.hpp"
#include "support/sim_pool.hpp"
#include "support/threads.hpp"

using namespace hugezero::literals;
using namespace std::chrono_literals;
using hugezero::hstate;
using hugezero::node_id;
using hugezero::sim::file_operation;
using hugezero::test::node0_1g;
using hugezero::test::node0_2m;
using hugezero::test::node1_2m;
using hugezero::test::one_reservoir;
using hugezero::test::sim_pool_machine;
using hugezero::test::text_of;
using clock_type = std::chrono::steady_clock;

namespace {

constexpr std::uint64_t mib = std::uint64_t{1} << 20;
constexpr std::uint64_t gib = std::uint64_t{1} << 30;

// Two nodes, each with 64 free 2 MiB pages (128 MiB) and 4 free 1 GiB pages, all dirty.
hugezero::sim::machine_builder two_nodes()
{
    return hugezero::sim::machine_builder().nodes(2).pages(2_MiB, 64).pages(1_GiB, 4);
}

// Runs @p call in another thread and says whether it returned within @p limit (a wait that
// should return at once must not hang the suite when it does not).
template <class Call>
bool returns_within(std::chrono::milliseconds limit, Call call)
{
    auto done = std::async(std::launch::async, std::move(call));
    const bool in_time = done.wait_for(limit) == std::future_status::ready;
    if (in_time)
        done.get();
    return in_time;
}

std::uint64_t free_pages(const sim_pool_machine& t, const hstate& h) { return t.kernel->counts(h).free(); }

// Fills a reservoir of @p h on a kernel built by @p builder with @p options (quiet, steps of
// @p step_bytes, @p workers per node); checks it ends in @p files files and that nothing leaks.
// Returns what the kernel saw: how many pages it was zeroing at once.
hugezero::sim::file_statistics fill(const hugezero::sim::machine_builder& builder, const hstate& h, std::uint64_t target,
                                    std::uint64_t chunk, unsigned workers, std::uint64_t step_bytes, std::uint64_t files)
{
    sim_pool_machine t(builder);
    {
        auto options = one_reservoir(h, target, chunk);
        options.workers_per_node = workers;
        options.batch_bytes = step_bytes;
        hugezero::pool p(t.machine, options);
        p.start();
        REQUIRE(p.wait_filled(10s));
        CHECK(p.statistics(h).ready_files == files);
    }
    t.check_restored();
    return t.kernel->file_stats();
}

} // namespace

TEST_SUITE("pool-sim")
{
    TEST_CASE("a lease of exactly a ready file is warm, and its pages are on the reservoir's node")
    {
        sim_pool_machine t(two_nodes());
        {
            hugezero::pool p(t.machine, one_reservoir(node1_2m, 32 * mib));
            p.start();
            REQUIRE(p.wait_filled(10s));
            const auto s = p.statistics(node1_2m);
            CHECK(s.ready_pages == 16);
            CHECK(s.ready_files == 1);
            CHECK(s.state == hugezero::reservoir_state::at_target);
            CHECK(free_pages(t, node1_2m) == 64 - 16);
            CHECK(free_pages(t, node0_2m) == 64);
            auto got = p.acquire(node1_2m, 32 * mib);
            REQUIRE_MESSAGE(got, got.message);
            CHECK(got.lease.pages() == 16);
            CHECK(got.lease.cold_pages() == 0);
            CHECK(t.nodes_of(got.lease.fd()) == std::map<node_id, std::uint64_t>{{node_id(1), 16}});
            CHECK(p.statistics(node1_2m).warm_pages_served == 16);
        }
        t.check_restored();
    }

    TEST_CASE("a smaller lease trims the file: the excess goes back to the kernel")
    {
        sim_pool_machine t(two_nodes());
        {
            hugezero::pool p(t.machine, one_reservoir(node0_2m, 32 * mib));
            p.start();
            REQUIRE(p.wait_filled(10s));
            p.stop(); // so the refill does not replace what the lease takes
            auto got = p.acquire(node0_2m, 7 * mib); // rounded up to 4 pages
            REQUIRE_MESSAGE(got, got.message);
            CHECK(got.lease.size() == 8 * mib);
            CHECK(got.lease.cold_pages() == 0);
            CHECK(p.statistics(node0_2m).trimmed_pages == 12);
            CHECK(t.kernel->file_layout(got.lease.fd()).size_pages == 4);
            CHECK(free_pages(t, node0_2m) == 64 - 4);
        }
        t.check_restored();
    }

    TEST_CASE("by default the refill then makes files of the latest lease's size: the next VMs of that size are warm")
    {
        sim_pool_machine t(two_nodes());
        {
            hugezero::pool p(t.machine, one_reservoir(node0_2m, 32 * mib)); // chunk_bytes 0
            p.start();
            REQUIRE(p.wait_filled(10s));
            CHECK(p.statistics(node0_2m).ready_files == 1); // any lease up to the target is warm
            std::vector<hugezero::lease> vms;
            auto first = p.acquire(node0_2m, 8 * mib); // trims the one file
            REQUIRE_MESSAGE(first, first.message);
            CHECK(first.lease.cold_pages() == 0);
            vms.push_back(std::move(first.lease));
            REQUIRE(p.wait_filled(10s));
            p.stop();
            CHECK(p.statistics(node0_2m).ready_files == 4); // of 4 pages each
            for (int i = 0; i < 4; ++i) {
                auto next = p.acquire(node0_2m, 8 * mib);
                REQUIRE_MESSAGE(next, next.message);
                CHECK(next.lease.cold_pages() == 0);
                vms.push_back(std::move(next.lease));
            }
            CHECK(p.statistics(node0_2m).trimmed_pages == 12); // the first lease's only
        }
        t.check_restored();
    }

    TEST_CASE("a chunk_bytes set stays: the refill makes files of that size whatever the leases")
    {
        sim_pool_machine t(two_nodes());
        {
            hugezero::pool p(t.machine, one_reservoir(node0_2m, 32 * mib, 16 * mib));
            p.start();
            REQUIRE(p.wait_filled(10s));
            auto got = p.acquire(node0_2m, 8 * mib);
            REQUIRE_MESSAGE(got, got.message);
            REQUIRE(p.wait_filled(10s));
            p.stop();
            const auto s = p.statistics(node0_2m);
            CHECK(s.ready_files == 2); // the file left and a new one, of 8 pages each (not 4)
            CHECK(s.ready_pages == 16);
        }
        t.check_restored();
    }

    TEST_CASE("a larger lease grows the file with cold pages, allocated on the node asked for")
    {
        sim_pool_machine t(two_nodes());
        {
            hugezero::pool p(t.machine, one_reservoir(node1_2m, 16 * mib));
            p.start();
            REQUIRE(p.wait_filled(10s));
            p.stop();
            auto got = p.acquire(node1_2m, 48 * mib);
            REQUIRE_MESSAGE(got, got.message);
            CHECK(got.lease.pages() == 24);
            CHECK(got.lease.warm_pages() == 8);
            CHECK(got.lease.cold_pages() == 16);
            CHECK(t.nodes_of(got.lease.fd()) == std::map<node_id, std::uint64_t>{{node_id(1), 24}});
            const auto s = p.statistics(node1_2m);
            CHECK(s.cold_pages_served == 16);
            CHECK(s.leases_out == 1);
            CHECK(s.leased_pages == 24);
        }
        t.check_restored();
    }

    TEST_CASE("an hstate without a reservoir is leased cold, on its node")
    {
        sim_pool_machine t(two_nodes());
        {
            hugezero::pool p(t.machine);
            auto got = p.acquire(node_id(1), 1_GiB, 2 * gib);
            REQUIRE_MESSAGE(got, got.message);
            CHECK(got.lease.cold_pages() == 2);
            CHECK(t.nodes_of(got.lease.fd()) == std::map<node_id, std::uint64_t>{{node_id(1), 2}});
            CHECK(text_of(got.lease).rfind("lease of 2GiB on node1/1GiB (2 pages, 2 cold), fd ", 0) == 0);
            CHECK(p.statistics().size() == 1); // only the hstate that served a lease
        }
        t.check_restored();
    }

    TEST_CASE("refill workers take every page from their own node")
    {
        // With the binding broken, the simulated kernel hands out the first node with free
        // pages: node 0. So this fails if a worker or an acquire forgets to bind.
        sim_pool_machine t(two_nodes());
        {
            auto options = one_reservoir(node1_2m, 64 * mib);
            options.workers_per_node = 2;
            options.batch_bytes = 4 * mib;
            hugezero::pool p(t.machine, options);
            p.start();
            REQUIRE(p.wait_filled(10s));
            CHECK(free_pages(t, node0_2m) == 64);
            CHECK(free_pages(t, node1_2m) == 64 - 32);
            auto got = p.acquire(node1_2m, 64 * mib);
            REQUIRE_MESSAGE(got, got.message);
            CHECK(t.nodes_of(got.lease.fd()) == std::map<node_id, std::uint64_t>{{node_id(1), 32}});
        }
        t.check_restored();
    }

    TEST_CASE("a node or page size the machine lacks is ENODEV, and bad options throw")
    {
        sim_pool_machine t(two_nodes());
        hugezero::pool p(t.machine);
        const auto no_node = p.acquire(node_id(5), 2_MiB, 8 * mib);
        CHECK(no_node.error.value() == ENODEV);
        CHECK(no_node.message.rfind("hugezero: cannot lease 8MiB of node5/2MiB huge pages: ", 0) == 0);
        CHECK(p.acquire(node_id(0), 4_MiB, 8 * mib).error.value() == ENODEV);
        CHECK_THROWS_AS((void)p.acquire(node0_2m, 0), std::invalid_argument);
        CHECK_THROWS_AS(hugezero::pool(t.machine, one_reservoir({node_id(3), 2_MiB}, 8 * mib)), std::invalid_argument);
        auto twice = one_reservoir(node0_2m, 8 * mib);
        twice.reservoirs.push_back(twice.reservoirs.front());
        CHECK_THROWS_WITH_AS(hugezero::pool(t.machine, twice), "hugezero: pool_options lists the reservoir node0/2MiB twice",
                             std::invalid_argument);
        CHECK_THROWS_AS(p.set_target(node0_1g, 0), std::invalid_argument);
    }

    TEST_CASE("a lease that would need more cold pages than max_cold_pages fails at once with EAGAIN, allocating nothing")
    {
        sim_pool_machine t(two_nodes());
        {
            hugezero::pool p(t.machine, one_reservoir(node0_2m, 8 * mib));
            p.start();
            REQUIRE(p.wait_filled(10s));
            const auto allocated = t.kernel->file_stats().pages_allocated;
            hugezero::acquire_options warm_only;
            warm_only.max_cold_pages = 0;
            const auto refused = p.acquire(node0_2m, 16 * mib, warm_only);
            CHECK(refused.error == std::error_code(EAGAIN, std::system_category()));
            CHECK(refused.message
                  == "hugezero: cannot lease 16MiB of node0/2MiB huge pages: the reservoir had 4 of its pages ready, and the 4 "
                     "others would be cold (allocated and zeroed now), more than the 0 acquire_options::max_cold_pages allows "
                     "(nothing was allocated): " + std::error_code(EAGAIN, std::system_category()).message());
            CHECK(t.kernel->file_stats().pages_allocated == allocated);
            CHECK(p.statistics(node0_2m).ready_pages == 4); // the file went back
            CHECK(p.statistics(node0_2m).state == hugezero::reservoir_state::at_target); // not quiet: the refill may go on
            auto warm = p.acquire(node0_2m, 8 * mib, warm_only);
            REQUIRE_MESSAGE(warm, warm.message);
            CHECK(warm.lease.cold_pages() == 0);
            REQUIRE(p.wait_filled(10s));
            hugezero::acquire_options some_cold;
            some_cold.max_cold_pages = 4;
            auto mixed = p.acquire(node0_2m, 16 * mib, some_cold);
            REQUIRE_MESSAGE(mixed, mixed.message);
            CHECK(mixed.lease.cold_pages() == 4);
        }
        t.check_restored();
    }

    TEST_CASE("several leases from one call, one per node, all or none: if one cannot be made, the others go back as they were")
    {
        sim_pool_machine t(two_nodes());
        {
            hugezero::pool_options options = one_reservoir(node0_2m, 8 * mib);
            options.reservoirs.push_back({node1_2m, 8 * mib, 0, 0});
            hugezero::pool p(t.machine, options);
            p.start();
            REQUIRE(p.wait_filled(10s));
            p.pause();
            const std::vector<hugezero::lease_request> both{{node0_2m, 8 * mib}, {node1_2m, 8 * mib}};
            auto made = p.acquire(both);
            REQUIRE_MESSAGE(made, made.message);
            REQUIRE(made.leases.size() == 2);
            for (std::size_t i = 0; i < 2; ++i) {
                CHECK(made.leases[i].which() == both[i].which);
                CHECK(made.leases[i].cold_pages() == 0);
                CHECK(t.kernel->file_layout(made.leases[i].fd()).pages_per_node
                      == std::map<hugezero::node_id, std::uint64_t>{{both[i].which.node, 4}});
            }
            made.leases.clear();
            p.resume();
            REQUIRE(p.wait_filled(10s));
            p.pause();
            const auto allocated = t.kernel->file_stats().pages_allocated;
            const std::vector<hugezero::lease_request> too_much{{node0_2m, 16 * mib}, {node1_2m, 1024 * mib}};
            const auto none = p.acquire(too_much);
            CHECK_FALSE(none);
            CHECK(none.leases.empty());
            CHECK(none.error == std::error_code(ENOSPC, std::system_category()));
            CHECK(none.message.rfind("hugezero: lease 2 of 2 not made, and none was: cannot lease 1GiB of node1/2MiB huge pages: ", 0)
                  == 0);
            // The first lease's file went back with its 4 cold pages, ready: a file of 8.
            const auto s = p.statistics(node0_2m);
            CHECK(s.ready_pages == 8);
            CHECK(s.leases_out == 0);
            CHECK(t.kernel->file_stats().pages_allocated == allocated + 4);
        }
        t.check_restored();
    }

    TEST_CASE("an acquire the node cannot serve fails at once with ENOSPC and allocates nothing")
    {
        sim_pool_machine t(two_nodes());
        {
            hugezero::pool p(t.machine, one_reservoir(node0_2m, 16 * mib));
            p.start();
            REQUIRE(p.wait_filled(10s));
            p.stop();
            const auto allocated = t.kernel->file_stats().pages_allocated;
            const auto got = p.acquire(node0_2m, 200 * mib); // 100 pages: 8 ready, 56 free
            CHECK_FALSE(got);
            CHECK(got.error.value() == ENOSPC);
            INFO(got.message);
            CHECK(got.message.find("not enough free 2MiB huge pages on node0: the reservoir had 8 pages ready, 92 more are "
                                   "needed, and the node has 56 free (nothing was allocated)")
                  != std::string::npos);
            CHECK(t.kernel->file_stats().pages_allocated == allocated);
            CHECK(p.statistics(node0_2m).ready_pages == 8); // the file went back
            CHECK(free_pages(t, node0_2m) == 56);
        }
        t.check_restored();
    }

    TEST_CASE("the refill stops at the floor, and so does an acquire")
    {
        sim_pool_machine t(two_nodes());
        {
            auto options = one_reservoir(node0_2m, 128 * mib, 0, 40); // wants 64 pages, may take 24
            options.retry_period = 20ms;
            hugezero::pool p(t.machine, options);
            p.start();
            REQUIRE(hugezero::test::wait_until([&] { return p.statistics(node0_2m).floor_holds >= 1; }));
            CHECK(p.statistics(node0_2m).ready_pages == 24);
            CHECK(p.statistics(node0_2m).state == hugezero::reservoir_state::held_by_floor);
            CHECK(free_pages(t, node0_2m) == 40);
            const auto got = p.acquire(node0_2m, 64 * mib); // 32 pages: 24 ready, 8 cold would dip into the floor
            CHECK(got.error.value() == ENOSPC);
            CHECK(got.message.find("of which the floor of 40 stays free") != std::string::npos);
            CHECK(free_pages(t, node0_2m) == 40);
            auto fits = p.acquire(node0_2m, 48 * mib); // 24 pages: all ready
            REQUIRE_MESSAGE(fits, fits.message);
            CHECK(fits.lease.cold_pages() == 0);
            const auto holds = p.statistics(node0_2m).floor_holds;
            REQUIRE(hugezero::test::wait_until([&] { return p.statistics(node0_2m).floor_holds > holds; }));
            CHECK(free_pages(t, node0_2m) == 40); // nothing refilled below the floor
            fits.lease.close(); // 24 pages back: the refill takes them again, to the floor
            REQUIRE(hugezero::test::wait_until([&] { return p.statistics(node0_2m).ready_pages == 24; }));
            CHECK(free_pages(t, node0_2m) == 40);
        }
        t.check_restored();
    }

    TEST_CASE("set_floor changes the floor while the pool runs: a lower one lets the held refill go on, a higher one holds acquires")
    {
        sim_pool_machine t(two_nodes());
        {
            auto options = one_reservoir(node0_2m, 128 * mib, 0, 40); // wants 64 pages, may take 24
            options.retry_period = 10s; // only set_floor can wake it within the deadline
            hugezero::pool p(t.machine, options);
            p.start();
            REQUIRE(hugezero::test::wait_until([&] { return p.statistics(node0_2m).floor_holds >= 1; }));
            CHECK(p.statistics(node0_2m).ready_pages == 24);
            p.set_floor(node0_2m, 8);
            CHECK(p.statistics(node0_2m).floor_pages == 8);
            REQUIRE(hugezero::test::wait_until([&] { return p.statistics(node0_2m).ready_pages == 56; }));
            CHECK(free_pages(t, node0_2m) == 8);
            p.set_floor(node0_2m, 4);
            const auto got = p.acquire(node0_2m, 120 * mib); // 56 ready, 4 cold: to the new floor
            REQUIRE_MESSAGE(got, got.message);
            CHECK(got.lease.cold_pages() == 4);
            p.set_floor(node0_2m, 64);
            const auto refused = p.acquire(node0_2m, 2 * mib); // 4 free, under the floor
            CHECK(refused.error.value() == ENOSPC);
            CHECK(refused.message.find("the floor of 64") != std::string::npos);
            CHECK_THROWS_AS(p.set_floor(hugezero::hstate{node_id(1), hugezero::page_2mib}, 1), std::invalid_argument);
        }
        t.check_restored();
    }

    TEST_CASE("a reservoir larger than the free pages takes them all and reports out of pages")
    {
        sim_pool_machine t(two_nodes());
        {
            auto options = one_reservoir(node0_2m, 200 * mib);
            options.retry_period = 20ms;
            hugezero::pool p(t.machine, options);
            p.start();
            REQUIRE(hugezero::test::wait_until([&] { return p.statistics(node0_2m).out_of_pages >= 2; }));
            const auto s = p.statistics(node0_2m);
            CHECK(s.ready_pages == 64);
            CHECK(s.state == hugezero::reservoir_state::out_of_pages);
            CHECK(s.last_error.value() == ENOSPC);
            CHECK(s.errors == 0);
            CHECK(free_pages(t, node0_2m) == 0);
        }
        t.check_restored();
    }

    TEST_CASE("wait_filled returns false at once when the refill cannot get there, and takes any timeout")
    {
        sim_pool_machine t(two_nodes());
        auto options = one_reservoir(node0_2m, 128 * mib, 0, 40);
        options.retry_period = 10s; // a held refill stays held for the whole test
        hugezero::pool p(t.machine, options);
        SUBCASE("never started")
        {
            CHECK(returns_within(2s, [&] { CHECK_FALSE(p.wait_filled(std::chrono::nanoseconds(-1))); }));
        }
        SUBCASE("held by the floor")
        {
            p.start();
            REQUIRE(hugezero::test::wait_until([&] { return p.statistics(node0_2m).floor_holds >= 1; }));
            CHECK(returns_within(2s, [&] { CHECK_FALSE(p.wait_filled(std::chrono::nanoseconds(-1))); }));
            CHECK(returns_within(2s, [&] { CHECK_FALSE(p.wait_filled(std::chrono::nanoseconds::max())); }));
        }
        SUBCASE("paused")
        {
            p.pause();
            p.start();
            CHECK(returns_within(2s, [&] { CHECK_FALSE(p.wait_filled(std::chrono::hours(1))); }));
        }
        SUBCASE("filled: the longest timeout there is")
        {
            p.set_target(node0_2m, 16 * mib);
            p.start();
            CHECK(p.wait_filled(std::chrono::nanoseconds::max()));
        }
    }

    TEST_CASE("a lower target gives whole files back, then the excess of one")
    {
        sim_pool_machine t(two_nodes());
        {
            hugezero::pool p(t.machine, one_reservoir(node0_2m, 32 * mib, 16 * mib));
            p.start();
            REQUIRE(p.wait_filled(10s));
            p.stop();
            CHECK(p.statistics(node0_2m).ready_files == 2);
            p.set_target(node0_2m, 6 * mib); // one file of 8 pages goes, the other is cut to 3
            CHECK(p.statistics(node0_2m).ready_pages == 3);
            CHECK(p.statistics(node0_2m).ready_files == 1);
            CHECK(free_pages(t, node0_2m) == 64 - 3);
            p.set_target(node0_2m, 0);
            CHECK(p.statistics(node0_2m).ready_pages == 0);
            CHECK(free_pages(t, node0_2m) == 64);
        }
        t.check_restored();
    }

    TEST_CASE("a file set_target cannot cut stays whole, and the failure is counted")
    {
        sim_pool_machine t(two_nodes());
        {
            hugezero::pool p(t.machine, one_reservoir(node0_2m, 16 * mib));
            p.start();
            REQUIRE(p.wait_filled(10s));
            p.stop();
            t.kernel->fail_next(file_operation::resize, EIO);
            p.set_target(node0_2m, 4 * mib);
            const auto s = p.statistics(node0_2m);
            CHECK(s.ready_pages == 8); // not silently closed
            CHECK(s.errors == 1);
            CHECK(s.last_error.value() == EIO);
            CHECK(free_pages(t, node0_2m) == 56);
            p.set_target(node0_2m, 4 * mib); // works the second time
            CHECK(p.statistics(node0_2m).ready_pages == 2);
        }
        t.check_restored();
    }

    TEST_CASE("an acquire that cannot trim its file gives it back whole and says so")
    {
        sim_pool_machine t(two_nodes());
        {
            hugezero::pool p(t.machine, one_reservoir(node0_2m, 16 * mib));
            p.start();
            REQUIRE(p.wait_filled(10s));
            p.stop();
            t.kernel->fail_next(file_operation::resize, EIO);
            const auto got = p.acquire(node0_2m, 4 * mib);
            CHECK(got.error.value() == EIO);
            CHECK(got.message.find("trimming a reservoir file to the lease's size failed") != std::string::npos);
            CHECK(p.statistics(node0_2m).ready_pages == 8);
            CHECK(p.statistics(node0_2m).errors == 1);
            CHECK(p.statistics(node0_2m).leases_out == 0);
        }
        t.check_restored();
    }

    TEST_CASE("pause returns once no step is in the kernel, and the refill stays still until resume")
    {
        sim_pool_machine t(two_nodes().page_cost(2_MiB, 5ms));
        {
            auto options = one_reservoir(node0_2m, 128 * mib);
            options.batch_bytes = 2 * mib; // one page per step
            options.workers_per_node = 2;
            hugezero::pool p(t.machine, options);
            p.start();
            REQUIRE(hugezero::test::wait_until([&] { return t.kernel->file_stats().pages_zeroing_now == 2; }));
            p.pause();
            CHECK(t.kernel->file_stats().pages_zeroing_now == 0);
            CHECK(p.statistics(node0_2m).state == hugezero::reservoir_state::paused);
            const auto allocated = t.kernel->file_stats().pages_allocated;
            CHECK_FALSE(p.wait_filled(50ms));
            CHECK(t.kernel->file_stats().pages_allocated == allocated);
            CHECK(p.statistics(node0_2m).refill_pages == allocated);
            p.resume();
            REQUIRE(p.wait_filled(10s));
            CHECK(p.statistics(node0_2m).ready_pages == 64);
        }
        t.check_restored();
    }

    TEST_CASE("stop ends the refill after its step, and the file keeps the pages done, in order")
    {
        sim_pool_machine t(two_nodes().page_cost(2_MiB, 2ms));
        {
            auto options = one_reservoir(node0_2m, 128 * mib);
            options.batch_bytes = 2 * mib;
            options.workers_per_node = 2;
            hugezero::pool p(t.machine, options);
            p.start();
            REQUIRE(hugezero::test::wait_until([&] { return p.statistics(node0_2m).refill_pages >= 8; }));
            p.stop();
            const auto s = p.statistics(node0_2m);
            CHECK(s.state == hugezero::reservoir_state::stopped);
            CHECK(s.refills_interrupted == 1);
            CHECK(s.filling_pages == 0);
            CHECK(s.ready_pages < 64);
            CHECK(s.ready_pages + free_pages(t, node0_2m) == 64); // nothing lost or leaked
            CHECK(t.kernel->file_stats().pages_in_files == s.ready_pages);
        }
        t.check_restored();
    }

    TEST_CASE("two workers fill one file side by side")
    {
        // The starter fallocates, the other faults pages in through its window: with both on
        // fallocate() they would run one after the other on the file's inode lock (the
        // simulated kernel holds it as the real one does), and this would see 1.
        const auto k = fill(two_nodes().page_cost(2_MiB, 20ms), node0_2m, 64 * mib, 0, 2, 2 * mib, 1);
        CHECK(k.most_pages_zeroing_in_one_file == 2);
    }

    TEST_CASE("two workers fill two files of one 1 GiB page each side by side")
    {
        // A file with one step leaves the second worker nothing to share: it starts the next
        // file. Each starter fallocates, so neither maps a file while the other zeroes (which
        // would wait for it: mapping takes the memory-map lock exclusively). A page takes 300 ms,
        // so that the second worker starts within it even on a loaded machine (with 30 ms it
        // once came too late under ASan, with other suites beside it).
        const auto k = fill(two_nodes().page_cost(1_GiB, 300ms), node0_1g, 2 * gib, gib, 2, 16 * mib, 2);
        CHECK(k.most_pages_zeroing == 2);
    }

    TEST_CASE("two workers fill one file of two 1 GiB pages side by side")
    {
        // The default chunk: one file. The second worker joins through the window the starter
        // mapped before its first page; had it mapped the file itself, the mapping would have
        // waited for the starter's page on the inode lock, and there would be nothing left.
        const auto k = fill(two_nodes().page_cost(1_GiB, 300ms), node0_1g, 2 * gib, 0, 2, 16 * mib, 1);
        CHECK(k.most_pages_zeroing_in_one_file == 2);
    }

    TEST_CASE("workers held by the floor wait for their retry time instead of asking again and again")
    {
        // Two workers: when one is refused by the floor, the other's step may still be in
        // progress. The refused one must not rejoin the file at once (it would read the
        // counters in a loop for the rest of that step).
        const auto kernel = two_nodes().page_cost(2_MiB, 20ms).build();
        const auto recorder = std::make_shared<hugezero::test::recording_backend>(std::make_shared<hugezero::sim::backend>(kernel));
        const hugezero::machine m(recorder);
        auto options = one_reservoir(node0_2m, 128 * mib, 0, 54); // room for 10 pages above the floor
        options.workers_per_node = 2;
        options.batch_bytes = 2 * mib;
        options.retry_period = 10s;
        hugezero::pool p(m, options);
        recorder->clear_reads();
        p.start();
        REQUIRE(hugezero::test::wait_until([&] { return p.statistics(node0_2m).floor_holds >= 1 && p.statistics(node0_2m).filling_pages == 0; }));
        CHECK(p.statistics(node0_2m).ready_pages == 10);
        const auto reads = recorder->reads().size();
        INFO(reads, " counter reads");
        CHECK(reads <= 3 * (10 + 10)); // three per step, and a few refusals and re-reads (a loop makes hundreds)
        // The other worker may still be finishing its last step when the hold shows (once seen
        // under ASan): it may read the counters for a step or two more (three reads each), then
        // it waits too. A worker asking again and again would read them hundreds of times in
        // these 200 ms.
        CHECK_FALSE(hugezero::test::wait_until([&] { return recorder->reads().size() > reads + 6; }, 200ms));
        MESSAGE((recorder->reads().size() - reads) << " counter reads after the hold showed");
    }

    TEST_CASE("wait_filled sees a refill that cannot make its files, and a stop from another thread")
    {
        sim_pool_machine t(two_nodes().page_cost(2_MiB, 5ms));
        SUBCASE("every file creation fails")
        {
            t.kernel->fail_next(file_operation::create, EPERM, 1000);
            auto options = one_reservoir(node0_2m, 16 * mib);
            options.retry_period = 20ms;
            hugezero::pool p(t.machine, options);
            p.start();
            CHECK(returns_within(2s, [&] { CHECK_FALSE(p.wait_filled(std::chrono::nanoseconds(-1))); }));
            CHECK(p.statistics(node0_2m).last_error.value() == EPERM);
        }
        SUBCASE("stopped while it waits")
        {
            hugezero::pool p(t.machine, one_reservoir(node0_2m, 128 * mib)); // 320 ms to fill
            p.start();
            std::jthread stopper([&] {
                (void)hugezero::test::wait_until([&] { return p.statistics(node0_2m).refill_pages >= 2; });
                p.stop();
            });
            CHECK(returns_within(2s, [&] { CHECK_FALSE(p.wait_filled(std::chrono::nanoseconds(-1))); }));
        }
    }

    TEST_CASE("a released lease does not wake a refill held for pages: they did not come back")
    {
        sim_pool_machine t(two_nodes());
        auto options = one_reservoir(node0_2m, 200 * mib); // 100 pages wanted, 64 there
        options.retry_period = 10s;
        hugezero::pool p(t.machine, options);
        p.start();
        REQUIRE(hugezero::test::wait_until([&] { return p.statistics(node0_2m).out_of_pages >= 1; }));
        auto got = p.acquire(node0_2m, 128 * mib);
        REQUIRE_MESSAGE(got, got.message);
        const hugezero::detail::unique_fd kept(got.lease.release());
        CHECK(p.statistics(node0_2m).leases_out == 0);
        CHECK_FALSE(hugezero::test::wait_until([&] { return p.statistics(node0_2m).state != hugezero::reservoir_state::out_of_pages; }, 100ms));
        CHECK(p.statistics(node0_2m).out_of_pages == 1);
    }

    TEST_CASE("one worker zeroes one page at a time")
    {
        const auto k = fill(two_nodes().page_cost(2_MiB, 1ms), node0_2m, 32 * mib, 0, 1, 2 * mib, 1);
        CHECK(k.most_pages_zeroing == 1);
    }

    TEST_CASE("a lease taken while the reservoir fills gets the pages already done")
    {
        sim_pool_machine t(two_nodes().page_cost(2_MiB, 2ms));
        {
            auto options = one_reservoir(node0_2m, 128 * mib);
            options.batch_bytes = 2 * mib;
            hugezero::pool p(t.machine, options);
            p.start();
            REQUIRE(hugezero::test::wait_until([&] { return p.statistics(node0_2m).refill_pages >= 8; }));
            auto got = p.acquire(node0_2m, 128 * mib);
            REQUIRE_MESSAGE(got, got.message);
            INFO(got.lease);
            CHECK(got.lease.warm_pages() >= 8);
            CHECK(got.lease.pages() == 64);
            CHECK(t.kernel->file_layout(got.lease.fd()).size_pages == 64);
            CHECK(p.statistics(node0_2m).refills_interrupted == 1);
        }
        t.check_restored();
    }

    TEST_CASE("after a lease the pool is quiet for quiet_after_lease")
    {
        sim_pool_machine t(two_nodes());
        {
            auto options = one_reservoir(node0_2m, 32 * mib, 16 * mib);
            options.quiet_after_lease = 200ms;
            hugezero::pool p(t.machine, options);
            p.start();
            REQUIRE(p.wait_filled(10s));
            const auto refilled = p.statistics(node0_2m).refill_pages;
            const auto start = clock_type::now();
            auto got = p.acquire(node0_2m, 16 * mib);
            REQUIRE_MESSAGE(got, got.message);
            CHECK(p.statistics(node0_2m).state == hugezero::reservoir_state::quiet);
            CHECK(p.statistics(node0_2m).refill_pages == refilled);
            REQUIRE(p.wait_filled(10s));
            CHECK(clock_type::now() - start >= 200ms);
            CHECK(p.statistics(node0_2m).refill_pages == refilled + 8);
        }
        t.check_restored();
    }

    TEST_CASE("the refill rate limit spaces steps out")
    {
        sim_pool_machine t(two_nodes());
        auto options = one_reservoir(node0_2m, 64 * mib);
        options.batch_bytes = 8 * mib;
        options.refill_bytes_per_second = 256 * mib;
        hugezero::pool p(t.machine, options);
        const auto start = clock_type::now();
        p.start();
        REQUIRE(p.wait_filled(10s));
        // The first step goes at once, the 7 others each wait their turn: 56 MiB at 256 MiB/s.
        CHECK(clock_type::now() - start >= 200ms);
    }

    TEST_CASE("set_refill_rate changes the limit at once, also for a step waiting for its turn")
    {
        sim_pool_machine t(two_nodes());
        auto options = one_reservoir(node0_2m, 64 * mib);
        options.batch_bytes = 8 * mib;
        options.refill_bytes_per_second = 1024; // the second step's turn would come in 2 hours
        hugezero::pool p(t.machine, options);
        p.start();
        const auto done = [&] { return p.statistics(node0_2m).refill_pages; };
        REQUIRE(hugezero::test::wait_until([&] { return done() == 4; })); // the first step
        CHECK_FALSE(p.wait_filled(50ms));
        CHECK(done() == 4);
        p.set_refill_rate(0);
        CHECK(p.wait_filled(10s));
    }

    TEST_CASE("a cold lease is allocated by QEMU's count of threads, in parallel, every page on the node")
    {
        // 128 MiB on a node of two CPUs: QEMU's rule gives two threads (one per 64 MiB, at most
        // one per CPU), each bound to the node; one thread would zero one page at a time.
        sim_pool_machine t(two_nodes().page_cost(2_MiB, 5ms));
        {
            hugezero::pool p(t.machine, hugezero::pool_options{});
            const auto got = p.acquire(node1_2m, 128 * mib);
            REQUIRE_MESSAGE(got, got.message);
            CHECK(got.lease.cold_pages() == 64);
            CHECK(t.kernel->file_stats().most_pages_zeroing == 2);
            CHECK(t.kernel->file_layout(got.lease.fd()).pages_per_node == std::map<hugezero::node_id, std::uint64_t>{{node1_2m.node, 64}});
        }
        t.check_restored();
    }

    TEST_CASE("a small cold lease is allocated by the calling thread alone")
    {
        sim_pool_machine t(two_nodes().page_cost(2_MiB, 1ms));
        {
            hugezero::pool p(t.machine, hugezero::pool_options{});
            const auto got = p.acquire(node1_2m, 64 * mib); // one thread per 64 MiB
            REQUIRE_MESSAGE(got, got.message);
            CHECK(t.kernel->file_stats().most_pages_zeroing == 1);
        }
        t.check_restored();
    }

    TEST_CASE("a cold allocation stops at the stop token: ECANCELED, nothing kept")
    {
        sim_pool_machine t(two_nodes().page_cost(2_MiB, 5ms)); // 64 pages: 320 ms to cancel in
        {
            auto options = one_reservoir(node0_2m, 0);
            options.batch_bytes = 2 * mib;
            hugezero::pool p(t.machine, options);
            std::stop_source stop;
            std::jthread canceller([&] {
                (void)hugezero::test::wait_until([&] { return t.kernel->file_stats().pages_allocated >= 4; });
                stop.request_stop();
            });
            const auto got = p.acquire(node0_2m, 128 * mib, stop.get_token());
            CHECK(got.error.value() == ECANCELED);
            CHECK(got.message.find("cancelled while allocating pages the reservoir did not have") != std::string::npos);
            CHECK(t.kernel->file_stats().pages_allocated < 64);
        }
        t.check_restored();
    }

    TEST_CASE("a cold allocation on a thread that cancels zeroing with another signal works")
    {
        // The pool sends no signal: a thread whose interrupter uses SIGUSR2 can still acquire.
        sim_pool_machine t(two_nodes());
        hugezero::test::run_in_new_thread([&] {
            const auto interrupter = hugezero::detail::thread_interrupter(SIGUSR2);
            hugezero::pool p(t.machine);
            std::stop_source stop;
            const auto got = p.acquire(node0_2m, 8 * mib, stop.get_token());
            CHECK_MESSAGE(got, got.message);
        });
        t.check_restored();
    }

    TEST_CASE("a pool needs no signal: an application's SIGURG handler is no obstacle")
    {
        struct sigaction previous {};
        struct sigaction mine {};
        mine.sa_handler = [](int) {};
        sigemptyset(&mine.sa_mask);
        REQUIRE(::sigaction(SIGURG, &mine, &previous) == 0);
        {
            sim_pool_machine t(two_nodes());
            hugezero::pool p(t.machine, one_reservoir(node0_2m, 8 * mib));
            p.start();
            CHECK(p.wait_filled(10s));
        }
        ::sigaction(SIGURG, &previous, nullptr);
    }

    TEST_CASE("a worker that cannot bind its memory to the node says so and does not refill")
    {
        sim_pool_machine t(two_nodes());
        t.kernel->fail_next(file_operation::bind, EPERM);
        {
            hugezero::pool p(t.machine, one_reservoir(node0_2m, 16 * mib));
            p.start();
            const auto failures = p.setting_failures();
            REQUIRE(failures.size() == 1);
            CHECK(failures[0].setting == "memory_node");
            CHECK(failures[0].error.value() == EPERM);
            CHECK(text_of(failures[0]) == "hugezero: bind worker memory to node 0: Operation not permitted");
            const auto s = p.statistics(node0_2m);
            CHECK(s.state == hugezero::reservoir_state::failing);
            CHECK(s.last_error.value() == EPERM);
            CHECK_FALSE(p.wait_filled(100ms));
            CHECK(t.kernel->file_stats().pages_allocated == 0);
        }
        t.check_restored();
    }

    TEST_CASE("the errors of acquire name the call that failed, and nothing leaks")
    {
        sim_pool_machine t(two_nodes());
        {
            hugezero::pool p(t.machine);
            SUBCASE("creating the file")
            {
                t.kernel->fail_next(file_operation::create, EPERM);
                const auto got = p.acquire(node0_2m, 8 * mib);
                CHECK(got.error.value() == EPERM);
                CHECK(got.message == "hugezero: cannot lease 8MiB of node0/2MiB huge pages: memfd_create failed (not "
                                     "allowed: check seccomp filters and security modules): Operation not permitted");
            }
            SUBCASE("binding the memory")
            {
                t.kernel->fail_next(file_operation::bind, EPERM);
                const auto got = p.acquire(node0_2m, 8 * mib);
                CHECK(got.error.value() == EPERM);
                CHECK(got.message.find("binding the thread's memory to the node (set_mempolicy) failed (not allowed") != std::string::npos);
            }
            SUBCASE("allocating")
            {
                t.kernel->fail_next(file_operation::allocate, ENOMEM);
                const auto got = p.acquire(node0_2m, 8 * mib);
                CHECK(got.error.value() == ENOMEM);
                CHECK(got.message.find("fallocate failed (the reservoir had 0 pages ready, and 0 of the 4 more pages needed could be allocated)")
                      != std::string::npos);
            }
            SUBCASE("a hugetlb cgroup limit or a race for the last pages")
            {
                t.kernel->fail_next(file_operation::allocate, ENOSPC);
                const auto got = p.acquire(node0_2m, 8 * mib);
                CHECK(got.error.value() == ENOSPC);
                CHECK(got.message.find("(or a hugetlb cgroup limit reached)") != std::string::npos);
            }
        }
        t.check_restored();
    }

    TEST_CASE("a refill error is recorded with its own errno, and the refill tries again")
    {
        sim_pool_machine t(two_nodes());
        {
            auto options = one_reservoir(node0_2m, 16 * mib);
            options.retry_period = 20ms;
            t.kernel->fail_next(file_operation::create, EMFILE);
            hugezero::pool p(t.machine, options);
            p.start();
            CHECK_FALSE(p.wait_filled(10s)); // held: false at once
            REQUIRE(hugezero::test::wait_until([&] { return p.statistics(node0_2m).ready_pages == 8; })); // retried
            const auto s = p.statistics(node0_2m);
            CHECK(s.errors == 1);
            CHECK(s.last_error.value() == EMFILE);
        }
        t.check_restored();
    }

    TEST_CASE("a stray signal in a refill's fallocate is retried, not counted")
    {
        sim_pool_machine t(two_nodes());
        {
            t.kernel->fail_next(file_operation::allocate, EINTR, 3);
            hugezero::pool p(t.machine, one_reservoir(node0_2m, 16 * mib));
            p.start();
            REQUIRE(p.wait_filled(10s));
            CHECK(p.statistics(node0_2m).errors == 0);
            CHECK(p.statistics(node0_2m).ready_pages == 8);
        }
        t.check_restored();
    }

    TEST_CASE("a released lease gives its pages back, which wakes a refill held for pages")
    {
        sim_pool_machine t(two_nodes());
        {
            auto options = one_reservoir(node0_2m, 200 * mib); // 100 pages wanted, 64 there
            options.retry_period = 10s; // only the release may wake it
            hugezero::pool p(t.machine, options);
            p.start();
            REQUIRE(hugezero::test::wait_until([&] { return p.statistics(node0_2m).out_of_pages >= 1; }));
            auto got = p.acquire(node0_2m, 128 * mib);
            REQUIRE_MESSAGE(got, got.message);
            CHECK(got.lease.cold_pages() == 0);
            CHECK(free_pages(t, node0_2m) == 0);
            const auto returned = t.kernel->file_stats().pages_returned;
            got.lease.close(); // the refill may take the pages again at once: count what came back
            CHECK(t.kernel->file_stats().pages_returned == returned + 64);
            CHECK(p.statistics(node0_2m).leases_out == 0);
            REQUIRE(hugezero::test::wait_until([&] { return p.statistics(node0_2m).ready_pages == 64; }, 5s));
        }
        t.check_restored();
    }

    TEST_CASE("release() hands the fd over: the pages stay until the caller closes it")
    {
        sim_pool_machine t(two_nodes());
        hugezero::pool p(t.machine);
        auto got = p.acquire(node0_2m, 8 * mib);
        REQUIRE_MESSAGE(got, got.message);
        const int fd = got.lease.release();
        CHECK(p.statistics(node0_2m).leases_out == 0);
        CHECK(free_pages(t, node0_2m) == 60);
        CHECK(::close(fd) == 0);
        CHECK(free_pages(t, node0_2m) == 64);
    }

    TEST_CASE("1000 acquire and release cycles racing the refill leak nothing")
    {
        sim_pool_machine t(two_nodes());
        {
            auto options = one_reservoir(node0_2m, 8 * mib, 4 * mib);
            options.workers_per_node = 2;
            hugezero::pool p(t.machine, options);
            p.start();
            for (int i = 0; i < 1000; ++i) {
                if (i % 2 == 0)
                    REQUIRE(p.wait_filled(10s));
                auto got = p.acquire(node0_2m, 4 * mib);
                REQUIRE_MESSAGE(got, got.message);
                REQUIRE(got.lease.pages() == 2);
            }
            const auto s = p.statistics(node0_2m);
            CHECK(s.leases_served == 1000);
            CHECK(s.leases_out == 0);
            CHECK(s.warm_pages_served + s.cold_pages_served == 2000);
            CHECK(s.warm_pages_served >= 1000);
        }
        t.check_restored();
    }

    TEST_CASE("the pool's counts agree with the kernel's")
    {
        sim_pool_machine t(two_nodes());
        {
            auto options = one_reservoir(node0_2m, 32 * mib, 8 * mib);
            options.workers_per_node = 2;
            hugezero::pool p(t.machine, options);
            p.start();
            REQUIRE(p.wait_filled(10s));
            std::vector<hugezero::lease> leases;
            for (const std::uint64_t bytes : {8 * mib, 6 * mib, 20 * mib}) {
                auto got = p.acquire(node0_2m, bytes);
                REQUIRE_MESSAGE(got, got.message);
                leases.push_back(std::move(got.lease));
            }
            REQUIRE(p.wait_filled(10s));
            p.stop();
            const auto s = p.statistics(node0_2m);
            const auto k = t.kernel->file_stats();
            CHECK(s.refill_pages + s.cold_pages_served == k.pages_allocated);
            CHECK(k.pages_in_files == s.ready_pages + s.leased_pages);
            CHECK(64 - free_pages(t, node0_2m) == k.pages_in_files);
        }
        t.check_restored();
    }

    TEST_CASE("each refill step with a floor reads three counters: the node's free, the global free and reserved")
    {
        const auto kernel = two_nodes().reserved(2_MiB, 2).build();
        const auto recorder = std::make_shared<hugezero::test::recording_backend>(std::make_shared<hugezero::sim::backend>(kernel));
        const hugezero::machine m(recorder);
        CHECK(m.available(node0_2m) == 64);
        auto options = one_reservoir(node0_2m, 16 * mib, 0, 4);
        options.batch_bytes = 2 * mib; // 8 steps
        hugezero::pool p(m, options);
        recorder->clear_reads();
        p.start();
        REQUIRE(p.wait_filled(10s));
        p.stop();
        const auto reads = recorder->reads();
        CHECK(reads.size() == 8 * 3);
        CHECK(std::set<std::string>(reads.begin(), reads.end())
              == std::set<std::string>{"devices/system/node/node0/hugepages/hugepages-2048kB/free_hugepages",
                                       "kernel/mm/hugepages/hugepages-2048kB/free_hugepages",
                                       "kernel/mm/hugepages/hugepages-2048kB/resv_hugepages"});
    }

    TEST_CASE("available() is the node's free pages, capped by the global free pages not reserved")
    {
        sim_pool_machine t(two_nodes().reserved(2_MiB, 100));
        CHECK(t.machine.available(node0_2m) == 28); // 128 free in all, 100 promised
        CHECK(t.machine.available(node1_2m) == 28);
        sim_pool_machine u(two_nodes().reserved(2_MiB, 10));
        CHECK(u.machine.available(node0_2m) == 64);
        CHECK_THROWS_AS((void)u.machine.available({node_id(4), 2_MiB}), std::invalid_argument);
    }

    TEST_CASE("statistics and states print themselves")
    {
        sim_pool_machine t(two_nodes());
        hugezero::pool p(t.machine, one_reservoir(node0_2m, 16 * mib));
        CHECK(text_of(p.statistics(node0_2m))
              == "node0/2MiB stopped: 0/8 pages ready in 0 files, 0 filling, floor 0; 0 leases out (0 pages); served 0 "
                 "leases (0 warm, 0 cold, 0 trimmed); refilled 0 pages (0 interrupted, 0 floor holds, 0 out of pages, 0 "
                 "errors)");
        p.start();
        REQUIRE(p.wait_filled(10s));
        CHECK(text_of(p.statistics(node0_2m)).rfind("node0/2MiB at target: 8/8 pages ready in 1 file, ", 0) == 0);
        CHECK(p.hstates() == std::vector<hstate>{node0_2m});
        CHECK(p.running());
    }
}

// Every hugetlb file call of a whole pool life (refill, leases warm, trimmed and grown, one given
// back and scrubbed, a lower target, the end) made to fail in turn, with each errno the kernel can give: whatever fails,
// the pool reports it and gives every page, file, fd and thread back.
TEST_SUITE("pool-sim")
{
    void one_life(sim_pool_machine& t)
    {
        auto options = one_reservoir(node0_2m, 32 * mib, 8 * mib);
        options.workers_per_node = 2;
        options.batch_bytes = 4 * mib;
        options.retry_period = 1ms;
        hugezero::pool p(t.machine, options);
        p.start();
        (void)p.wait_filled(5s);
        std::vector<hugezero::lease> leases;
        for (const std::uint64_t bytes : {8 * mib, 4 * mib, 24 * mib}) {
            auto got = p.acquire(node0_2m, bytes);
            if (got)
                leases.push_back(std::move(got.lease));
            else
                CHECK(got.message.rfind("hugezero: cannot lease ", 0) == 0);
        }
        if (!leases.empty()) // given back: looked at, scrubbed, back in the reservoir (or not)
            (void)p.recycle(std::move(leases.front()));
        (void)p.wait_filled(5s);
        p.set_target(node0_2m, 4 * mib);
        leases.clear();
    }

    TEST_CASE("a fault at any hugetlb file call leaks nothing")
    {
        std::uint64_t calls = 0;
        {
            sim_pool_machine t(two_nodes());
            one_life(t);
            t.check_restored();
            calls = t.kernel->file_stats().calls;
        }
        MESSAGE("a pool's life makes ", calls, " hugetlb file calls");
        REQUIRE(calls >= 30);
        for (const int error : {ENOSPC, EINTR, EPERM, ENOMEM}) {
            CAPTURE(error);
            std::uint64_t failed = 0;
            // Two workers make the number and order of calls vary a little from run to run.
            for (std::uint64_t nth = 0; nth < calls + 20; ++nth) {
                CAPTURE(nth);
                sim_pool_machine t(two_nodes());
                t.kernel->fail_file_call(nth, error);
                one_life(t);
                t.check_restored();
                failed += t.kernel->file_stats().calls_failed;
            }
            CHECK(failed >= calls * 3 / 4); // (nearly) every call of a life was made to fail once
        }
    }
}
