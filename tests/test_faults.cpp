// Every error path hugezero handles, one case each, with its documented outcome: a clear error
// (the errno, the file) or a documented recovery, and in every case no leaked descriptor or
// thread and no hang. Faults are planned in the simulated kernel (kernel::fail_next), or real
// (a node going offline, a pool with no free pages). Built twice: against the in-process
// simulated kernel, and through the FUSE emulator, where each errno travels through the real
// kernel to the real sysfs_backend.
#include <doctest/doctest.h>

#include <cerrno>
#include <chrono>
#include <filesystem>
#include <string>
#include <system_error>
#include <thread>

#include <hugezero/hugezero.hpp>

#include "support/expect.hpp"
#include "support/hstates.hpp"
#include "support/hugepages.hpp"
#include "support/resources.hpp"
#include "support/skip.hpp"
#include "support/test_machine.hpp"
#include "support/threads.hpp"

using namespace hugezero::literals;
using namespace std::chrono_literals;
using hugezero::hstate;
using hugezero::node_id;
using hugezero::test::contains;
using hugezero::test::count_resources;
using hugezero::test::thrown_by;
using clock_type = std::chrono::steady_clock;
using hugezero::test::node0_1g;
using hugezero::test::node0_2m;
using hugezero::test::node1_1g;
using hugezero::test::node1_2m;
using hugezero::test::batch_of;

namespace {

struct simulated : hugezero::test::simulated_machine {
    using simulated_machine::simulated_machine;

    [[nodiscard]] std::string attribute(const hstate& h, std::string_view name) const
    {
        return hugezero::detail::paths::join(machine.topology().info(h).directory, name);
    }
    [[nodiscard]] std::string display(const hstate& h, std::string_view name) const
    {
        return machine.backend().display_path(attribute(h, name));
    }
    // The kernel's own count of pages zeroed through writes, for every hstate.
    [[nodiscard]] std::uint64_t zeroed_by_writes(const hstate& h) const { return kernel->statistics(h).pages_zeroed_by_writes; }
};

} // namespace

TEST_SUITE("faults")
{
    TEST_CASE("EACCES opening zeroable_hugepages for writing: zero_pages throws it, naming the file")
    {
        simulated s(hugezero::sim::machine_builder().pages(2_MiB, 8));
        const auto before = count_resources();
        s.kernel->fail_next(s.attribute(node0_2m, "zeroable_hugepages"), hugezero::sim::operation::open, EACCES);
        const auto e = thrown_by<std::system_error>([&] { (void)hugezero::zero_pages(s.machine, node0_2m, 8); });
        CHECK(e.code().value() == EACCES);
        CHECK(std::string(e.what()) == "hugezero: open for writing " + s.display(node0_2m, "zeroable_hugepages") + ": "
                                           + std::generic_category().message(EACCES));
        CHECK(s.kernel->counts(node0_2m).dirty == 8);
        CHECK(count_resources() == before);
        // Nothing is left behind that would stop the next request.
        CHECK(hugezero::zero_all(s.machine, node0_2m).pages_zeroed == 8);
    }

    TEST_CASE("EACCES reading a counter: counters() throws it, naming the file")
    {
        simulated s(hugezero::sim::machine_builder().pages(2_MiB, 8));
        const auto before = count_resources();
        s.kernel->fail_next(s.attribute(node0_2m, "free_hugepages"), hugezero::sim::operation::open, EACCES);
        const auto e = thrown_by<std::system_error>([&] { (void)s.machine.counters(node0_2m); });
        CHECK(e.code().value() == EACCES);
        CHECK(contains(e.what(), s.display(node0_2m, "free_hugepages")));
        CHECK(s.machine.counters(node0_2m).free == 8);
        CHECK(count_resources() == before);
    }

    TEST_CASE("ENOENT mid-run: a node going offline ends a request as failed, naming the file, its pages counted")
    {
        simulated s(hugezero::sim::machine_builder().nodes(2).pages(1_GiB, 8).page_cost(1_GiB, 20ms).without_page_size(2_MiB));
        const auto before = count_resources();
        {
            hugezero::request_options options;
            options.zeroing = batch_of(1, 1_GiB);
            hugezero::zeroing_request request(s.machine, node1_1g, std::nullopt, options);
            REQUIRE(hugezero::test::wait_until([&] { return s.kernel->counts(node1_1g).zeroed >= 2; }));
            s.kernel->set_online(node_id(1), false);
            REQUIRE(request.wait(5s));
            const auto result = request.get();
            CHECK(result.status == hugezero::zeroing_status::failed);
            // ENOENT re-reading the counter, or ENODEV writing to the attribute's open file
            // (through the kernel: sysfs fails the open files of a removed attribute), depending
            // on what the request did first after the node left.
            const int error = result.error.value();
            CHECK((error == ENOENT || (hugezero::test::through_emulator() && error == ENODEV)));
            CHECK(contains(result.error_message, s.display(node1_1g, "zeroable_hugepages")));
            // The write in flight when the node left still finished its page: it is counted.
            CHECK(s.kernel->counts(node1_1g).zeroing == 0);
            CHECK(result.pages_zeroed == s.zeroed_by_writes(node1_1g));
            CHECK(result.pages_zeroed >= 2);
        }
        CHECK(count_resources() == before);
    }

    TEST_CASE("ENOENT mid-run: the service counts the errors, keeps other nodes zeroed, and recovers when the node returns")
    {
        // 100 pages of 2 ms each: node 1 still has pages to zero when it leaves, even if this
        // thread is not scheduled for a while.
        simulated s(hugezero::sim::machine_builder().nodes(2).pages(2_MiB, 100).page_cost(2_MiB, 2ms));
        const auto before = count_resources();
        {
            hugezero::service_options options;
            options.error_backoff = 20ms;
            options.watch.safety_net_period = 50ms;
            options.zeroing = batch_of(4, 2_MiB);
            hugezero::prezero_service service(s.machine, options);
            service.start();
            REQUIRE(hugezero::test::wait_until([&] { return s.kernel->counts(node1_2m).zeroed >= 4; }));
            s.kernel->set_online(node_id(1), false);
            REQUIRE(hugezero::test::wait_until([&] { return service.statistics(node1_2m).errors >= 2; }));
            // ENOENT opening or reading the attribute again; through FUSE, ENODEV writing to an
            // open file of the removed attribute, if that was the last thing a worker did.
            const int error = service.statistics(node1_2m).last_error.value();
            CHECK((error == ENOENT || (hugezero::test::through_emulator() && error == ENODEV)));
            // Node 0 is not held up by node 1.
            REQUIRE(hugezero::test::wait_until([&] { return s.kernel->zeroable(node0_2m) == 0; }));
            CHECK(s.kernel->counts(node1_2m).dirty > 0);
            // Back online (through FUSE: a new attribute; the workers' old files are dead).
            s.kernel->set_online(node_id(1), true);
            REQUIRE(service.wait_drained(10s));
            CHECK(s.kernel->zeroable(node1_2m) == 0);
            for (const hstate& h : {node0_2m, node1_2m})
                CHECK(service.statistics(h).pages_zeroed == s.zeroed_by_writes(h));
        }
        CHECK(count_resources() == before);
    }

    TEST_CASE("EIO writing: a request fails with EIO naming the file, and the service counts it and retries")
    {
        simulated s(hugezero::sim::machine_builder().pages(2_MiB, 16));
        const std::string zeroable = s.attribute(node0_2m, "zeroable_hugepages");
        const auto before = count_resources();
        s.kernel->fail_next(zeroable, hugezero::sim::operation::write, EIO);
        const auto failed = hugezero::zero_all(s.machine, node0_2m);
        CHECK(failed.status == hugezero::zeroing_status::failed);
        CHECK(failed.error.value() == EIO);
        CHECK(contains(failed.error_message, s.display(node0_2m, "zeroable_hugepages")));
        CHECK(failed.pages_zeroed == 0);
        {
            s.kernel->fail_next(zeroable, hugezero::sim::operation::write, EIO, 3);
            hugezero::service_options options;
            options.error_backoff = 10ms;
            hugezero::prezero_service service(s.machine, options);
            service.start();
            REQUIRE(service.wait_drained(10s));
            CHECK(service.statistics(node0_2m).errors == 3);
            CHECK(service.statistics(node0_2m).last_error.value() == EIO);
            CHECK(service.statistics(node0_2m).pages_zeroed == 16);
        }
        CHECK(count_resources() == before);
    }

    TEST_CASE("EIO reading: counters() throws it and a request fails with it")
    {
        simulated s(hugezero::sim::machine_builder().pages(2_MiB, 16));
        const auto before = count_resources();
        s.kernel->fail_next(s.attribute(node0_2m, "nr_hugepages"), hugezero::sim::operation::read, EIO);
        const auto e = thrown_by<std::system_error>([&] { (void)s.machine.counters(node0_2m); });
        CHECK(e.code().value() == EIO);
        CHECK(contains(e.what(), "read " + s.display(node0_2m, "nr_hugepages")));
        s.kernel->fail_next(s.attribute(node0_2m, "zeroable_hugepages"), hugezero::sim::operation::read, EIO);
        const auto result = hugezero::zero_all(s.machine, node0_2m);
        CHECK(result.status == hugezero::zeroing_status::failed);
        CHECK(result.error.value() == EIO);
        CHECK(result.writes == 0);
        CHECK(count_resources() == before);
    }

    TEST_CASE("EINVAL once (another writer came first) is retried, EINVAL always ends the request after 64")
    {
        simulated s(hugezero::sim::machine_builder().pages(2_MiB, 16));
        const std::string zeroable = s.attribute(node0_2m, "zeroable_hugepages");
        const auto before = count_resources();
        s.kernel->fail_next(zeroable, hugezero::sim::operation::write, EINVAL);
        const auto retried = hugezero::zero_all(s.machine, node0_2m);
        CHECK(retried.status == hugezero::zeroing_status::complete);
        CHECK(retried.rejected_writes == 1);
        CHECK(retried.pages_zeroed == 16);
        CHECK(retried.exact);
        s.kernel->add_pages(node0_2m, 4);
        s.kernel->fail_next(zeroable, hugezero::sim::operation::write, EINVAL, 1000);
        const auto start = clock_type::now();
        const auto rejected = hugezero::zero_all(s.machine, node0_2m);
        CHECK(clock_type::now() - start < 5s);
        CHECK(rejected.status == hugezero::zeroing_status::failed);
        CHECK(rejected.error.value() == EINVAL);
        CHECK(rejected.rejected_writes == 64);
        CHECK(contains(rejected.error_message, "rejected 64 requests in a row"));
        CHECK(count_resources() == before);
    }

    TEST_CASE("EINVAL always: the service backs off instead of spinning, and recovers")
    {
        simulated s(hugezero::sim::machine_builder().pages(2_MiB, 16));
        const auto before = count_resources();
        s.kernel->fail_next(s.attribute(node0_2m, "zeroable_hugepages"), hugezero::sim::operation::write, EINVAL, 200);
        {
            hugezero::service_options options;
            options.error_backoff = 100ms;
            hugezero::prezero_service service(s.machine, options);
            service.start();
            REQUIRE(hugezero::test::wait_until([&] { return service.statistics(node0_2m).errors >= 1; }));
            const auto stats = service.statistics(node0_2m);
            CHECK(stats.last_error.value() == EINVAL);
            CHECK(stats.requests_rejected == 64); // then it waited out the back-off
            REQUIRE(service.wait_drained(10s));   // 200 rejections: four back-offs later
            CHECK(service.statistics(node0_2m).requests_rejected == 200);
            CHECK(service.statistics(node0_2m).pages_zeroed == 16);
        }
        CHECK(count_resources() == before);
    }

    TEST_CASE("a storm of EINTR without a stop: the request goes on and completes, every page counted")
    {
        simulated s(hugezero::sim::machine_builder().pages(2_MiB, 64));
        const auto before = count_resources();
        s.kernel->fail_next(s.attribute(node0_2m, "zeroable_hugepages"), hugezero::sim::operation::write, EINTR, 100);
        const auto result = hugezero::zero_all(s.machine, node0_2m, {}, batch_of(8, 2_MiB));
        CHECK(result.status == hugezero::zeroing_status::complete);
        CHECK(result.interrupted_writes == 100);
        CHECK(result.writes == 100 + 8);
        CHECK(result.pages_zeroed == 64);
        CHECK(result.pages_zeroed == s.zeroed_by_writes(node0_2m));
        CHECK(result.zeroable_after == 0);
        CHECK(count_resources() == before);
    }

    TEST_CASE("a storm of EINTR without a stop: the service goes on and drains")
    {
        simulated s(hugezero::sim::machine_builder().pages(2_MiB, 64));
        const auto before = count_resources();
        s.kernel->fail_next(s.attribute(node0_2m, "zeroable_hugepages"), hugezero::sim::operation::write, EINTR, 100);
        {
            hugezero::service_options options;
            options.zeroing = batch_of(8, 2_MiB);
            hugezero::prezero_service service(s.machine, options);
            service.start();
            REQUIRE(service.wait_drained(10s));
            const auto stats = service.statistics(node0_2m);
            CHECK(stats.requests_interrupted == 100);
            CHECK(stats.errors == 0);
            CHECK(stats.pages_zeroed == 64);
            CHECK(stats.pages_zeroed == s.zeroed_by_writes(node0_2m));
        }
        CHECK(count_resources() == before);
    }

    TEST_CASE("a watcher whose attribute disappears: error events, the other hstates still watched, and watched again when it returns")
    {
        simulated s(hugezero::sim::machine_builder().nodes(2).in_use_pages(2_MiB, 8));
        const auto before = count_resources();
        {
            hugezero::watcher_options options;
            options.safety_net_period = 50ms;
            hugezero::watcher w(s.machine, {node0_2m, node1_2m}, options);
            const auto next = [&](const std::function<bool(const hugezero::watch_event&)>& wanted) {
                const auto deadline = clock_type::now() + 5s;
                while (clock_type::now() < deadline)
                    for (const auto& e : w.wait(1s))
                        if (wanted(e))
                            return e;
                FAIL("no such event within 5 s");
                return hugezero::watch_event{};
            };
            s.kernel->set_online(node_id(1), false);
            const auto gone = next([](const hugezero::watch_event& e) { return e.which == node1_2m; });
            CHECK(gone.error.value() == ENOENT);
            CHECK(contains(gone.message, s.display(node1_2m, "zeroable_hugepages")));
            // Node 0 is still watched, by notification.
            s.kernel->release(node0_2m, 2);
            const auto node0 = next([](const hugezero::watch_event& e) { return e.which == node0_2m && !e.error; });
            CHECK(node0.zeroable == 2);
            CHECK(node0.reason == hugezero::watch_reason::notified);
            // Node 1 comes back: its value is read again, then its notifications arrive again.
            s.kernel->set_online(node_id(1), true);
            const auto back = next([](const hugezero::watch_event& e) { return e.which == node1_2m && !e.error; });
            CHECK(back.zeroable == 0);
            s.kernel->release(node1_2m, 3);
            const auto notified = next([](const hugezero::watch_event& e) {
                return e.which == node1_2m && e.reason == hugezero::watch_reason::notified;
            });
            CHECK_FALSE(notified.error);
            CHECK(notified.zeroable == 3);
        }
        CHECK(count_resources() == before);
    }

    // The pool allocates real hugetlb memory: nothing to run through FUSE.
    TEST_CASE("ENOSPC in the pool: a lease larger than the free pages fails with ENOSPC and keeps nothing"
              * hugezero::test::not_through_emulator)
    {
        const auto free_path = std::filesystem::path("/sys/devices/system/node/node0/hugepages/hugepages-2048kB/free_hugepages");
        HUGEZERO_SKIP_IF(!std::filesystem::exists(free_path), "this machine's node0 has no 2 MiB huge pages");
        // A few free pages if root can have them (restored after), so that the lease takes some
        // before it fails; with none free it fails at once, which is the same contract.
        const hugezero::test::hugepage_reservation reservation(2_MiB, 4);
        const auto m = hugezero::machine::open();
        const auto free_before = m.counters(node0_2m).free;
        MESSAGE(free_before << " free 2MiB pages on node0");
        const auto before = count_resources();
        {
            hugezero::pool p(m);
            const auto result = p.acquire(node0_2m, (free_before + 1) * (2_MiB).bytes());
            CHECK_FALSE(result);
            CHECK(result.error.value() == ENOSPC);
            CHECK(contains(result.message, "not enough free 2MiB huge pages on node0"));
            CHECK_FALSE(result.lease);
            CHECK(p.statistics(node0_2m).leases_out == 0);
        }
        CHECK(count_resources() == before);
        CHECK(m.counters(node0_2m).free == free_before); // every page it took went back
    }
}
