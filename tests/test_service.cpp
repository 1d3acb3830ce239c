// The pre-zeroing service: it keeps hstates zeroed with per-node pinned workers, its statistics
// agree with the simulated kernel's own counts, and each policy does what it says.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include <sched.h>

#include <hugezero/hugezero.hpp>

#include "support/expect.hpp"
#include "support/hstates.hpp"
#include "support/recording_backend.hpp"
#include "support/test_machine.hpp"
#include "support/threads.hpp"

using namespace hugezero::literals;
using namespace std::chrono_literals;
using hugezero::hstate;
using hugezero::node_id;
using clock_type = std::chrono::steady_clock;
using hugezero::test::node0_1g;
using hugezero::test::node0_2m;
using hugezero::test::node1_2m;

namespace {

struct fixture : hugezero::test::recorded_machine {
    using recorded_machine::recorded_machine;

    // The service's statistics equal the kernel's ground truth for every hstate it handles.
    void check_statistics_match(const hugezero::prezero_service& service) const
    {
        for (const auto& s : service.statistics()) {
            INFO(s.which);
            CHECK(s.pages_zeroed == kernel->statistics(s.which).pages_zeroed_by_writes);
            CHECK(s.bytes_zeroed() == s.pages_zeroed * s.which.size.bytes());
            CHECK(s.zeroable == kernel->zeroable(s.which));
        }
    }
};

hugezero::service_options with_policy(std::shared_ptr<hugezero::zeroing_policy> policy)
{
    hugezero::service_options options;
    options.policy = std::move(policy);
    return options;
}

// A policy that zeroes everything and notes, from inside the worker, how the worker runs.
class observing_policy final : public hugezero::zeroing_policy {
public:
    hugezero::policy_decision allow(const hstate& h, std::uint64_t zeroable, clock::time_point) override
    {
        const std::lock_guard lock(mutex);
        affinities.emplace_back(h.node, hugezero::current_affinity());
        schedulers.insert(::sched_getscheduler(0));
        return {zeroable, {}};
    }
    std::mutex mutex;
    std::vector<std::pair<node_id, hugezero::cpu_set>> affinities;
    std::set<int> schedulers;
};

// A scheduler's policy: zero only as many pages as the next VM will need, then stop.
class ahead_of_vm_start final : public hugezero::zeroing_policy {
public:
    explicit ahead_of_vm_start(std::uint64_t pages) : remaining_(pages) {}
    hugezero::policy_decision allow(const hstate&, std::uint64_t zeroable, clock::time_point) override
    {
        const std::lock_guard lock(mutex_);
        const std::uint64_t pages = std::min(zeroable, remaining_);
        remaining_ -= pages;
        return {pages, {}};
    }
    void unused(const hstate&, std::uint64_t pages) override
    {
        const std::lock_guard lock(mutex_);
        remaining_ += pages;
    }

private:
    std::mutex mutex_;
    std::uint64_t remaining_;
};

} // namespace

TEST_SUITE("service")
{
    TEST_CASE("the service zeroes everything zeroable on every node: statistics match the kernel's")
    {
        fixture f(hugezero::sim::machine_builder().nodes(2).pages(2_MiB, 300).pages(1_GiB, 3).page_cost(2_MiB, 20us).page_cost(1_GiB, 5ms));
        hugezero::service_options options;
        options.workers_per_node = 2;
        hugezero::prezero_service service(f.machine, options);
        CHECK(service.hstates().size() == 4);
        service.start();
        REQUIRE(service.wait_drained(10s));
        for (const auto& h : f.kernel->hstates()) {
            CHECK(f.kernel->zeroable(h) == 0);
            CHECK(f.kernel->counts(h).zeroed == f.kernel->counts(h).total());
        }
        f.check_statistics_match(service);
        CHECK(service.statistics(node0_2m).pages_zeroed == 300);
        CHECK(service.statistics(node0_2m).time_zeroing >= 300 * 20us); // each page's cost is spent in write()
        CHECK(service.statistics(node0_1g).time_zeroing >= 3 * 5ms);
        CHECK(service.wait_drained(std::chrono::nanoseconds::max())); // no overflow computing the deadline
        CHECK(service.statistics(node0_1g).pages_zeroed == 3);
        CHECK(service.statistics(node0_2m).requests_rejected == 0);
    }

    TEST_CASE("pages released by a VM are zeroed again, woken by the watcher")
    {
        fixture f(hugezero::sim::machine_builder().pages(2_MiB, 64));
        hugezero::service_options options;
        options.watch.safety_net_period = 1h; // only notifications can wake it
        hugezero::prezero_service service(f.machine, options);
        service.start();
        REQUIRE(service.wait_drained(10s));
        for (int vm = 0; vm < 5; ++vm) {
            const auto got = f.kernel->allocate(node0_2m, 40);
            CHECK(got.zeroed_on_the_spot == 0); // the VM found its pages already zeroed
            f.kernel->release(node0_2m, 40);
            REQUIRE(service.wait_drained(10s));
        }
        CHECK(service.statistics(node0_2m).pages_zeroed == 64 + 5 * 40);
        f.check_statistics_match(service);
    }

    TEST_CASE("pause interrupts the writes in flight and holds the workers: resume carries on")
    {
        // Twelve pages in one write of 0.6 s: a pause that waited for the write could not meet the bound.
        fixture f(hugezero::sim::machine_builder().pages(1_GiB, 12).page_cost(1_GiB, 50ms).without_page_size(2_MiB));
        hugezero::service_options options;
        options.zeroing.batch_bytes = 12 * (1_GiB).bytes(); // one long write, only a signal ends it early
        hugezero::prezero_service service(f.machine, options);
        service.start();
        REQUIRE(hugezero::test::wait_until([&] { return f.kernel->counts(node0_1g).zeroed >= 1; }));
        const auto paused_at = clock_type::now();
        service.pause();
        CHECK(f.kernel->counts(node0_1g).zeroing == 0); // pause() returned: nothing zeroes now
        CHECK(clock_type::now() - paused_at <= 50ms + hugezero::test::scheduling_slack); // the page in progress
        CHECK(service.paused());
        const auto zeroed_while_paused = f.kernel->counts(node0_1g).zeroed;
        CHECK_FALSE(service.wait_drained(200ms)); // paused: not drained
        CHECK_FALSE(hugezero::test::wait_until([&] { return f.kernel->counts(node0_1g).zeroed > zeroed_while_paused; }, 200ms));
        CHECK(zeroed_while_paused < 12);
        CHECK(service.statistics(node0_1g).requests_interrupted == 1);
        service.resume();
        REQUIRE(service.wait_drained(10s));
        CHECK(service.statistics(node0_1g).pages_zeroed == 12);
        f.check_statistics_match(service);
    }

    TEST_CASE("stop interrupts writes in flight promptly: start again resumes the work")
    {
        fixture f(hugezero::sim::machine_builder().pages(1_GiB, 12).page_cost(1_GiB, 50ms).without_page_size(2_MiB));
        hugezero::service_options options;
        options.zeroing.batch_bytes = 12 * (1_GiB).bytes();
        hugezero::prezero_service service(f.machine, options);
        service.start();
        CHECK_THROWS_AS(service.start(), std::logic_error);
        REQUIRE(hugezero::test::wait_until([&] { return f.kernel->counts(node0_1g).zeroed >= 1; }));
        const auto stopped_at = clock_type::now();
        service.stop();
        CHECK(clock_type::now() - stopped_at <= 50ms + hugezero::test::scheduling_slack);
        CHECK_FALSE(service.running());
        CHECK(f.kernel->counts(node0_1g).zeroing == 0);
        service.stop(); // idempotent
        const auto partial = service.statistics(node0_1g).pages_zeroed;
        CHECK(partial == f.kernel->statistics(node0_1g).pages_zeroed_by_writes);
        service.start();
        REQUIRE(service.wait_drained(10s));
        CHECK(service.statistics(node0_1g).pages_zeroed == 12);
    }

    TEST_CASE("the pages-per-second budget holds the rate within 10% on every node")
    {
        fixture f(hugezero::sim::machine_builder().nodes(2).pages(2_MiB, 100000));
        constexpr double rate = 200; // pages per second per node
        hugezero::prezero_service service(f.machine, with_policy(hugezero::policies::pages_per_second(rate)));
        service.start();
        // Measure over one second after the start-up transient.
        REQUIRE(hugezero::test::wait_until([&] { return service.statistics(node1_2m).pages_zeroed > 20; }));
        const auto t0 = clock_type::now();
        const auto p0 = service.statistics(node0_2m).pages_zeroed;
        const auto q0 = service.statistics(node1_2m).pages_zeroed;
        std::this_thread::sleep_for(1s); // the measurement window (a duration, not a synchronisation)
        const double seconds = std::chrono::duration<double>(clock_type::now() - t0).count();
        const double node0_rate = static_cast<double>(service.statistics(node0_2m).pages_zeroed - p0) / seconds;
        const double node1_rate = static_cast<double>(service.statistics(node1_2m).pages_zeroed - q0) / seconds;
        MESSAGE("budget " << rate << " pages/s: node0 " << node0_rate << ", node1 " << node1_rate);
        CHECK(node0_rate == doctest::Approx(rate).epsilon(0.10));
        CHECK(node1_rate == doctest::Approx(rate).epsilon(0.10));
    }

    TEST_CASE("the bytes-per-second budget holds the rate within 10%")
    {
        fixture f(hugezero::sim::machine_builder().pages(2_MiB, 100000));
        constexpr double rate = 400.0 * (1 << 20); // 400 MiB/s: 200 pages of 2 MiB per second
        hugezero::prezero_service service(f.machine, with_policy(hugezero::policies::bytes_per_second(rate)));
        service.start();
        REQUIRE(hugezero::test::wait_until([&] { return service.statistics(node0_2m).pages_zeroed > 20; }));
        const auto t0 = clock_type::now();
        const auto b0 = service.statistics(node0_2m).bytes_zeroed();
        std::this_thread::sleep_for(1s); // the measurement window (a duration, not a synchronisation)
        const double seconds = std::chrono::duration<double>(clock_type::now() - t0).count();
        const double measured = static_cast<double>(service.statistics(node0_2m).bytes_zeroed() - b0) / seconds;
        MESSAGE("budget " << rate / (1 << 20) << " MiB/s: measured " << measured / (1 << 20));
        CHECK(measured == doctest::Approx(rate).epsilon(0.10));
    }

    TEST_CASE("the idle policy runs its workers under SCHED_IDLE")
    {
        fixture f(hugezero::sim::machine_builder().pages(2_MiB, 8));
        hugezero::prezero_service service(f.machine, with_policy(hugezero::policies::idle()));
        service.start();
        REQUIRE(service.wait_drained(10s));
        REQUIRE_FALSE(f.recorder->writes().empty());
        for (const auto& w : f.recorder->writes())
            CHECK(w.scheduling_policy == SCHED_IDLE);
    }

    TEST_CASE("workers are pinned to their node's CPUs")
    {
        const auto cpus = hugezero::current_affinity().cpus();
        const hugezero::cpu_set first{cpus.front()};
        const hugezero::cpu_set last{cpus.back()};
        fixture f(hugezero::sim::machine_builder().nodes(2).pages(2_MiB, 64).cpus(node_id(0), first).cpus(node_id(1), last));
        auto observer = std::make_shared<observing_policy>();
        hugezero::service_options options = with_policy(observer);
        options.workers_per_node = 2;
        hugezero::prezero_service service(f.machine, options);
        service.start();
        REQUIRE(service.wait_drained(10s));
        REQUIRE(observer->affinities.size() >= 2);
        for (const auto& [node, affinity] : observer->affinities)
            CHECK(affinity == (node == node_id(0) ? first : last));
        for (const auto& w : f.recorder->writes())
            CHECK(w.affinity == (w.path.find("node0/") != std::string::npos ? first : last));
        CHECK(observer->schedulers == std::set<int>{SCHED_OTHER});
    }

    TEST_CASE("a custom policy: zero only what the next VM needs")
    {
        fixture f(hugezero::sim::machine_builder().pages(2_MiB, 500));
        hugezero::service_options options = with_policy(std::make_shared<ahead_of_vm_start>(100));
        options.workers_per_node = 2;
        hugezero::prezero_service service(f.machine, options);
        service.start();
        REQUIRE(hugezero::test::wait_until([&] { return f.kernel->counts(node0_2m).zeroed == 100; }));
        CHECK_FALSE(service.wait_drained(200ms)); // 400 pages stay dirty: the policy holds them back
        CHECK(f.kernel->counts(node0_2m).zeroed == 100);
        CHECK(service.statistics(node0_2m).pages_zeroed == 100);
    }

    TEST_CASE("every write asks for at most one batch")
    {
        fixture f(hugezero::sim::machine_builder().pages(2_MiB, 100));
        hugezero::service_options options;
        options.zeroing.batch_bytes = 8 * (2_MiB).bytes();
        hugezero::prezero_service service(f.machine, options);
        service.start();
        REQUIRE(service.wait_drained(10s));
        std::uint64_t total = 0;
        for (const auto& w : f.recorder->writes()) {
            const auto pages = std::stoull(w.request);
            CHECK(pages <= 8);
            total += pages;
        }
        CHECK(total == 100);
        CHECK(f.recorder->writes().size() == 13);
    }

    TEST_CASE("worker settings that fail are reported, and the workers still zero")
    {
        fixture f(hugezero::sim::machine_builder().pages(2_MiB, 10));
        hugezero::service_options options;
        options.thread.cgroup = "/nonexistent/hugezero-cgroup";
        options.workers_per_node = 2;
        hugezero::prezero_service service(f.machine, options);
        service.start();
        REQUIRE(service.wait_drained(10s));
        const auto failures = service.setting_failures();
        REQUIRE(failures.size() == 2); // one per worker
        for (const auto& failure : failures) {
            CHECK(failure.setting == "cgroup");
            CHECK(failure.error.value() == ENOENT);
        }
        CHECK(service.statistics(node0_2m).pages_zeroed == 10);
    }

    TEST_CASE("an I/O error is counted and retried after the back-off")
    {
        fixture f(hugezero::sim::machine_builder().pages(2_MiB, 10));
        f.kernel->fail_next(f.machine.zeroable_path(node0_2m), hugezero::sim::operation::write, EIO);
        hugezero::service_options options;
        options.error_backoff = 20ms;
        hugezero::prezero_service service(f.machine, options);
        service.start();
        REQUIRE(service.wait_drained(10s));
        const auto stats = service.statistics(node0_2m);
        CHECK(stats.errors == 1);
        CHECK(stats.last_error.value() == EIO);
        CHECK(stats.pages_zeroed == 10);
        f.check_statistics_match(service);
    }

    TEST_CASE("by default, one worker per CPU of the node, for every hstate that supports zeroing")
    {
        fixture f(hugezero::sim::machine_builder().pages(2_MiB, 200).pages(1_GiB, 2).without_zeroable(1_GiB).page_cost(2_MiB, 50us));
        hugezero::service_options options;
        options.workers_per_node = 0;
        hugezero::prezero_service service(f.machine, options);
        CHECK(service.hstates() == std::vector<hstate>{node0_2m}); // 1 GiB has no zeroable_hugepages
        CHECK_THROWS_AS((void)service.statistics(node0_1g), std::invalid_argument);
        service.start();
        REQUIRE(service.wait_drained(10s));
        std::set<pid_t> threads;
        for (const auto& w : f.recorder->writes())
            threads.insert(w.thread);
        CHECK(threads.size() <= hugezero::current_affinity().count());
        CHECK(service.statistics(node0_2m).pages_zeroed == 200);
    }

    TEST_CASE("statistics print in words")
    {
        fixture f(hugezero::sim::machine_builder().pages(2_MiB, 4));
        hugezero::prezero_service service(f.machine);
        service.start();
        REQUIRE(service.wait_drained(10s));
        std::ostringstream out;
        out << service.statistics(node0_2m);
        CHECK(out.str() == "node0/2MiB: 4 pages zeroed in 1 requests (0 interrupted, 0 rejected, 0 errors), zeroable 0");
    }

    TEST_CASE("pause returns only once no write zeroes: the CPUs are back, and the statistics complete")
    {
        // Two workers each in the middle of a 1 GiB page (40 ms): pause() waits for both.
        fixture f(hugezero::sim::machine_builder().pages(1_GiB, 8).page_cost(1_GiB, 40ms).without_page_size(2_MiB));
        hugezero::service_options options;
        options.workers_per_node = 2;
        options.zeroing = hugezero::test::batch_of(1, 1_GiB);
        hugezero::prezero_service service(f.machine, options);
        service.start();
        REQUIRE(hugezero::test::wait_until([&] { return f.kernel->counts(node0_1g).zeroing == 2; }));
        service.pause();
        CHECK(f.kernel->counts(node0_1g).zeroing == 0);
        CHECK(service.statistics(node0_1g).pages_zeroed == f.kernel->statistics(node0_1g).pages_zeroed_by_writes);
        service.resume();
        REQUIRE(service.wait_drained(10s));
        f.check_statistics_match(service);
    }

    TEST_CASE("wait_drained returns false at once when the service is paused or not running")
    {
        fixture f(hugezero::sim::machine_builder().pages(2_MiB, 8));
        hugezero::prezero_service service(f.machine);
        const auto returns_false_at_once = [&] {
            const auto start = clock_type::now();
            CHECK_FALSE(service.wait_drained(std::chrono::hours(1)));
            CHECK(clock_type::now() - start < 1s);
        };
        returns_false_at_once(); // never started
        service.start();
        REQUIRE(service.wait_drained(10s));
        service.pause();
        returns_false_at_once();
        service.resume();
        CHECK(service.wait_drained(10s));
        service.stop();
        returns_false_at_once();
    }

    TEST_CASE("a policy that throws is counted, its worker lives on, and pause and resume still work")
    {
        // Before, the exception unwound the worker with its sessions still registered: the next
        // pause() touched freed memory (ASan: heap-use-after-free), and nothing zeroed again.
        struct throwing_policy final : hugezero::zeroing_policy {
            hugezero::policy_decision allow(const hstate&, std::uint64_t zeroable, clock::time_point) override
            {
                return {2 * zeroable, {}}; // more than there is: unused() follows
            }
            void unused(const hstate&, std::uint64_t) override
            {
                if (throws.exchange(false))
                    throw std::runtime_error("a custom policy's bug");
            }
            std::atomic<bool> throws{true};
        };
        fixture f(hugezero::sim::machine_builder().pages(2_MiB, 16));
        auto options = with_policy(std::make_shared<throwing_policy>());
        options.error_backoff = 10ms;
        hugezero::prezero_service service(f.machine, options);
        service.start();
        REQUIRE(service.wait_drained(10s));
        CHECK(service.statistics(node0_2m).errors == 1);
        CHECK(service.statistics(node0_2m).last_error.value() == EIO);
        service.pause();
        CHECK(service.running());
        service.resume();
        f.kernel->release(node0_2m, f.kernel->allocate(node0_2m, 8).pages);
        REQUIRE(service.wait_drained(10s));
        CHECK(service.statistics(node0_2m).pages_zeroed == 16 + 8);
        f.check_statistics_match(service);
    }

    TEST_CASE("a policy that allows nothing is asked again when it says its allowance changed")
    {
        struct gated_policy final : hugezero::zeroing_policy {
            hugezero::policy_decision allow(const hstate&, std::uint64_t zeroable, clock::time_point) override
            {
                asks.fetch_add(1);
                return {open.load() ? zeroable : 0, {}}; // no retry time: "wake me"
            }
            std::atomic<bool> open{false};
            std::atomic<int> asks{0};
        };
        fixture f(hugezero::sim::machine_builder().pages(2_MiB, 16));
        const auto policy = std::make_shared<gated_policy>();
        auto options = with_policy(policy);
        options.watch.safety_net_period = 1h; // nothing else may wake the workers
        hugezero::prezero_service service(f.machine, options);
        service.start();
        REQUIRE(hugezero::test::wait_until([&] { return policy->asks.load() >= 1; }));
        CHECK_FALSE(service.wait_drained(100ms));
        CHECK(f.kernel->zeroable(node0_2m) == 16);
        policy->open = true;
        policy->allowance_changed();
        REQUIRE(service.wait_drained(10s));
        CHECK(service.statistics(node0_2m).pages_zeroed == 16);
        service.stop();
        policy->allowance_changed(); // a stopped service no longer listens: harmless
    }

    TEST_CASE("a watcher that dies is counted and started again, and meanwhile the workers poll")
    {
        fixture f(hugezero::sim::machine_builder().pages(2_MiB, 16));
        hugezero::service_options options;
        options.watch.safety_net_period = 20ms;
        options.error_backoff = 20ms;
        hugezero::prezero_service service(f.machine, options);
        service.start();
        REQUIRE(service.wait_drained(10s));
        CHECK(service.watching());
        f.recorder->fail_watch_opens(1000); // the watcher cannot come back for now
        f.recorder->break_watches(1);       // the next re-read kills it
        f.kernel->release(node0_2m, f.kernel->allocate(node0_2m, 8).pages);
        REQUIRE(hugezero::test::wait_until([&] { return service.watcher_failures() >= 2; }));
        CHECK_FALSE(service.watching());
        CHECK(service.statistics(node0_2m).errors >= 2);
        // Nobody watches, yet released pages are zeroed: the workers look every 20 ms.
        f.kernel->release(node0_2m, f.kernel->allocate(node0_2m, 8).pages);
        REQUIRE(service.wait_drained(10s));
        CHECK(f.kernel->zeroable(node0_2m) == 0);
        f.recorder->fail_watch_opens(0);
        REQUIRE(hugezero::test::wait_until([&] { return service.watching(); }));
        const auto failures = service.watcher_failures();
        f.kernel->release(node0_2m, f.kernel->allocate(node0_2m, 8).pages);
        REQUIRE(service.wait_drained(10s));
        CHECK(service.watcher_failures() == failures);
        f.check_statistics_match(service);
    }
}
