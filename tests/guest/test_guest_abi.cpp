// hugezero on a real kernel with the zeroable_hugepages ABI: the reference implementation of
// tests/kernel/patches, in a two-node guest (scripts/guest), through the real sysfs_backend.
// Every case runs once per combination of the ABI's open switches (HUGEZERO_GUEST_SWITCHES, set
// by the ctest case: out_of_range einval|clamp, on_signal eintr|restart|partial), and checks
// hugezero's counts against the kernel's own (hugetlb_prezero/stats) and the guest's huge page
// counters after the test against those before.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <linux/memfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <hugezero/hugezero.hpp>

#include "daemon/daemon_process.hpp"
#include "guest/guest_kernel.hpp"
#include "support/hstates.hpp"
#include "support/json.hpp"
#include "support/subprocess.hpp"
#include "support/threads.hpp"

using namespace hugezero::literals;
using namespace std::chrono_literals;
using hugezero::hstate;
using hugezero::node_id;
using hugezero::test::node0_2m;
using hugezero::test::node1_2m;
using hugezero::test::guest::consumer;
using hugezero::test::guest::counters_guard;
using hugezero::test::guest::stats;
using hugezero::test::guest::switches;
using clock_type = std::chrono::steady_clock;
namespace json = hugezero::test::json;

namespace {

// Makes every free page of @p h dirty, as a VM that used them and left would: it takes all of
// them, and gives them back.
void dirty_every_page(const hugezero::machine& m, const hstate& h)
{
    const std::uint64_t free = m.counters(h).free;
    if (free > 0)
        consumer(h, free).release();
}

std::uint64_t kernel_zeroed_by_writes(const hstate& h) { return stats(h)["zeroed_by_writes"]; }

} // namespace

TEST_SUITE("guest-abi")
{
    TEST_CASE("zeroable_hugepages counts the free pages not yet zeroed, per node")
    {
        HUGEZERO_REQUIRE_GUEST(true);
        const switches run;
        const auto m = hugezero::machine::open();
        const counters_guard counters(m);
        REQUIRE(m.topology().nodes().size() == 2);
        for (const hstate& h : {node0_2m, node1_2m}) {
            INFO(h);
            CHECK(m.supports_zeroing(h));
            dirty_every_page(m, h);
            CHECK(m.zeroable(h) == m.counters(h).free);
            CHECK(stats(h)["zeroed"] == 0);
            const auto r = hugezero::zero_pages(m, h, 4);
            CHECK(r.pages_zeroed == 4);
            CHECK(m.zeroable(h) == m.counters(h).free - 4);
            CHECK(stats(h)["zeroed"] == 4);
        }
        counters.check_restored();
    }

    TEST_CASE("zero_pages zeroes exactly the pages asked, one batch per write, counted like the kernel")
    {
        HUGEZERO_REQUIRE_GUEST(true);
        const switches run;
        const auto m = hugezero::machine::open();
        const counters_guard counters(m);
        dirty_every_page(m, node1_2m);
        const auto before = stats(node1_2m);
        const auto r = hugezero::zero_pages(m, node1_2m, 10, {}, hugezero::test::batch_of(4));
        CHECK(r.status == hugezero::zeroing_status::complete);
        CHECK(r.pages_zeroed == 10);
        CHECK(r.exact);
        CHECK(r.writes == 3);
        const auto after = stats(node1_2m);
        CHECK(after["zeroed_by_writes"] - before["zeroed_by_writes"] == 10);
        CHECK(after["writes"] - before["writes"] == 3);
        counters.check_restored();
    }

    TEST_CASE("a VM faults pre-zeroed pages in without zeroing them again, and its release notifies")
    {
        HUGEZERO_REQUIRE_GUEST(true);
        const switches run;
        const auto m = hugezero::machine::open();
        const counters_guard counters(m);
        dirty_every_page(m, node0_2m);
        const auto zeroed = hugezero::zero_all(m, node0_2m);
        CHECK(zeroed.status == hugezero::zeroing_status::complete);
        CHECK(m.zeroable(node0_2m) == 0);
        const auto before = stats(node0_2m);
        {
            consumer vm(node0_2m, 8);
            CHECK(stats(node0_2m)["faults_on_zeroed"] - before["faults_on_zeroed"] == 8);
            CHECK(std::all_of(vm.data(), vm.data() + 8 * (2_MiB).bytes(), [](std::byte b) { return b == std::byte{0}; }));
            std::memset(vm.data(), 0x5a, 8 * (2_MiB).bytes()); // a tenant's data
        }
        CHECK(m.zeroable(node0_2m) == 8); // back dirty
        CHECK(stats(node0_2m)["notifications"] > before["notifications"]);
        const auto again = hugezero::zero_all(m, node0_2m);
        CHECK(again.pages_zeroed == 8);
        consumer next(node0_2m, 8);
        CHECK(std::all_of(next.data(), next.data() + 8 * (2_MiB).bytes(), [](std::byte b) { return b == std::byte{0}; }));
        next.release();
        counters.check_restored();
    }

    TEST_CASE("hugetlbfs fallocate of pre-zeroed pages does not zero them again")
    {
        HUGEZERO_REQUIRE_GUEST(true);
        const switches run;
        const auto m = hugezero::machine::open();
        const counters_guard counters(m);
        dirty_every_page(m, node1_2m);
        (void)hugezero::zero_all(m, node1_2m);
        const auto before = stats(node1_2m)["fallocates_on_zeroed"];
        {
            hugezero::pool p(m); // a lease without a reservoir: fallocate()d on the spot, on node 1
            auto got = p.acquire(node1_2m, 8 * (2_MiB).bytes());
            REQUIRE_MESSAGE(got, got.message);
            CHECK(stats(node1_2m)["fallocates_on_zeroed"] - before == 8);
            const auto ram = got.lease.map();
            CHECK(hugezero::test::guest::page_nodes(ram.data(), ram.size(), 2_MiB) == std::vector<int>(8, 1));
        }
        counters.check_restored();
    }

    TEST_CASE("a write above the zeroable count is rejected or clamped, as the kernel's switch says")
    {
        HUGEZERO_REQUIRE_GUEST(true);
        const switches run;
        const auto m = hugezero::machine::open();
        const counters_guard counters(m);
        dirty_every_page(m, node0_2m);
        const std::uint64_t zeroable = m.zeroable(node0_2m);
        auto writer = m.backend().open_writer(m.zeroable_path(node0_2m));
        const auto before = stats(node0_2m);
        const auto outcome = writer->write(std::to_string(zeroable + 5));
        if (run.out_of_range == "einval") {
            CHECK(outcome.error == EINVAL);
            CHECK(stats(node0_2m)["rejected"] - before["rejected"] == 1);
            CHECK(m.zeroable(node0_2m) == zeroable);
        } else {
            CHECK(outcome.succeeded());
            CHECK(stats(node0_2m)["zeroed_by_writes"] - before["zeroed_by_writes"] == zeroable);
            CHECK(m.zeroable(node0_2m) == 0);
        }
        // hugezero's own requests never ask for more than is zeroable: exact either way.
        dirty_every_page(m, node0_2m);
        const auto r = hugezero::zero_all(m, node0_2m);
        CHECK(r.exact);
        CHECK(r.pages_zeroed == zeroable);
        counters.check_restored();
    }

    TEST_CASE("two writers at once share the pages: none is zeroed twice, every one is counted")
    {
        HUGEZERO_REQUIRE_GUEST(true);
        const switches run;
        const auto m = hugezero::machine::open();
        const counters_guard counters(m);
        dirty_every_page(m, node0_2m);
        const std::uint64_t zeroable = m.zeroable(node0_2m);
        const auto before = kernel_zeroed_by_writes(node0_2m);
        hugezero::zeroing_result a, b;
        {
            std::jthread first([&] { a = hugezero::zero_all(m, node0_2m, {}, hugezero::test::batch_of(2)); });
            std::jthread second([&] { b = hugezero::zero_all(m, node0_2m, {}, hugezero::test::batch_of(2)); });
        }
        CHECK(a.pages_zeroed + b.pages_zeroed == zeroable);
        CHECK(kernel_zeroed_by_writes(node0_2m) - before == zeroable);
        CHECK(stats(node0_2m)["zeroed"] >= zeroable);
        counters.check_restored();
    }

    TEST_CASE("a stop reaches a write blocked in the kernel, whatever the kernel does with signals")
    {
        HUGEZERO_REQUIRE_GUEST(true);
        const switches run;
        const auto m = hugezero::machine::open();
        const counters_guard counters(m);
        dirty_every_page(m, node1_2m);
        const std::uint64_t zeroable = m.zeroable(node1_2m);
        const auto before = kernel_zeroed_by_writes(node1_2m);
        hugezero::request_options options;
        options.zeroing.batch_bytes = zeroable * (2_MiB).bytes(); // one write for everything
        hugezero::zeroing_request request(m, node1_2m, std::nullopt, options);
        REQUIRE(hugezero::test::wait_until([&] { return kernel_zeroed_by_writes(node1_2m) > before; }));
        request.request_stop();
        REQUIRE(request.wait(10s));
        const auto r = *request.result();
        INFO(r);
        CHECK(r.status == hugezero::zeroing_status::cancelled);
        CHECK(r.pages_zeroed == kernel_zeroed_by_writes(node1_2m) - before); // settled from the counter
        CHECK(m.zeroable(node1_2m) == zeroable - r.pages_zeroed);
        CHECK(stats(node1_2m)["zeroing"] == 0);
        if (run.on_signal != "restart") // a restarted write completes once the signals stop
            CHECK(r.pages_zeroed < zeroable);
        counters.check_restored();
    }

    TEST_CASE("the watcher wakes on the kernel's notification through kernfs poll, not on its timer")
    {
        HUGEZERO_REQUIRE_GUEST(true);
        const switches run;
        const auto m = hugezero::machine::open();
        const counters_guard counters(m);
        dirty_every_page(m, node0_2m);
        (void)hugezero::zero_all(m, node0_2m);
        hugezero::watcher_options options;
        options.safety_net_period = 1h; // only EPOLLPRI can wake it
        hugezero::watcher w(m, {node0_2m}, options);
        CHECK(w.wait(0ms).empty());
        consumer(node0_2m, 4).release();
        const auto events = w.wait(10s);
        REQUIRE(events.size() == 1);
        CHECK(events[0].reason == hugezero::watch_reason::notified);
        CHECK(events[0].zeroable == 4);
        CHECK(w.wakeups() == 1);
        counters.check_restored();
    }

    TEST_CASE("notifications within the kernel's period are dropped, and the safety net catches up")
    {
        HUGEZERO_REQUIRE_GUEST(true);
        const switches run;
        const auto m = hugezero::machine::open();
        const counters_guard counters(m);
        dirty_every_page(m, node0_2m);
        (void)hugezero::zero_all(m, node0_2m);
        switches::notify_period(60'000);
        hugezero::watcher_options options;
        options.safety_net_period = 200ms;
        hugezero::watcher w(m, {node0_2m}, options);
        const auto before = stats(node0_2m);
        consumer(node0_2m, 2).release(); // notified (the first of the period)
        consumer(node0_2m, 2).release(); // dropped: 4 dirty pages, one notification
        CHECK(stats(node0_2m)["suppressed"] > before["suppressed"]);
        std::uint64_t seen = 0;
        REQUIRE(hugezero::test::wait_until([&] {
            for (const auto& e : w.wait(500ms))
                seen = e.zeroable;
            return seen == 4;
        }));
        counters.check_restored();
    }

    TEST_CASE("the service keeps both nodes zeroed, and pause returns with nothing being zeroed")
    {
        HUGEZERO_REQUIRE_GUEST(true);
        const switches run;
        const auto m = hugezero::machine::open();
        const counters_guard counters(m);
        for (const hstate& h : {node0_2m, node1_2m})
            dirty_every_page(m, h);
        hugezero::service_options options;
        options.hstates = {node0_2m, node1_2m};
        options.zeroing = hugezero::test::batch_of(1);
        hugezero::prezero_service service(m, options);
        const auto before0 = kernel_zeroed_by_writes(node0_2m);
        const auto before1 = kernel_zeroed_by_writes(node1_2m);
        service.start();
        REQUIRE(service.wait_drained(60s));
        CHECK(service.statistics(node0_2m).pages_zeroed == kernel_zeroed_by_writes(node0_2m) - before0);
        CHECK(service.statistics(node1_2m).pages_zeroed == kernel_zeroed_by_writes(node1_2m) - before1);
        consumer(node1_2m, 16).release(); // a VM leaves: its pages are zeroed again
        REQUIRE(hugezero::test::wait_until([&] { return m.zeroable(node1_2m) == 0 && service.wait_drained(0ms); }, 60s));
        // Paused while the VM leaves: a write that starts while pages are still being freed and
        // is then cut short by the pause is settled from a counter the frees moved too, and
        // its count would be an estimate (see zeroing_result); from a settled counter it is exact.
        service.pause();
        consumer(node0_2m, 32).release();
        service.resume();
        REQUIRE(hugezero::test::wait_until([&] { return stats(node0_2m)["zeroing"] > 0; }));
        service.pause();
        CHECK(stats(node0_2m)["zeroing"] == 0);
        CHECK(stats(node1_2m)["zeroing"] == 0);
        service.resume();
        REQUIRE(service.wait_drained(60s));
        service.stop();
        CHECK(service.statistics(node0_2m).pages_zeroed == kernel_zeroed_by_writes(node0_2m) - before0);
        counters.check_restored();
    }

    TEST_CASE("an error the kernel returns ends a request with its errno and the file, and the service retries it")
    {
        HUGEZERO_REQUIRE_GUEST(true);
        const switches run;
        const auto m = hugezero::machine::open();
        const counters_guard counters(m);
        dirty_every_page(m, node0_2m);
        switches::inject(EIO, 1);
        const auto failed = hugezero::zero_pages(m, node0_2m, 2);
        CHECK(failed.status == hugezero::zeroing_status::failed);
        CHECK(failed.error.value() == EIO);
        CHECK(failed.error_message.find("/sys/devices/system/node/node0/hugepages/hugepages-2048kB/zeroable_hugepages")
              != std::string::npos);
        switches::inject(EIO, 1);
        hugezero::service_options options;
        options.hstates = {node0_2m};
        options.error_backoff = 50ms;
        hugezero::prezero_service service(m, options);
        service.start();
        REQUIRE(service.wait_drained(60s));
        CHECK(service.statistics(node0_2m).errors == 1);
        CHECK(service.statistics(node0_2m).last_error.value() == EIO);
        counters.check_restored();
    }

    TEST_CASE("a zeroing request's CPU time is charged to the cgroup it runs in")
    {
        HUGEZERO_REQUIRE_GUEST(true);
        const switches run;
        const auto m = hugezero::machine::open();
        const counters_guard counters(m);
        const std::filesystem::path cgroup = "/sys/fs/cgroup/hugezero-zeroing";
        std::filesystem::create_directory(cgroup);
        REQUIRE(hugezero::test::guest::write_text(cgroup / "cgroup.type", "threaded"));
        const auto usage = [&] {
            std::istringstream text(hugezero::test::guest::read_text(cgroup / "cpu.stat"));
            std::string key;
            std::uint64_t value = 0;
            text >> key >> value;
            REQUIRE(key == "usage_usec");
            return value;
        };
        dirty_every_page(m, node1_2m);
        const std::uint64_t before = usage();
        hugezero::request_options options;
        options.thread.cgroup = cgroup;
        hugezero::zeroing_request request(m, node1_2m, std::nullopt, options);
        const auto r = request.get();
        INFO(r);
        CHECK(r.setting_failures.empty());
        CHECK(r.pages_zeroed > 0);
        // The kernel zeroed in the request's thread, charged to the cgroup: at least most of the
        // time the write took is there.
        const auto write_us = static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(r.time_in_writes).count());
        CHECK(usage() - before >= write_us / 2);
        // The worker was joined, but the kernel lets its task go from the cgroup a moment later
        // (found here: rmdir at once fails with EBUSY).
        CHECK(hugezero::test::wait_until([&] {
            std::error_code error;
            return std::filesystem::remove(cgroup, error) || !std::filesystem::exists(cgroup);
        }));
        counters.check_restored();
    }

    TEST_CASE("zero_all_nodes zeroes every node through the real sysfs, and its JSON agrees with the kernel")
    {
        HUGEZERO_REQUIRE_GUEST(true);
        const switches run;
        const auto m = hugezero::machine::open();
        const counters_guard counters(m);
        for (const hstate& h : {node0_2m, node1_2m})
            dirty_every_page(m, h);
        const auto before0 = kernel_zeroed_by_writes(node0_2m);
        const auto before1 = kernel_zeroed_by_writes(node1_2m);
        const auto r = hugezero::test::run_process({ZERO_ALL_NODES, "--page-size", "2M", "--json"});
        INFO(r.err);
        CHECK(r.exit_code == 0);
        const auto j = json::parse(r.out);
        CHECK(j["status"].as_string() == "complete");
        for (const auto& h : j["hstates"].as_array()) {
            const std::uint64_t node = h["node"].as_u64();
            CHECK(h["zeroable_after"].as_u64() == 0);
            CHECK(h["zeroed"].as_u64() == kernel_zeroed_by_writes(node == 0 ? node0_2m : node1_2m) - (node == 0 ? before0 : before1));
        }
        counters.check_restored();
    }

    TEST_CASE("zero_all_nodes stops at SIGINT through the real sysfs: exit 130, status cancelled, counts as the kernel's")
    {
        HUGEZERO_REQUIRE_GUEST(true);
        const switches run;
        const auto m = hugezero::machine::open();
        const hstate node0_1g{node_id(0), 1_GiB};
        HUGEZERO_SKIP_IF(m.counters(node0_1g).free == 0, "the guest has no free 1 GiB page");
        const counters_guard counters(m);
        dirty_every_page(m, node0_1g); // a 1 GiB page takes about a second to zero here
        const auto before = kernel_zeroed_by_writes(node0_1g);
        hugezero::test::child_process child({ZERO_ALL_NODES, "--node", "0", "--page-size", "1G", "--json"});
        REQUIRE(hugezero::test::wait_until([&] { return child.blocks_signal(SIGINT) && stats(node0_1g)["zeroing"] > 0; }));
        child.send(SIGINT);
        const auto r = child.wait(60s);
        INFO(r.err);
        CHECK(r.exit_code == 130);
        const auto j = json::parse(r.out);
        CHECK(j["status"].as_string() == "cancelled");
        const auto& h = j["hstates"].as_array().at(0);
        CHECK(h["zeroed"].as_u64() == kernel_zeroed_by_writes(node0_1g) - before);
        CHECK(h["zeroed"].as_u64() + h["zeroable_after"].as_u64() == h["zeroable_before"].as_u64());
        CHECK(stats(node0_1g)["zeroing"] == 0);
        counters.check_restored();
    }

    TEST_CASE("ten seconds of VMs coming and going on both nodes while the service zeroes: counts hold, nothing leaks")
    {
        HUGEZERO_REQUIRE_GUEST(true);
        const switches run;
        const auto m = hugezero::machine::open();
        const counters_guard counters(m);
        const std::vector<hstate> both{node0_2m, node1_2m};
        for (const hstate& h : both)
            dirty_every_page(m, h);
        std::map<hstate, std::pair<std::uint64_t, std::uint64_t>> before; // zeroed by writes, pages short
        for (const hstate& h : both)
            before[h] = {stats(h)["zeroed_by_writes"], stats(h)["short"]};
        hugezero::service_options options;
        options.hstates = both;
        options.zeroing = hugezero::test::batch_of(4);
        hugezero::prezero_service service(m, options);
        service.start();
        std::atomic<std::uint64_t> vms{0};
        std::map<hstate, std::atomic<std::uint64_t>> released; // pages consumers gave back
        for (const hstate& h : both)
            released[h] = 0;
        {
            std::vector<std::jthread> consumers;
            for (unsigned i = 0; i < 2; ++i)
                consumers.emplace_back([&, i](std::stop_token stop) {
                    std::uint32_t seed = 12345 + i;
                    while (!stop.stop_requested()) {
                        seed = seed * 1103515245 + 12345;
                        const hstate& h = both[(seed >> 8) % 2];
                        const std::uint64_t pages = 1 + (seed >> 16) % 16;
                        if (consumer::try_once(h, pages)) { // zeroed pages first, dirty ones after
                            vms.fetch_add(1);             // (or another consumer took them first)
                            released.at(h).fetch_add(pages);
                        }
                        if ((seed >> 4) % 8 == 0)
                            service.pause(), service.resume();
                    }
                });
            std::this_thread::sleep_for(10s); // the soak's length, not a synchronisation
        }
        REQUIRE(service.wait_drained(60s));
        service.stop();
        MESSAGE(vms.load(), " VMs came and went");
        CHECK(vms.load() > 10);
        for (const hstate& h : both) {
            INFO(h);
            const std::uint64_t zeroed = stats(h)["zeroed_by_writes"] - before[h].first;
            const std::uint64_t shortfall = stats(h)["short"] - before[h].second;
            const auto s = service.statistics(h);
            MESSAGE(h, ": the kernel zeroed ", zeroed, " pages, hugezero counted ", s.pages_zeroed, " (",
                    s.requests_interrupted, " of ", s.requests, " writes interrupted)");
            // Exact but for pages consumers took from under a write (high by at most the pages
            // writes fell short) and for writes cut short, settled from the counter while
            // consumers released pages (low by at most those pages): see zeroing_result.
            CHECK(s.requests_interrupted > 0);
            CHECK(s.pages_zeroed + released.at(h).load() >= zeroed);
            CHECK(s.pages_zeroed <= zeroed + shortfall);
            CHECK(s.errors == 0);
            CHECK(m.zeroable(h) == 0);
            CHECK(stats(h)["zeroing"] == 0);
        }
        counters.check_restored();
    }
    TEST_CASE("hugezerod runs the kernel's pre-zeroing where the kernel has it, and leases from its pool")
    {
        HUGEZERO_REQUIRE_GUEST(true);
        const switches run;
        const auto m = hugezero::machine::open();
        const counters_guard counters(m);
        dirty_every_page(m, node0_2m);
        {
            hugezero::test::daemon_process d("[reservoir]\nnode = 0\npage = 2M\ntarget = 8M\n");
            REQUIRE_MESSAGE(d.wait_ready(), d.log());
            CHECK(d.status().daemon.at("prezero") == "on");
            // The service zeroes the node's free pages in the background: none left to zero.
            CHECK(hugezero::test::wait_until([&] { return m.zeroable(node0_2m) == 0; }, 60s));
            hugezerod::client c(d.socket());
            hugezerod::protocol::acquire_request r;
            r.bytes = 8 << 20;
            r.max_cold_pages = 0;
            const auto g = c.acquire(r);
            CHECK(g.info.pages == 4);
            CHECK(d.stop().exit_code == 0);
        }
        counters.check_restored();
    }
}
