// Cancelling zeroing requests: the write blocked in the (simulated) kernel is interrupted by
// hugezero's signal under every kernel behaviour ABI.md allows, within the latency bound, and
// without losing or double-counting pages, also when cancellations race the writes.
#include <doctest/doctest.h>

#include <chrono>
#include <random>
#include <thread>

#include <hugezero/hugezero.hpp>

#include "support/hstates.hpp"
#include "support/test_machine.hpp"
#include "support/threads.hpp"

using namespace hugezero::literals;
using namespace std::chrono_literals;
using hugezero::hstate;
using hugezero::node_id;
using clock_type = std::chrono::steady_clock;

namespace {

using simulated = hugezero::test::simulated_machine;
using hugezero::test::node0_1g;
using hugezero::test::node0_2m;

// One write for the whole request, so that only a signal can end it early.
hugezero::request_options one_write_for(std::uint64_t pages, hugezero::page_size size)
{
    hugezero::request_options options;
    options.zeroing.batch_bytes = pages * size.bytes();
    return options;
}

// Starts a request for 8 one-GiB pages of 40 ms each, waits until the kernel is zeroing its
// second page, and cancels it. Returns the result and the kernel.
hugezero::zeroing_result cancel_mid_write(simulated& s)
{
    hugezero::zeroing_request request(s.machine, node0_1g, std::nullopt, one_write_for(8, 1_GiB));
    REQUIRE(hugezero::test::wait_until([&] { return s.kernel->counts(node0_1g).zeroed >= 1; }));
    request.request_stop();
    REQUIRE(request.wait(5s));
    return request.get();
}

} // namespace

TEST_SUITE("cancellation")
{
    TEST_CASE("a kernel that fails interrupted writes with EINTR: the write ends at a page boundary")
    {
        simulated s(hugezero::sim::machine_builder().pages(1_GiB, 8).page_cost(1_GiB, 40ms).on_signal(hugezero::sim::signal_policy::eintr));
        const auto result = cancel_mid_write(s);
        CHECK(result.status == hugezero::zeroing_status::cancelled);
        CHECK(result.writes == 1);
        CHECK(result.interrupted_writes == 1);
        CHECK_FALSE(result.exact);
        const auto stats = s.kernel->statistics(node0_1g);
        CHECK(stats.writes_interrupted == 1);
        CHECK(s.kernel->counts(node0_1g).zeroing == 0);
        // The counter tells what the interrupted write did: credited exactly, nothing lost.
        CHECK(result.pages_zeroed == stats.pages_zeroed_by_writes);
        CHECK(result.pages_zeroed < 8);
        CHECK(result.pages_zeroed + result.zeroable_after == result.zeroable_before);
    }

    TEST_CASE("a kernel that reports partial progress as success: the success is not taken at face value")
    {
        simulated s(hugezero::sim::machine_builder().pages(1_GiB, 8).page_cost(1_GiB, 40ms).on_signal(
            hugezero::sim::signal_policy::partial_success));
        const auto result = cancel_mid_write(s);
        CHECK(result.status == hugezero::zeroing_status::cancelled);
        CHECK(result.interrupted_writes == 1);
        CHECK_FALSE(result.exact);
        CHECK(result.pages_zeroed == s.kernel->statistics(node0_1g).pages_zeroed_by_writes);
        CHECK(result.pages_zeroed < 8); // not the 8 the successful write asked for
        CHECK(result.pages_zeroed + result.zeroable_after == result.zeroable_before);
    }

    TEST_CASE("a kernel that restarts interrupted writes: the request still ends, bounded by its batch")
    {
        constexpr auto page_cost = 40ms;
        simulated s(hugezero::sim::machine_builder().pages(1_GiB, 8).page_cost(1_GiB, page_cost).on_signal(hugezero::sim::signal_policy::restart));
        hugezero::request_options options = one_write_for(4, 1_GiB); // the batch bounds a restarted write
        hugezero::zeroing_request request(s.machine, node0_1g, std::nullopt, options);
        REQUIRE(hugezero::test::wait_until([&] { return s.kernel->counts(node0_1g).zeroed >= 1; }));
        const auto stopped_at = clock_type::now();
        request.request_stop();
        REQUIRE(request.wait(5s));
        const auto latency = clock_type::now() - stopped_at;
        const auto result = request.get();
        CHECK(result.status == hugezero::zeroing_status::cancelled);
        CHECK(s.kernel->statistics(node0_1g).writes_restarted >= 1);
        // Every signal restarts the write after its current page; once hugezero stops re-sending
        // (max_resends), the last restart completes one batch.
        const auto resend_window = std::chrono::nanoseconds(hugezero::detail::interrupter::resend_period_ns
                                                            * hugezero::detail::interrupter::max_resends);
        CHECK(latency < resend_window + 2 * page_cost + 4 * page_cost + 10ms + hugezero::test::scheduling_slack);
        CHECK(result.pages_zeroed == s.kernel->statistics(node0_1g).pages_zeroed_by_writes);
        CHECK(result.pages_zeroed + result.zeroable_after == result.zeroable_before);
    }

    TEST_CASE("a request ends within one page-zeroing time + 10 ms of request_stop")
    {
        constexpr auto page_cost = 30ms;
        simulated s(hugezero::sim::machine_builder().pages(1_GiB, 1000).page_cost(1_GiB, page_cost));
        std::mt19937 random(42);
        std::chrono::nanoseconds worst{0};
        for (int i = 0; i < 8; ++i) {
            hugezero::zeroing_request request(s.machine, node0_1g, std::nullopt, one_write_for(1000, 1_GiB));
            const auto zeroed = s.kernel->counts(node0_1g).zeroed;
            REQUIRE(hugezero::test::wait_until([&] { return s.kernel->counts(node0_1g).zeroed > zeroed; }));
            // Stop at a random point within a page.
            const auto target = clock_type::now() + std::chrono::microseconds(random() % 30000);
            while (clock_type::now() < target) {
            }
            const auto stopped_at = clock_type::now();
            request.request_stop();
            REQUIRE(request.wait(1s)); // the completion fd is the event
            worst = std::max(worst, std::chrono::nanoseconds(clock_type::now() - stopped_at));
            CHECK(request.get().status == hugezero::zeroing_status::cancelled);
        }
        MESSAGE("worst cancellation latency: " << std::chrono::duration<double, std::milli>(worst).count() << " ms");
        CHECK(worst <= page_cost + hugezero::test::scheduling_slack);
    }

    TEST_CASE("chunked mode needs no signal and ends within one batch")
    {
        constexpr auto page_cost = 20ms;
        simulated s(hugezero::sim::machine_builder().pages(1_GiB, 100).page_cost(1_GiB, page_cost));
        hugezero::request_options options = one_write_for(1, 1_GiB);
        options.zeroing.cancel = hugezero::cancellation::chunked;
        hugezero::zeroing_request request(s.machine, node0_1g, std::nullopt, options);
        REQUIRE(hugezero::test::wait_until([&] { return s.kernel->counts(node0_1g).zeroed >= 2; }));
        const auto stopped_at = clock_type::now();
        request.request_stop();
        REQUIRE(request.wait(1s));
        CHECK(clock_type::now() - stopped_at <= page_cost + hugezero::test::scheduling_slack);
        const auto result = request.get();
        CHECK(result.status == hugezero::zeroing_status::cancelled);
        CHECK(result.interrupted_writes == 0); // no write was cut short...
        CHECK(s.kernel->statistics(node0_1g).writes_interrupted == 0);
        CHECK(result.exact); // ...so every count is exact
        CHECK(result.pages_zeroed == s.kernel->statistics(node0_1g).pages_zeroed_by_writes);
    }

    TEST_CASE("1000 cancellations racing the writes: no hang, no lost or double-counted page")
    {
        simulated s(hugezero::sim::machine_builder().pages(2_MiB, 1'000'000).page_cost(2_MiB, 20us));
        hugezero::request_options options;
        options.zeroing.batch_bytes = 8 * (2_MiB).bytes();
        std::mt19937 random(7);
        std::uint64_t credited = 0;
        int cancelled = 0;
        for (int cycle = 0; cycle < 1000; ++cycle) {
            hugezero::zeroing_request request(s.machine, node0_2m, 12, options);
            // Anywhere from before the first write to after the last one.
            const auto target = clock_type::now() + std::chrono::microseconds(random() % 3000);
            while (clock_type::now() < target) {
            }
            request.request_stop();
            REQUIRE(request.wait(2s));
            const auto result = request.get();
            REQUIRE(result.status != hugezero::zeroing_status::failed);
            cancelled += result.status == hugezero::zeroing_status::cancelled ? 1 : 0;
            credited += result.pages_zeroed;
        }
        MESSAGE(cancelled << " of 1000 requests were cancelled before completing");
        CHECK(cancelled > 0);
        const auto stats = s.kernel->statistics(node0_2m);
        CHECK(credited == stats.pages_zeroed_by_writes);
        CHECK(s.kernel->counts(node0_2m).zeroing == 0);
        CHECK(s.kernel->counts(node0_2m).zeroed == stats.pages_zeroed_by_writes);
    }

    TEST_CASE("destroying a running request cancels it and joins its worker promptly")
    {
        simulated s(hugezero::sim::machine_builder().pages(1_GiB, 100).page_cost(1_GiB, 30ms));
        const auto start = clock_type::now();
        {
            hugezero::zeroing_request request(s.machine, node0_1g, std::nullopt, one_write_for(100, 1_GiB));
            REQUIRE(hugezero::test::wait_until([&] { return s.kernel->counts(node0_1g).zeroing == 1; }));
        }
        CHECK(clock_type::now() - start < 30ms + 30ms + hugezero::test::scheduling_slack);
        CHECK(s.kernel->counts(node0_1g).zeroing == 0);
        CHECK(s.kernel->counts(node0_1g).zeroed < 100);
    }
}
