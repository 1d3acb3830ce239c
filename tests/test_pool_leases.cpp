// The stock-kernel pool's leases, on the simulated kernel (label pool-sim): a lease warm from a
// ready file, trimmed or grown with cold pages on its node; several at once, all or none; the
// refusals (ENODEV, ENOSPC, EAGAIN) that allocate nothing; cold allocation by QEMU's count of
// pinned threads, cancellable; release(). Deterministic, without root or huge pages, with the
// kernel's ground truth (where every page is, what was allocated) in sight.
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

    TEST_CASE("files of a small lease do not keep a larger one cold: refused once, the reservoir is reshaped and it is warm next")
    {
        sim_pool_machine t(two_nodes());
        {
            hugezero::pool p(t.machine, one_reservoir(node0_2m, 32 * mib)); // chunk_bytes 0: follows the leases
            p.start();
            REQUIRE(p.wait_filled(10s));
            auto small = p.acquire(node0_2m, 2 * mib); // the chunk is one page from now on
            REQUIRE_MESSAGE(small, small.message);
            small.lease.close();
            REQUIRE(p.wait_filled(10s));
            REQUIRE(p.statistics(node0_2m).ready_files == 16); // one page each: every page ready, no file of 16
            hugezero::acquire_options warm_only;
            warm_only.max_cold_pages = 0;
            const auto refused = p.acquire(node0_2m, 32 * mib, warm_only);
            CHECK(refused.error == std::error_code(EAGAIN, std::system_category()));
            REQUIRE(p.wait_filled(10s));
            auto warm = p.acquire(node0_2m, 32 * mib, warm_only);
            REQUIRE_MESSAGE(warm, warm.message);
            CHECK(warm.lease.cold_pages() == 0);
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

    TEST_CASE("a node or page size the machine lacks is ENODEV for an acquire, and refused by the pool, naming both")
    {
        sim_pool_machine t(two_nodes());
        hugezero::pool p(t.machine);
        const auto no_node = p.acquire(node_id(5), 2_MiB, 8 * mib);
        CHECK_FALSE(no_node);
        CHECK_FALSE(no_node.lease);
        CHECK(no_node.error.value() == ENODEV);
        CHECK(no_node.message.rfind("hugezero: cannot lease 8MiB of node5/2MiB huge pages: no online NUMA node 5", 0) == 0);
        const auto no_size = p.acquire(node_id(0), 4_MiB, 8 * mib);
        CHECK(no_size.error.value() == ENODEV);
        CHECK(no_size.message.find("node 0 has no 4MiB huge pages") != std::string::npos);
        CHECK(text_of(no_size) == no_size.message);
        CHECK_THROWS_AS((void)p.acquire(node0_2m, 0), std::invalid_argument);
        CHECK_THROWS_WITH_AS(hugezero::pool(t.machine, one_reservoir({node_id(3), 2_MiB}, 8 * mib)),
                             doctest::Contains("no online NUMA node 3"), std::invalid_argument);
        CHECK_THROWS_WITH_AS(hugezero::pool(t.machine, one_reservoir({node_id(0), 4_MiB}, 8 * mib)),
                             doctest::Contains("node 0 has no 4MiB huge pages"), std::invalid_argument);
        auto twice = one_reservoir(node0_2m, 8 * mib);
        twice.reservoirs.push_back(twice.reservoirs.front());
        CHECK_THROWS_WITH_AS(hugezero::pool(t.machine, twice), "hugezero: pool_options lists the reservoir node0/2MiB twice",
                             std::invalid_argument);
        auto no_batch = one_reservoir(node0_2m, 8 * mib);
        no_batch.batch_bytes = 0;
        CHECK_THROWS_AS(hugezero::pool(t.machine, no_batch), std::invalid_argument);
        CHECK_THROWS_AS(p.set_target(node0_1g, 0), std::invalid_argument);
    }

    TEST_CASE("a closed lease throws closed_handle_error from every accessor")
    {
        hugezero::lease l;
        CHECK_FALSE(l);
        CHECK_THROWS_AS((void)l.fd(), hugezero::closed_handle_error);
        CHECK_THROWS_AS((void)l.size(), hugezero::closed_handle_error);
        CHECK_THROWS_AS((void)l.pages(), hugezero::closed_handle_error);
        CHECK_THROWS_AS((void)l.page(), hugezero::closed_handle_error);
        CHECK_THROWS_AS((void)l.node(), hugezero::closed_handle_error);
        CHECK_THROWS_AS((void)l.cold_pages(), hugezero::closed_handle_error);
        CHECK_THROWS_AS((void)l.map(), hugezero::closed_handle_error);
        CHECK_THROWS_WITH_AS((void)l.release(), "hugezero: lease::release() on a closed lease",
                             hugezero::closed_handle_error);
        l.close(); // harmless
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
                     "others would be cold (allocated and zeroed now), more than the 0 cold pages allowed "
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
}
