// The stock-kernel pool's refill, on the simulated kernel (label pool-sim): workers on their
// node, the floor, targets, wait_filled, pause and stop, workers sharing a file, the quiet period
// after a lease, the rate limit, and what wakes a held refill.
#include <doctest/doctest.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
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
#include "support/sizes.hpp"
#include "support/threads.hpp"

using namespace hugezero::literals;
using namespace std::chrono_literals;
using hugezero::hstate;
using hugezero::node_id;
using hugezero::sim::file_operation;
using hugezero::test::free_pages;
using hugezero::test::node0_1g;
using hugezero::test::node0_2m;
using hugezero::test::node1_2m;
using hugezero::test::one_reservoir;
using hugezero::test::returns_within;
using hugezero::test::sim_pool_machine;
using hugezero::test::text_of;
using hugezero::test::two_nodes;
using clock_type = std::chrono::steady_clock;
using hugezero::test::gib;
using hugezero::test::mib;

namespace {

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
            p.pause(); // else the refill may take the 4 pages the lower floor frees before the acquire does
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
        const hugezero::unique_fd kept(got.lease.release());
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
}
