// Recycling on the simulated kernel (label pool-sim): a lease given back is scrubbed by the
// node's refill worker and serves the next VM warm, without the kernel allocating (and zeroing)
// its pages again; a lease anything else still refers to is not recycled; a scrub is paced,
// pausable and resumable like a refill, and nothing leaks whatever fails. The simulated kernel
// knows which file pages hold a tenant's data (written_file_pages), so "never serve a page that
// was not zeroed" is checked against its ground truth.
#include <doctest/doctest.h>

#include <cerrno>
#include <chrono>
#include <map>
#include <string>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

#include <hugezero/hugezero.hpp>

#include "support/hstates.hpp"
#include "support/sim_pool.hpp"
#include "support/sizes.hpp"
#include "support/threads.hpp"

using namespace hugezero::literals;
using namespace std::chrono_literals;
using hugezero::recycle_status;
using hugezero::sim::file_operation;
using hugezero::test::node0_2m;
using hugezero::test::node1_2m;
using hugezero::test::fill_then_pause;
using hugezero::test::one_reservoir;
using hugezero::test::free_pages;
using hugezero::test::recycling;
using hugezero::test::sim_pool_machine;
using hugezero::test::mib;

namespace {

hugezero::sim::machine_builder recycling_machine()
{
    return hugezero::sim::machine_builder().nodes(2).pages(2_MiB, 64).pages(1_GiB, 2);
}

// A warm lease of @p bytes from a filled pool, taken while the refill is paused (so that the
// reservoir does not refill behind it and leaves room to recycle), dirtied by its tenant.
hugezero::lease dirty_warm_lease(hugezero::pool& p, sim_pool_machine& t, std::uint64_t bytes)
{
    auto got = p.acquire(node0_2m, bytes);
    REQUIRE_MESSAGE(got, got.message);
    REQUIRE(got.lease.cold_pages() == 0);
    t.kernel->write_file_pages(got.lease.fd());
    REQUIRE(t.kernel->written_file_pages(got.lease.fd()) == got.lease.pages());
    return std::move(got.lease);
}

} // namespace

TEST_SUITE("pool-sim")
{
    TEST_CASE("a recycled lease is scrubbed and serves the next VM warm, without the kernel allocating its pages again")
    {
        sim_pool_machine t(recycling_machine().page_cost(2_MiB, 1ms));
        {
            hugezero::pool p(t.machine, recycling(one_reservoir(node0_2m, 16 * mib)));
            fill_then_pause(p);
            hugezero::lease l = dirty_warm_lease(p, t, 16 * mib);
            const auto allocated = t.kernel->file_stats().pages_allocated;

            const hugezero::recycle_result r = p.recycle(std::move(l));
            CHECK(r);
            CHECK(r.status == recycle_status::recycled);
            CHECK(r.pages == 8);
            CHECK(r.message == "hugezero: node0/2MiB lease recycled: 8 of its 8 pages are scrubbed, then served again");
            CHECK_FALSE(l);
            auto s = p.statistics(node0_2m);
            CHECK(s.recycled_leases == 1);
            CHECK(s.recycled_pages == 8);
            CHECK(s.scrubbing_pages == 8);
            CHECK(s.leases_out == 0);

            p.resume();
            REQUIRE(p.wait_filled(10s));
            s = p.statistics(node0_2m);
            CHECK(s.scrubbing_pages == 0);
            CHECK(s.scrubbed_pages == 8);
            CHECK(s.scrub_time > 0ns);
            CHECK(s.refill_pages == 8); // the first fill only
            CHECK(t.kernel->file_stats().pages_allocated == allocated);
            CHECK(t.kernel->file_stats().pages_scrubbed == 8);

            auto again = p.acquire(node0_2m, 16 * mib);
            REQUIRE(again);
            CHECK(again.lease.cold_pages() == 0);
            CHECK(t.kernel->written_file_pages(again.lease.fd()) == 0);
            CHECK(t.kernel->file_layout(again.lease.fd()).pages_per_node == std::map<hugezero::node_id, std::uint64_t>{{node0_2m.node, 8}});
        }
        t.check_restored();
    }

    TEST_CASE("by default a lease given back is emptied: its pages go back to the kernel at once, though its fd was copied")
    {
        sim_pool_machine t(recycling_machine());
        {
            hugezero::pool p(t.machine, one_reservoir(node0_2m, 16 * mib)); // recycle: off
            fill_then_pause(p);
            hugezero::lease l = dirty_warm_lease(p, t, 16 * mib);
            const hugezero::unique_fd copy(::dup(l.fd())); // a tenant's way back in
            REQUIRE(copy);
            const auto free_before = free_pages(t, node0_2m);
            const auto r = p.recycle(std::move(l));
            CHECK(r.status == recycle_status::emptied);
            CHECK(r.message == "hugezero: node0/2MiB lease not recycled: recycling is off for this reservoir "
                               "(reservoir_options::recycle); its file was emptied, its pages back to the kernel");
            CHECK(free_pages(t, node0_2m) == free_before + 8);
            CHECK(t.kernel->file_layout(copy.get()).pages_per_node.empty());
            CHECK(p.statistics(node0_2m).recycled_leases == 0);
            CHECK(p.statistics(node0_2m).recycles_refused == 1);
        }
        t.check_restored();
    }

    TEST_CASE("retire() empties a lease even where the reservoir recycles")
    {
        sim_pool_machine t(recycling_machine());
        {
            hugezero::pool p(t.machine, recycling(one_reservoir(node0_2m, 16 * mib)));
            fill_then_pause(p);
            hugezero::lease l = dirty_warm_lease(p, t, 16 * mib);
            const auto free_before = free_pages(t, node0_2m);
            const auto r = p.retire(std::move(l));
            CHECK(r.status == recycle_status::emptied);
            CHECK_FALSE(l);
            CHECK(free_pages(t, node0_2m) == free_before + 8);
            CHECK(p.statistics(node0_2m).recycled_leases == 0);
        }
        t.check_restored();
    }

    TEST_CASE("files given back and still held are looked at once per retry period in all, however many wait")
    {
        sim_pool_machine t(recycling_machine());
        {
            auto options = recycling(one_reservoir(node0_2m, 16 * mib, 4 * mib));
            options.retry_period = 20ms;
            hugezero::pool p(t.machine, options);
            fill_then_pause(p); // paused: no refill call, only the looks
            std::vector<int> copies;
            for (int i = 0; i < 4; ++i) {
                hugezero::lease l = dirty_warm_lease(p, t, 4 * mib);
                copies.push_back(::dup(l.fd()));
                REQUIRE(p.recycle(std::move(l)).status == recycle_status::deferred);
            }
            const auto start = std::chrono::steady_clock::now();
            const auto calls_before = t.kernel->file_stats().calls;
            REQUIRE(hugezero::test::wait_until([&] { return t.kernel->file_stats().calls >= calls_before + 8; }, 10s));
            const auto looks = t.kernel->file_stats().calls - calls_before;
            const auto periods = (std::chrono::steady_clock::now() - start) / 20ms;
            CHECK_MESSAGE(looks <= static_cast<std::uint64_t>(periods) + 2, looks << " looks in " << periods << " retry periods");
            for (const int copy : copies)
                ::close(copy);
            p.resume();
            REQUIRE(p.wait_filled(10s));
        }
        t.check_restored();
    }

    TEST_CASE("a lease whose fd was copied waits until the copy is closed, then is recycled")
    {
        sim_pool_machine t(recycling_machine());
        {
            auto options = recycling(one_reservoir(node0_2m, 8 * mib));
            options.retry_period = 5ms;
            hugezero::pool p(t.machine, options);
            fill_then_pause(p);
            hugezero::lease l = dirty_warm_lease(p, t, 8 * mib);
            const int copy = ::dup(l.fd());
            REQUIRE(copy >= 0);
            const auto r = p.recycle(std::move(l));
            CHECK(r.status == recycle_status::deferred);
            CHECK(r.message == "hugezero: node0/2MiB lease not recycled yet: the file is still in use (fd " + std::to_string(copy)
                                   + " of process " + std::to_string(::getpid()) + "); it will be once nothing else refers to it");
            CHECK_FALSE(l);
            auto s = p.statistics(node0_2m);
            CHECK(s.returned_leases == 1);
            CHECK(s.waiting_pages == 4);
            CHECK(s.leases_out == 0);
            // Paused, so that the refill does not fill the room meanwhile; files given back are
            // looked at again all the same.
            const auto looked = t.kernel->file_stats().calls;
            REQUIRE(hugezero::test::wait_until([&] { return t.kernel->file_stats().calls > looked; }, 10s));
            CHECK(p.statistics(node0_2m).waiting_pages == 4);
            ::close(copy);
            REQUIRE(hugezero::test::wait_until([&] { return p.statistics(node0_2m).scrubbing_pages == 4; }, 10s));
            CHECK(p.statistics(node0_2m).scrubbed_pages == 0); // paused
            p.resume();
            REQUIRE(p.wait_filled(10s));
            s = p.statistics(node0_2m);
            CHECK(s.waiting_pages == 0);
            CHECK(s.recycled_leases == 1);
            CHECK(s.scrubbed_pages == 4);
            CHECK(s.refill_pages == 4);
        }
        t.check_restored();
    }

    TEST_CASE("a child process holding the fd holds the recycling up, and once it exits, recycling proceeds")
    {
        sim_pool_machine t(recycling_machine());
        {
            auto options = recycling(one_reservoir(node0_2m, 8 * mib));
            options.retry_period = 5ms;
            hugezero::pool p(t.machine, options);
            fill_then_pause(p);
            hugezero::lease l = dirty_warm_lease(p, t, 8 * mib);
            int go[2];
            REQUIRE(::pipe2(go, O_CLOEXEC) == 0);
            const pid_t child = ::fork();
            REQUIRE(child >= 0);
            if (child == 0) { // holds every fd of the parent, the lease's too, until told to go
                ::close(go[1]);
                char c;
                (void)!::read(go[0], &c, 1);
                ::_exit(0);
            }
            ::close(go[0]);
            const auto deferred = p.recycle(std::move(l));
            CHECK(deferred.status == recycle_status::deferred);
            CHECK(deferred.message.find("of process " + std::to_string(child) + ")") != std::string::npos);
            ::close(go[1]);
            int status = 0;
            REQUIRE(::waitpid(child, &status, 0) == child);
            REQUIRE(hugezero::test::wait_until([&] { return p.statistics(node0_2m).scrubbing_pages == 4; }, 10s));
            p.resume();
            REQUIRE(p.wait_filled(10s));
            CHECK(p.statistics(node0_2m).scrubbed_pages == 4);
            CHECK(p.statistics(node0_2m).refill_pages == 4);
        }
        t.check_restored();
    }

    TEST_CASE("a recycle that would overfill the reservoir is cut to its room, and one into a full reservoir refused")
    {
        sim_pool_machine t(recycling_machine());
        {
            hugezero::pool p(t.machine, recycling(one_reservoir(node0_2m, 16 * mib, 8 * mib))); // two files of 4 pages
            fill_then_pause(p);
            hugezero::lease small = dirty_warm_lease(p, t, 8 * mib);
            auto big = p.acquire(node0_2m, 16 * mib); // the other file, grown with 4 cold pages
            REQUIRE(big);
            CHECK(big.lease.cold_pages() == 4);
            auto third = p.acquire(node0_2m, 2 * mib); // cold
            REQUIRE(third);
            CHECK(p.recycle(std::move(small)).pages == 4);
            const auto trimmed_before = p.statistics(node0_2m).trimmed_pages;
            const auto cut = p.recycle(std::move(big.lease));
            CHECK(cut);
            CHECK(cut.pages == 4);
            CHECK(p.statistics(node0_2m).trimmed_pages == trimmed_before + 4);
            const auto full = p.recycle(std::move(third.lease));
            CHECK(full.status == recycle_status::reservoir_full);
            CHECK(full.message == "hugezero: node0/2MiB lease not recycled: the reservoir of node0/2MiB is at its target; its file was emptied, "
                                   "its pages back to the kernel");
            CHECK_FALSE(third.lease);
            CHECK(p.statistics(node0_2m).recycles_refused == 1);
            p.resume();
            REQUIRE(p.wait_filled(10s));
            const auto s = p.statistics(node0_2m);
            CHECK(s.ready_pages == 8);
            CHECK(s.scrubbed_pages == 8);
        }
        t.check_restored();
    }

    TEST_CASE("a lease without a reservoir goes back to the kernel, a closed lease and another pool's lease are refused")
    {
        sim_pool_machine t(recycling_machine());
        {
            hugezero::pool p(t.machine, recycling(one_reservoir(node0_2m, 8 * mib)));
            hugezero::pool other(t.machine, recycling(one_reservoir(node0_2m, 8 * mib)));
            auto unlisted = p.acquire(node1_2m, 2 * mib);
            REQUIRE(unlisted);
            const auto r = p.recycle(std::move(unlisted.lease));
            CHECK(r.status == recycle_status::no_reservoir);
            CHECK(r.message == "hugezero: node1/2MiB lease not recycled: the pool has no reservoir for node1/2MiB; its file was emptied, its pages "
                               "back to the kernel");
            CHECK_FALSE(unlisted.lease);
            auto foreign = other.acquire(node0_2m, 2 * mib);
            REQUIRE(foreign);
            CHECK_THROWS_WITH_AS(p.recycle(std::move(foreign.lease)),
                                 "hugezero: pool::recycle() of a lease this pool did not make (node0/2MiB)", std::invalid_argument);
            hugezero::lease closed;
            CHECK_THROWS_AS(p.recycle(std::move(closed)), hugezero::closed_handle_error);
        }
        t.check_restored();
    }

    TEST_CASE("a pause during a scrub keeps the pages done: after resume no page is scrubbed twice")
    {
        sim_pool_machine t(recycling_machine().page_cost(2_MiB, 10ms));
        {
            auto options = recycling(one_reservoir(node0_2m, 16 * mib));
            options.batch_bytes = 2 * mib; // a step per page
            hugezero::pool p(t.machine, options);
            fill_then_pause(p);
            hugezero::lease l = dirty_warm_lease(p, t, 16 * mib);
            REQUIRE(p.recycle(std::move(l)));
            p.resume();
            REQUIRE(hugezero::test::wait_until([&] { return p.statistics(node0_2m).scrubbed_pages >= 2; }, 10s));
            p.pause(); // returns once the step in progress is counted
            const auto s = p.statistics(node0_2m);
            CHECK(s.scrubbed_pages < 8);
            CHECK(s.scrubbing_pages == 8);
            CHECK(t.kernel->file_stats().pages_scrubbed == s.scrubbed_pages);
            p.resume();
            REQUIRE(p.wait_filled(10s));
            CHECK(p.statistics(node0_2m).scrubbed_pages == 8);
            CHECK(t.kernel->file_stats().pages_scrubbed == 8);
        }
        t.check_restored();
    }

    TEST_CASE("a scrub that fails gives the file to the kernel, counts the error, and the refill makes up for it")
    {
        sim_pool_machine t(recycling_machine());
        {
            hugezero::pool p(t.machine, recycling(one_reservoir(node0_2m, 8 * mib)));
            fill_then_pause(p);
            hugezero::lease l = dirty_warm_lease(p, t, 8 * mib);
            REQUIRE(p.recycle(std::move(l)));
            t.kernel->fail_next(file_operation::scrub, EIO);
            p.resume();
            REQUIRE(p.wait_filled(10s));
            const auto s = p.statistics(node0_2m);
            CHECK(s.errors == 1);
            CHECK(s.last_error == std::error_code(EIO, std::system_category()));
            CHECK(s.scrubbing_pages == 0);
            CHECK(s.scrubbed_pages == 0);
            CHECK(s.refill_pages == 8); // 4 first, 4 after the failed scrub
            auto again = p.acquire(node0_2m, 8 * mib);
            REQUIRE(again);
            CHECK(t.kernel->written_file_pages(again.lease.fd()) == 0);
        }
        t.check_restored();
    }

    TEST_CASE("a pool destroyed with recycled files waiting, and others still referred to, gives their pages back")
    {
        sim_pool_machine t(recycling_machine());
        int copy = -1;
        {
            hugezero::pool p(t.machine, recycling(one_reservoir(node0_2m, 16 * mib, 8 * mib)));
            fill_then_pause(p);
            hugezero::lease scrubbed = dirty_warm_lease(p, t, 8 * mib);
            hugezero::lease held = dirty_warm_lease(p, t, 8 * mib);
            copy = ::dup(held.fd());
            REQUIRE(p.recycle(std::move(scrubbed)));
            REQUIRE(p.recycle(std::move(held)).status == recycle_status::deferred);
        }
        ::close(copy);
        t.check_restored();
    }

    TEST_CASE("1000 recycle cycles: every lease clean, every page allocated once, nothing leaks")
    {
        sim_pool_machine t(recycling_machine());
        {
            hugezero::pool p(t.machine, recycling(one_reservoir(node0_2m, 8 * mib)));
            p.start();
            REQUIRE(p.wait_filled(10s));
            const auto allocated = t.kernel->file_stats().pages_allocated;
            std::uint64_t dirty_served = 0;
            for (int cycle = 0; cycle < 1000; ++cycle) {
                p.pause(); // else the refill fills the room before the VM gives its lease back
                auto got = p.acquire(node0_2m, 8 * mib);
                REQUIRE_MESSAGE(got, got.message);
                dirty_served += t.kernel->written_file_pages(got.lease.fd());
                t.kernel->write_file_pages(got.lease.fd());
                const auto r = p.recycle(std::move(got.lease));
                REQUIRE_MESSAGE(r, r.message);
                p.resume();
                REQUIRE(p.wait_filled(10s));
            }
            CHECK(dirty_served == 0);
            const auto s = p.statistics(node0_2m);
            CHECK(s.recycled_leases == 1000);
            CHECK(s.scrubbed_pages == 4000);
            CHECK(s.cold_pages_served == 0);
            CHECK(t.kernel->file_stats().pages_allocated == allocated);
        }
        t.check_restored();
    }
}
