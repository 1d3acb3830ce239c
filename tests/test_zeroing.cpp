// Blocking zeroing requests (zero_pages, zero_all) against the simulated kernel: what they ask
// the kernel, what they report, and how they behave next to other writers and on errors.
#include <doctest/doctest.h>

#include <atomic>
#include <csignal>
#include <future>
#include <sstream>
#include <thread>
#include <vector>

#include <pthread.h>
#include <signal.h>

#include <hugezero/hugezero.hpp>

#include "support/expect.hpp"
#include "support/hstates.hpp"
#include "support/recording_backend.hpp"
#include "support/test_machine.hpp"

using namespace hugezero::literals;
using namespace std::chrono_literals;
using hugezero::hstate;
using hugezero::node_id;
using hugezero::test::printed;

namespace {

using fixture = hugezero::test::recorded_machine;
using hugezero::test::node0_2m;
using hugezero::test::batch_of;

} // namespace

TEST_SUITE("zeroing")
{
    TEST_CASE("zero_pages zeroes exactly the pages asked, one batch per write")
    {
        fixture f(hugezero::sim::machine_builder().pages(2_MiB, 512));
        const auto result = hugezero::zero_pages(f.machine, node0_2m, 100, {}, batch_of(32));
        CHECK(result.status == hugezero::zeroing_status::complete);
        CHECK(result.pages_zeroed == 100);
        CHECK(result.bytes_zeroed() == 100 * (2_MiB).bytes());
        CHECK(result.exact);
        CHECK(result.writes == 4);
        CHECK(result.zeroable_before == 512);
        CHECK(result.zeroable_after == 412);
        CHECK(f.requests() == std::vector<std::string>{"32", "32", "32", "4"});
        CHECK(f.kernel->statistics(node0_2m).pages_zeroed_by_writes == 100);
        CHECK(f.kernel->counts(node0_2m).zeroed == 100);
    }

    TEST_CASE("zero_all zeroes every zeroable page and reports it")
    {
        fixture f(hugezero::sim::machine_builder().pages(2_MiB, 70).zeroed_pages(2_MiB, 5));
        const auto result = hugezero::zero_all(f.machine, node0_2m, {}, batch_of(32));
        CHECK(result.status == hugezero::zeroing_status::complete);
        CHECK_FALSE(result.pages_asked.has_value());
        CHECK(result.pages_zeroed == 70);
        CHECK(result.zeroable_after == 0);
        CHECK(f.kernel->counts(node0_2m).zeroed == 75);
        CHECK(hugezero::test::contains(printed(result), "node0/2MiB complete: 70 pages zeroed (exact) in 3 writes"));
    }

    TEST_CASE("asking for more than is zeroable zeroes what there is and says so")
    {
        fixture f(hugezero::sim::machine_builder().pages(2_MiB, 10));
        const auto result = hugezero::zero_pages(f.machine, node0_2m, 600);
        CHECK(result.status == hugezero::zeroing_status::complete);
        CHECK(result.pages_asked == 600);
        CHECK(result.pages_zeroed == 10);
        CHECK(result.rejected_writes == 0); // never asks the kernel for more than it has
        CHECK(f.kernel->statistics(node0_2m).writes_rejected == 0);
    }

    TEST_CASE("zeroing an hstate without zeroable_hugepages throws zeroing_unsupported")
    {
        fixture f(hugezero::sim::machine_builder().pages(2_MiB, 10).without_zeroable(2_MiB));
        const auto error = hugezero::test::thrown_by<hugezero::zeroing_unsupported>(
            [&] { (void)hugezero::zero_pages(f.machine, node0_2m, 1); });
        CHECK(error.which() == node0_2m);
        const std::string message = error.what();
        CHECK(hugezero::test::contains(message, "zeroable_hugepages"));
        CHECK(hugezero::test::contains(message, "hugezero::pool"));
        CHECK_THROWS_AS(hugezero::zero_all(f.machine, node0_2m), hugezero::zeroing_unsupported);
        CHECK_THROWS_AS(hugezero::zeroing_request(f.machine, node0_2m, 1), hugezero::zeroing_unsupported);
        CHECK_THROWS_AS(hugezero::watcher(f.machine, {node0_2m}), hugezero::zeroing_unsupported);
        CHECK_THROWS_AS(hugezero::prezero_service(f.machine), hugezero::zeroing_unsupported);
    }

    TEST_CASE("zeroing an hstate the machine does not have throws invalid_argument naming it")
    {
        fixture f(hugezero::sim::machine_builder().pages(2_MiB, 10));
        const auto error = hugezero::test::thrown_by<std::invalid_argument>(
            [&] { (void)hugezero::zero_pages(f.machine, {node_id(0), 1_GiB}, 1); });
        CHECK(std::string(error.what()) == "hugezero: node 0 has no 1GiB huge pages (it has: 2MiB)");
        CHECK_THROWS_AS(hugezero::zero_pages(f.machine, {node_id(3), 2_MiB}, 1), std::invalid_argument);
    }

    TEST_CASE("concurrent writers share an hstate without counting a page twice")
    {
        fixture f(hugezero::sim::machine_builder().pages(2_MiB, 2000).page_cost(2_MiB, 20us));
        constexpr int writers = 4;
        std::vector<hugezero::zeroing_result> results(writers);
        {
            std::vector<std::jthread> threads;
            for (int i = 0; i < writers; ++i)
                threads.emplace_back([&, i] { results[static_cast<std::size_t>(i)] = hugezero::zero_all(f.machine, node0_2m, {}, batch_of(16)); });
        }
        std::uint64_t total = 0;
        for (const auto& r : results) {
            CHECK(r.status == hugezero::zeroing_status::complete);
            CHECK(r.exact);
            CHECK(r.rejected_writes == 0);
            total += r.pages_zeroed;
        }
        CHECK(total == 2000);
        CHECK(f.kernel->statistics(node0_2m).pages_zeroed_by_writes == 2000);
        CHECK(f.kernel->counts(node0_2m).zeroed == 2000);
        // Every write asked for pages nobody else had claimed: the kernel never saw one too many.
        CHECK(f.kernel->statistics(node0_2m).writes_rejected == 0);
    }

    TEST_CASE("a reading made stale by another writer's finished claim never claims too much")
    {
        // Writer B reads 20 zeroable pages; meanwhile writer A claims 16, zeroes them and
        // settles. B's reading no longer shows A's pages as outstanding, yet they are gone: B
        // must not claim them again, or B and a third writer could together ask the kernel for
        // more than it has, and a write ending early would still succeed.
        hugezero::detail::hstate_ledger ledger;
        const auto b_ticket = ledger.ticket();
        const std::uint64_t b_reading = 20;
        const auto a_ticket = ledger.ticket();
        REQUIRE(ledger.claim(20, a_ticket, 16) == 16);
        CHECK(ledger.settle(16, std::uint64_t{16}, [] { return std::uint64_t{4}; }) == 16);
        CHECK(ledger.claim(b_reading, b_ticket, 16) == 4); // not 16: only 4 pages can be left
        // A fresh reading, with a fresh ticket, sees the truth.
        CHECK(ledger.settle(4, std::uint64_t{4}, [] { return std::uint64_t{0}; }) == 4);
        const auto fresh = ledger.ticket();
        CHECK(ledger.claim(0, fresh, 16) == 0);
    }

    TEST_CASE("an EINVAL caused by a competing writer is retried, not counted")
    {
        fixture f(hugezero::sim::machine_builder().pages(2_MiB, 100));
        // A writer outside hugezero takes 90 pages between hugezero's read of the counter and
        // its first write, so that write asks for more than is zeroable.
        std::atomic<int> competing_writes{0};
        f.recorder->before_write([&](std::string_view, std::string_view) {
            if (competing_writes.fetch_add(1) == 0)
                REQUIRE(f.kernel->write_zeroable(node0_2m, "90", nullptr).succeeded());
        });
        const auto result = hugezero::zero_all(f.machine, node0_2m, {}, batch_of(64));
        CHECK(result.status == hugezero::zeroing_status::complete);
        CHECK(result.rejected_writes == 1);
        CHECK(result.pages_zeroed == 10);
        CHECK(result.exact);
        CHECK(f.requests() == std::vector<std::string>{"64", "10"});
        CHECK(f.kernel->statistics(node0_2m).writes_rejected == 1);
        CHECK(f.kernel->statistics(node0_2m).pages_zeroed_by_writes == 100);
    }

    TEST_CASE("an I/O error ends the request with status failed, the errno and the file")
    {
        fixture f(hugezero::sim::machine_builder().pages(2_MiB, 100));
        const std::string path = f.machine.zeroable_path(node0_2m);
        f.kernel->fail_next(path, hugezero::sim::operation::write, EIO);
        const auto result = hugezero::zero_all(f.machine, node0_2m, {}, batch_of(32));
        CHECK(result.status == hugezero::zeroing_status::failed);
        CHECK(result.error.value() == EIO);
        CHECK(result.pages_zeroed == 0);
        CHECK(hugezero::test::contains(result.error_message, f.machine.backend().display_path(path)));
        CHECK(f.kernel->statistics(node0_2m).pages_zeroed_by_writes == 0);
    }

    TEST_CASE("a counter that can no longer be read ends the request with status failed")
    {
        fixture f(hugezero::sim::machine_builder().pages(2_MiB, 100));
        const std::string path = f.machine.zeroable_path(node0_2m);
        // The first read (before any write) fails as if the node had gone offline.
        f.kernel->fail_next(path, hugezero::sim::operation::read, ENOENT);
        const auto result = hugezero::zero_all(f.machine, node0_2m);
        CHECK(result.status == hugezero::zeroing_status::failed);
        CHECK(result.error.value() == ENOENT);
        CHECK(hugezero::test::contains(result.error_message, path));
        CHECK(result.writes == 0);
    }

    TEST_CASE("a kernel that keeps rejecting requests ends the request instead of spinning")
    {
        fixture f(hugezero::sim::machine_builder().pages(2_MiB, 100));
        f.kernel->fail_next(f.machine.zeroable_path(node0_2m), hugezero::sim::operation::write, EINVAL, 1000);
        const auto result = hugezero::zero_all(f.machine, node0_2m);
        CHECK(result.status == hugezero::zeroing_status::failed);
        CHECK(result.error.value() == EINVAL);
        CHECK(result.rejected_writes == 64);
        CHECK(hugezero::test::contains(result.error_message, "rejected 64 requests in a row"));
    }

    TEST_CASE("a request stopped before it starts writes nothing")
    {
        fixture f(hugezero::sim::machine_builder().pages(2_MiB, 100));
        std::stop_source stop;
        stop.request_stop();
        const auto result = hugezero::zero_all(f.machine, node0_2m, stop.get_token());
        CHECK(result.status == hugezero::zeroing_status::cancelled);
        CHECK(result.writes == 0);
        CHECK(f.recorder->writes().empty());
    }

    TEST_CASE("hugezero refuses a cancellation signal the application already handles")
    {
        struct sigaction mine {};
        mine.sa_handler = [](int) {};
        sigemptyset(&mine.sa_mask);
        struct sigaction previous {};
        REQUIRE(::sigaction(SIGUSR2, &mine, &previous) == 0);
        fixture f(hugezero::sim::machine_builder().pages(2_MiB, 10));
        hugezero::zeroing_options options;
        options.cancel_signal = SIGUSR2;
        const auto error = hugezero::test::thrown_by<std::system_error>(
            [&] { (void)hugezero::zero_all(f.machine, node0_2m, {}, options); });
        CHECK(error.code().value() == EBUSY);
        CHECK(hugezero::test::contains(error.what(), "SIGUSR2"));
        CHECK(hugezero::test::contains(error.what(), "cancellation::chunked"));
        // The application's handler is still in place.
        struct sigaction now {};
        REQUIRE(::sigaction(SIGUSR2, nullptr, &now) == 0);
        const bool still_the_applications = now.sa_handler == mine.sa_handler;
        CHECK(still_the_applications);
        // Chunked mode needs no signal at all.
        options.cancel = hugezero::cancellation::chunked;
        CHECK(hugezero::zero_all(f.machine, node0_2m, {}, options).pages_zeroed == 10);
        ::sigaction(SIGUSR2, &previous, nullptr);
    }

    TEST_CASE("a blocking request restores the caller's signal mask")
    {
        fixture f(hugezero::sim::machine_builder().pages(2_MiB, 10));
        sigset_t blocked;
        sigemptyset(&blocked);
        sigaddset(&blocked, SIGURG);
        sigset_t before;
        REQUIRE(::pthread_sigmask(SIG_BLOCK, &blocked, &before) == 0);
        (void)hugezero::zero_all(f.machine, node0_2m);
        sigset_t after;
        REQUIRE(::pthread_sigmask(SIG_SETMASK, &before, &after) == 0);
        CHECK(sigismember(&after, SIGURG) == 1);
    }

    TEST_CASE("the ledger reads the counter for an uncertain write without holding its mutex")
    {
        // A sysfs read can be slow: other writers must be able to take tickets meanwhile. The
        // reading is made from inside settle(); a ticket taken from another thread then must
        // not wait for it (with the mutex held it would wait until settle() returned).
        hugezero::detail::hstate_ledger ledger;
        const std::uint64_t claimed = ledger.claim(10, ledger.ticket(), 4);
        REQUIRE(claimed == 4);
        bool ticket_in_time = false;
        std::future<std::uint64_t> other; // outlives settle(): its end must not wait for the mutex
        const std::uint64_t credited = ledger.settle(claimed, std::nullopt, [&] {
            other = std::async(std::launch::async, [&] { return ledger.ticket(); });
            ticket_in_time = other.wait_for(std::chrono::seconds(2)) == std::future_status::ready;
            return std::uint64_t{7}; // 3 pages went: the uncertain write did them
        });
        CHECK(ticket_in_time);
        CHECK(credited == 3);
        CHECK(ledger.claim(7, ledger.ticket(), 7) == 7); // and claims go on afterwards
    }
}
