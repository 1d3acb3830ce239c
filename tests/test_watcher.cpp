// The watcher: woken by the kernel's notifications, not by anything else; coalesced
// notifications caught up by the safety net; stop() wakes it at once; usable from a foreign
// event loop or with a callback; a vanished attribute reported rather than thrown.
#include <doctest/doctest.h>

#include <chrono>
#include <fstream>
#include <thread>

#include <poll.h>

#include <hugezero/hugezero.hpp>

#include "support/hstates.hpp"
#include "support/temp_dir.hpp"
#include "support/test_machine.hpp"
#include "support/threads.hpp"

using namespace hugezero::literals;
using namespace std::chrono_literals;
using hugezero::hstate;
using hugezero::node_id;
using clock_type = std::chrono::steady_clock;

namespace {

using simulated = hugezero::test::simulated_machine;
using hugezero::test::node0_2m;
using hugezero::test::node1_2m;

hugezero::watcher_options no_safety_net()
{
    hugezero::watcher_options options;
    options.safety_net_period = 0ns;
    return options;
}

} // namespace

TEST_SUITE("watcher")
{
    TEST_CASE("a release wakes the watcher with the new zeroable count")
    {
        simulated s(hugezero::sim::machine_builder().nodes(2).in_use_pages(2_MiB, 10));
        hugezero::watcher w(s.machine, {node0_2m, node1_2m}, no_safety_net());
        s.kernel->release(node1_2m, 7);
        const auto events = w.wait(5s);
        REQUIRE(events.size() == 1);
        CHECK(events[0].which == node1_2m);
        CHECK(events[0].zeroable == 7);
        CHECK(events[0].reason == hugezero::watch_reason::notified);
        CHECK_FALSE(events[0].error);
        CHECK(w.wakeups() == 1);
        // Re-armed: nothing more until the next change.
        CHECK(w.wait(0ns).empty());
        s.kernel->release(node0_2m, 3);
        const auto next = w.wait(5s);
        REQUIRE(next.size() == 1);
        CHECK(next[0].which == node0_2m);
        CHECK(next[0].zeroable == 3);
    }

    TEST_CASE("an idle machine costs no wakeups")
    {
        simulated s(hugezero::sim::machine_builder().pages(2_MiB, 10));
        hugezero::watcher_options options;
        options.safety_net_period = 1h; // the safety net is the only other wakeup, and it is far away
        hugezero::watcher w(s.machine, {node0_2m}, options);
        pollfd p{w.fd(), POLLIN, 0};
        CHECK(::poll(&p, 1, 300) == 0);
        CHECK(w.wait(200ms).empty());
        CHECK(w.wakeups() == 0);
    }

    TEST_CASE("notifications inside the rate limit coalesce, and the safety net catches up")
    {
        simulated s(hugezero::sim::machine_builder().in_use_pages(2_MiB, 10).notify_min_period(1h));
        hugezero::watcher_options options;
        options.safety_net_period = 100ms;
        hugezero::watcher w(s.machine, {node0_2m}, options);
        for (int i = 0; i < 5; ++i)
            s.kernel->release(node0_2m, 1);
        CHECK(s.kernel->statistics(node0_2m).notifications == 1);
        CHECK(s.kernel->statistics(node0_2m).notifications_suppressed == 4);
        const auto first = w.wait(5s);
        REQUIRE(first.size() == 1);
        CHECK(first[0].reason == hugezero::watch_reason::notified);
        CHECK(first[0].zeroable == 5); // one wakeup for five releases, reading the latest value
        // This release's notification is dropped: only the periodic re-read can see it.
        s.kernel->release(node0_2m, 1);
        std::vector<hugezero::watch_event> caught_up;
        const auto deadline = clock_type::now() + 5s;
        while (caught_up.empty() && clock_type::now() < deadline)
            caught_up = w.wait(1s);
        REQUIRE(caught_up.size() == 1);
        CHECK(caught_up[0].reason == hugezero::watch_reason::periodic);
        CHECK(caught_up[0].zeroable == 6);
        // Unchanged values are not reported again by the safety net.
        CHECK(w.wait(250ms).empty());
    }

    TEST_CASE("stop() wakes a waiting thread at once, and later waits return at once")
    {
        simulated s(hugezero::sim::machine_builder().pages(2_MiB, 10));
        hugezero::watcher w(s.machine, {node0_2m}, no_safety_net());
        std::atomic<bool> returned{false};
        std::jthread waiter([&] {
            (void)w.wait(-1ns);
            returned = true;
        });
        CHECK_FALSE(hugezero::test::wait_until([&] { return returned.load(); }, 100ms));
        const auto stopped_at = clock_type::now();
        w.stop();
        waiter.join();
        CHECK(clock_type::now() - stopped_at < 40ms + hugezero::test::scheduling_slack);
        CHECK(w.stopped());
        const auto start = clock_type::now();
        CHECK(w.wait(10s).empty());
        CHECK(clock_type::now() - start < 40ms + hugezero::test::scheduling_slack);
    }

    TEST_CASE("fd() fits a foreign event loop: readable exactly when there is something to report")
    {
        simulated s(hugezero::sim::machine_builder().in_use_pages(2_MiB, 4));
        hugezero::watcher w(s.machine, {node0_2m}, no_safety_net());
        pollfd p{w.fd(), POLLIN, 0};
        CHECK(::poll(&p, 1, 0) == 0);
        s.kernel->release(node0_2m, 4);
        REQUIRE(::poll(&p, 1, 5000) == 1);
        const auto events = w.wait(0ns);
        REQUIRE(events.size() == 1);
        CHECK(events[0].zeroable == 4);
        CHECK(::poll(&p, 1, 0) == 0);
    }

    TEST_CASE("run() calls back for every change until its stop_token is triggered")
    {
        simulated s(hugezero::sim::machine_builder().nodes(2).in_use_pages(2_MiB, 4));
        hugezero::watcher w(s.machine, {node0_2m, node1_2m}, no_safety_net());
        std::mutex mutex;
        std::vector<hugezero::watch_event> seen;
        std::jthread runner([&](std::stop_token stop) {
            w.run(stop, [&](const hugezero::watch_event& e) {
                const std::lock_guard lock(mutex);
                seen.push_back(e);
            });
        });
        s.kernel->release(node0_2m, 1);
        REQUIRE(hugezero::test::wait_until([&] {
            const std::lock_guard lock(mutex);
            return seen.size() == 1;
        }));
        s.kernel->release(node1_2m, 2);
        REQUIRE(hugezero::test::wait_until([&] {
            const std::lock_guard lock(mutex);
            return seen.size() == 2;
        }));
        runner.request_stop();
        runner.join();
        CHECK(w.stopped());
        CHECK(seen[0].which == node0_2m);
        CHECK(seen[0].zeroable == 1);
        CHECK(seen[1].which == node1_2m);
        CHECK(seen[1].zeroable == 2);
    }

    TEST_CASE("an attribute that disappears is reported as an event with the error")
    {
        simulated s(hugezero::sim::machine_builder().nodes(2).pages(2_MiB, 4));
        hugezero::watcher_options options;
        options.safety_net_period = 50ms;
        hugezero::watcher w(s.machine, {node0_2m, node1_2m}, options);
        s.kernel->set_online(node_id(1), false);
        std::vector<hugezero::watch_event> events;
        const auto deadline = clock_type::now() + 5s;
        while (events.empty() && clock_type::now() < deadline)
            events = w.wait(1s);
        REQUIRE(events.size() == 1);
        CHECK(events[0].which == node1_2m);
        CHECK(events[0].error.value() == ENOENT);
        CHECK(events[0].zeroable == 4); // the last good value
        CHECK(events[0].message.find("node1/hugepages/hugepages-2048kB/zeroable_hugepages") != std::string::npos);
    }

    // A tree of plain files, no simulated kernel: nothing to run through FUSE.
    TEST_CASE("a tree on disk cannot be epolled: the safety net alone watches it" * hugezero::test::not_through_emulator)
    {
        // A patched kernel's tree, as files: epoll refuses regular files (EPERM).
        hugezero::test::temp_dir root;
        const auto dir = root.path() / "devices/system/node";
        const auto hstate_dir = dir / "node0/hugepages/hugepages-2048kB";
        std::filesystem::create_directories(hstate_dir);
        std::filesystem::create_directories(root.path() / "kernel/mm/hugepages/hugepages-2048kB");
        const auto write = [](const std::filesystem::path& file, const std::string& text) { std::ofstream(file) << text; };
        write(dir / "online", "0\n");
        write(dir / "has_memory", "0\n");
        write(dir / "node0/cpulist", "0\n");
        for (const char* name : {"nr_hugepages", "free_hugepages", "surplus_hugepages"})
            write(hstate_dir / name, "0\n");
        write(hstate_dir / "zeroable_hugepages", "0\n");
        const auto m = hugezero::machine::open(root.path());
        hugezero::watcher_options options;
        options.safety_net_period = 50ms;
        hugezero::watcher w(m, {node0_2m}, options);
        write(hstate_dir / "zeroable_hugepages", "12\n");
        std::vector<hugezero::watch_event> events;
        const auto deadline = clock_type::now() + 5s;
        while (events.empty() && clock_type::now() < deadline)
            events = w.wait(1s);
        REQUIRE(events.size() == 1);
        CHECK(events[0].zeroable == 12);
        CHECK(events[0].reason == hugezero::watch_reason::periodic);
    }
}
