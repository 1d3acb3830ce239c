// The stock-kernel pool's accounting and failures, on the simulated kernel (label pool-sim):
// errors named and counted, statistics equal to the kernel's ground truth, and every hugetlb
// file call of a pool's life made to fail in turn with nothing leaked.
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
using hugezero::test::mib;

namespace {

} // namespace

TEST_SUITE("pool-sim")
{
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

    TEST_CASE("a reservoir's statistics print every figure, and derive bytes and rates")
    {
        hugezero::reservoir_statistics s;
        s.which = node0_2m;
        s.state = hugezero::reservoir_state::held_by_floor;
        s.target_pages = 128;
        s.ready_pages = 10;
        s.ready_files = 1;
        s.floor_pages = 4;
        s.leases_out = 1;
        s.leased_pages = 16;
        s.leases_served = 2;
        s.warm_pages_served = 20;
        s.cold_pages_served = 12;
        s.trimmed_pages = 3;
        s.refill_pages = 30;
        s.floor_holds = 2;
        std::ostringstream text;
        text << s;
        CHECK(text.str()
              == "node0/2MiB held by floor: 10/128 pages ready in 1 file, 0 filling, floor 4; 1 lease out (16 pages); "
                 "served 2 leases (20 warm, 12 cold, 3 trimmed); refilled 30 pages (0 interrupted, 2 floor holds, 0 out "
                 "of pages, 0 errors)");
        CHECK(s.ready_bytes() == 20 * mib);
        CHECK(s.refill_bytes_per_second() == 0.0);
        s.refill_time = 1s;
        CHECK(s.refill_bytes_per_second() == doctest::Approx(60.0 * mib));
        hugezero::lease closed;
        text.str("");
        text << closed << " / " << hugezero::reservoir_state::out_of_pages;
        CHECK(text.str() == "lease (closed) / out of pages");
    }
}

// Every hugetlb file call of a whole pool life (refill, leases warm, trimmed and grown, one given
// back and scrubbed, a lower target, the end) made to fail in turn, with each errno the kernel can give: whatever fails,
// the pool reports it and gives every page, file, fd and thread back.
TEST_SUITE("pool-sim")
{
    void one_life(sim_pool_machine& t)
    {
        auto options = hugezero::test::recycling(one_reservoir(node0_2m, 32 * mib, 8 * mib));
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
