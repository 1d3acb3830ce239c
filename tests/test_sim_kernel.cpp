// The simulated kernel's own contract (ABI.md §3): page states, zeroing writes and their
// policies, concurrent writers, signals, consumers, notifications, fault injection, and the
// sysfs tree it presents. Engine tests trust it as ground truth, so it is checked here first.
#include <doctest/doctest.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <latch>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

#include <poll.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <hugezero/hugezero.hpp>

#include "support/expect.hpp"
#include "support/threads.hpp"

using namespace hugezero::literals;
using namespace std::chrono_literals;
using hugezero::hstate;
using hugezero::node_id;
using hugezero::write_outcome;
using hugezero::sim::machine_builder;
using hugezero::sim::page_counts;
using hugezero::sim::sysfs_view;
using hugezero::test::thrown_by;
using hugezero::test::wait_until;

namespace {

const hstate n0_2m{node_id(0), 2_MiB};
const hstate n0_1g{node_id(0), 1_GiB};
const hstate n1_2m{node_id(1), 2_MiB};

std::string zeroable_path(const hstate& h)
{
    return hugezero::detail::paths::node_hstate_dir(h) + "/zeroable_hugepages";
}
std::string counter_path(const hstate& h, std::string_view name)
{
    return hugezero::detail::paths::node_hstate_dir(h) + "/" + std::string(name);
}

const hugezero::sim::interrupt_probe no_signals{};

using names = std::vector<std::string>;

names listing(const sysfs_view& view, std::string_view path)
{
    auto result = view.list(path);
    REQUIRE_MESSAGE(result.error == 0, "listing " << path << " failed with errno " << result.error);
    return result.names;
}

std::string content(const sysfs_view& view, std::string_view path)
{
    auto result = view.read(path);
    REQUIRE_MESSAGE(result.error == 0, "reading " << path << " failed with errno " << result.error);
    return result.content;
}

// Whether @p fd becomes readable within @p timeout.
bool readable_within(int fd, std::chrono::milliseconds timeout)
{
    pollfd p{fd, POLLIN, 0};
    const int n = ::poll(&p, 1, static_cast<int>(timeout.count()));
    return n == 1 && (p.revents & POLLIN) != 0;
}

// hugezero's cancellation signal handler, as the engine installs it: count the signal for the
// thread it interrupted. No SA_RESTART, so a blocking call it lands in fails with EINTR.
extern "C" void count_cancel_signal(int) { hugezero::detail::note_cancel_signal(); }

class cancel_signal_handler {
public:
    explicit cancel_signal_handler(int signal) : signal_(signal)
    {
        struct sigaction action{};
        action.sa_handler = &count_cancel_signal;
        sigemptyset(&action.sa_mask);
        action.sa_flags = 0;
        REQUIRE(::sigaction(signal_, &action, &previous_) == 0);
    }
    cancel_signal_handler(const cancel_signal_handler&) = delete;
    cancel_signal_handler& operator=(const cancel_signal_handler&) = delete;
    ~cancel_signal_handler() { ::sigaction(signal_, &previous_, nullptr); }

private:
    int signal_;
    struct sigaction previous_{};
};

struct interrupted_write {
    write_outcome outcome;
    page_counts after;
    hugezero::sim::zeroing_statistics statistics;
};

// Starts a write of @p request (10 pages of 20 ms each are dirty) in a thread, signals that
// thread once it has zeroed a page, and reports what the write returned.
interrupted_write interrupt_a_write(hugezero::sim::signal_policy policy, std::string_view request)
{
    const cancel_signal_handler handler(SIGUSR1);
    const auto k = machine_builder().pages(2_MiB, 10).page_cost(2_MiB, 20ms).on_signal(policy).build();
    hugezero::sim::backend source(k);
    const auto writer = source.open_writer(zeroable_path(n0_2m));

    write_outcome outcome;
    std::thread worker([&] { outcome = writer->write(request); });
    const bool one_page_done = wait_until([&] { return k->counts(n0_2m).zeroed >= 1; });
    if (one_page_done)
        ::pthread_kill(worker.native_handle(), SIGUSR1);
    worker.join(); // before any REQUIRE: a joinable std::thread must not be destroyed
    REQUIRE(one_page_done);
    return {outcome, k->counts(n0_2m), k->statistics(n0_2m)};
}

} // namespace

TEST_SUITE("sim_kernel")
{
    // ----- what zeroable_hugepages reports -----

    TEST_CASE("sim zeroable counts free pages that are neither zeroed nor being zeroed")
    {
        const auto k = machine_builder().pages(2_MiB, 10).zeroed_pages(2_MiB, 3).in_use_pages(2_MiB, 2).build();
        const page_counts c = k->counts(n0_2m);
        CHECK(c.dirty == 10);
        CHECK(c.zeroed == 3);
        CHECK(c.zeroing == 0);
        CHECK(c.in_use == 2);
        CHECK(c.free() == 13);
        CHECK(c.total() == 15);
        CHECK(k->zeroable(n0_2m) == 10);
        const sysfs_view view(k);
        CHECK(content(view, zeroable_path(n0_2m)) == "10\n");
        CHECK(content(view, counter_path(n0_2m, "free_hugepages")) == "13\n");
        CHECK(content(view, counter_path(n0_2m, "nr_hugepages")) == "15\n");
        CHECK(content(view, counter_path(n0_2m, "surplus_hugepages")) == "0\n");

        // A page being zeroed is still free but no longer zeroable.
        k->set_page_cost(2_MiB, 10s);
        CHECK(k->page_cost(2_MiB) == 10s);
        k->set_page_cost(2_MiB, 300ms);
        std::thread writer([&] { (void)k->write_zeroable(n0_2m, "1", no_signals); });
        const bool zeroing = wait_until([&] { return k->counts(n0_2m).zeroing == 1; });
        const std::string zeroable_meanwhile = content(view, zeroable_path(n0_2m));
        const std::string free_meanwhile = content(view, counter_path(n0_2m, "free_hugepages"));
        writer.join();
        REQUIRE(zeroing);
        CHECK(zeroable_meanwhile == "9\n");
        CHECK(free_meanwhile == "13\n");
        CHECK(content(view, zeroable_path(n0_2m)) == "9\n");
    }

    // ----- zeroing writes -----

    TEST_CASE("sim writing a count zeroes exactly that many pages")
    {
        const auto k = machine_builder().pages(2_MiB, 10).build();
        hugezero::sim::backend source(k);
        const auto writer = source.open_writer(zeroable_path(n0_2m));

        const write_outcome first = writer->write("3");
        CHECK(first.succeeded());
        CHECK(first.bytes_written == 1);
        CHECK(k->counts(n0_2m).dirty == 7);
        CHECK(k->counts(n0_2m).zeroed == 3);
        CHECK(k->statistics(n0_2m).pages_zeroed_by_writes == 3);
        CHECK(k->statistics(n0_2m).writes == 1);

        const write_outcome second = writer->write("2\n");
        CHECK(second.succeeded());
        CHECK(second.bytes_written == 2);
        CHECK(k->counts(n0_2m).dirty == 5);
        CHECK(k->counts(n0_2m).zeroed == 5);
        CHECK(k->statistics(n0_2m).pages_zeroed_by_writes == 5);
        CHECK(k->statistics(n0_2m).writes == 2);

        CHECK(writer->write("0").succeeded()); // zero pages is a valid request
        CHECK(k->counts(n0_2m).dirty == 5);
        CHECK(k->statistics(n0_2m).writes == 3);
    }

    TEST_CASE("sim writing max zeroes every zeroable page")
    {
        const auto k = machine_builder().pages(2_MiB, 6).zeroed_pages(2_MiB, 2).in_use_pages(2_MiB, 1).build();
        hugezero::sim::backend source(k);
        const auto writer = source.open_writer(zeroable_path(n0_2m));

        const write_outcome all = writer->write("max");
        CHECK(all.succeeded());
        CHECK(all.bytes_written == 3);
        CHECK(k->counts(n0_2m).dirty == 0);
        CHECK(k->counts(n0_2m).zeroed == 8);
        CHECK(k->counts(n0_2m).in_use == 1); // pages in use are not free, so not zeroable
        CHECK(k->statistics(n0_2m).pages_zeroed_by_writes == 6);

        const write_outcome nothing_left = writer->write("max\n");
        CHECK(nothing_left.succeeded());
        CHECK(nothing_left.bytes_written == 4);
        CHECK(k->counts(n0_2m).zeroed == 8);
        CHECK(k->statistics(n0_2m).pages_zeroed_by_writes == 6);
        CHECK(k->statistics(n0_2m).writes == 2);
    }

    TEST_CASE("sim writing anything but a count or max fails with EINVAL and does nothing")
    {
        const auto k = machine_builder().pages(2_MiB, 10).build();
        for (const std::string_view garbage : {"", "\n", "abc", "-1", "+3", " 3", "3 ", "0x3", "3\n\n", "3.0", "MAX",
                                               "max\n\n", "maximum", "18446744073709551616"}) {
            CAPTURE(garbage);
            const write_outcome outcome = k->write_zeroable(n0_2m, garbage, no_signals);
            CHECK(outcome.error == EINVAL);
            CHECK(outcome.bytes_written == 0);
        }
        CHECK(k->counts(n0_2m).dirty == 10);
        CHECK(k->counts(n0_2m).zeroed == 0);
        CHECK(k->statistics(n0_2m).writes == 0);
        CHECK(k->statistics(n0_2m).writes_rejected == 0); // only out-of-range counts are "rejected"
        CHECK(k->statistics(n0_2m).pages_zeroed_by_writes == 0);
    }

    TEST_CASE("sim writing more than is zeroable fails with EINVAL under the einval policy")
    {
        const auto k = machine_builder().pages(2_MiB, 5).build();
        const write_outcome outcome = k->write_zeroable(n0_2m, "6", no_signals);
        CHECK(outcome.error == EINVAL);
        CHECK(k->counts(n0_2m).dirty == 5);
        CHECK(k->counts(n0_2m).zeroed == 0);
        CHECK(k->statistics(n0_2m).writes_rejected == 1);
        CHECK(k->statistics(n0_2m).writes == 0);
        CHECK(k->write_zeroable(n0_2m, "5", no_signals).succeeded()); // exactly the zeroable count is fine
        CHECK(k->counts(n0_2m).zeroed == 5);
    }

    TEST_CASE("sim writing more than is zeroable zeroes what there is under the clamp policy")
    {
        const auto k = machine_builder().pages(2_MiB, 5).out_of_range(hugezero::sim::out_of_range_policy::clamp).build();
        const write_outcome outcome = k->write_zeroable(n0_2m, "6\n", no_signals);
        CHECK(outcome.succeeded());
        CHECK(outcome.bytes_written == 2);
        CHECK(k->counts(n0_2m).dirty == 0);
        CHECK(k->counts(n0_2m).zeroed == 5);
        CHECK(k->statistics(n0_2m).writes_rejected == 0);
        CHECK(k->statistics(n0_2m).pages_zeroed_by_writes == 5);

        // The policy is a run-time switch too.
        k->add_pages(n0_2m, 2);
        k->set_out_of_range_policy(hugezero::sim::out_of_range_policy::einval);
        CHECK(k->write_zeroable(n0_2m, "3", no_signals).error == EINVAL);
        CHECK(k->counts(n0_2m).dirty == 2);
    }

    TEST_CASE("sim concurrent writers share the work page by page")
    {
        constexpr std::uint64_t pages = 40;
        constexpr int writers = 4;
        const auto k = machine_builder().pages(2_MiB, pages).page_cost(2_MiB, 5ms).build();
        hugezero::sim::backend source(k);
        std::vector<std::unique_ptr<hugezero::attribute_writer>> handles; // one open file per writer, as kernfs wants
        for (int i = 0; i < writers; ++i)
            handles.push_back(source.open_writer(zeroable_path(n0_2m)));

        std::vector<write_outcome> outcomes(writers);
        std::latch start(writers + 1);
        std::vector<std::thread> threads;
        for (int i = 0; i < writers; ++i)
            threads.emplace_back([&, i] {
                start.arrive_and_wait();
                outcomes[static_cast<std::size_t>(i)] = handles[static_cast<std::size_t>(i)]->write("max");
            });
        start.arrive_and_wait();
        // Two pages being zeroed at the same moment means two writers each hold a different page.
        const bool in_parallel = wait_until([&] { return k->counts(n0_2m).zeroing >= 2; });
        for (auto& t : threads)
            t.join();

        CHECK(in_parallel);
        for (const write_outcome& outcome : outcomes) {
            CHECK(outcome.succeeded());
            CHECK(outcome.bytes_written == 3);
        }
        const page_counts after = k->counts(n0_2m);
        CHECK(after.dirty == 0);
        CHECK(after.zeroing == 0);
        CHECK(after.zeroed == pages);
        // No page was zeroed twice: the work done equals the dirty pages there were.
        CHECK(k->statistics(n0_2m).pages_zeroed_by_writes == pages);
        CHECK(k->statistics(n0_2m).writes == static_cast<std::uint64_t>(writers));
    }

    // ----- signals: each policy ABI.md §3 leaves open -----

    TEST_CASE("sim signal under the eintr policy ends the write with EINTR at a page boundary")
    {
        const interrupted_write got = interrupt_a_write(hugezero::sim::signal_policy::eintr, "10");
        CHECK(got.outcome.error == EINTR);
        CHECK(got.after.zeroed >= 1);
        CHECK(got.after.zeroed < 10);
        CHECK(got.after.zeroing == 0); // stopped between pages, never in the middle of one
        CHECK(got.after.dirty == 10 - got.after.zeroed);
        CHECK(got.statistics.pages_zeroed_by_writes == got.after.zeroed);
        CHECK(got.statistics.writes_interrupted == 1);
        CHECK(got.statistics.writes_restarted == 0);
    }

    TEST_CASE("sim signal under the partial_success policy returns the full count with fewer pages done")
    {
        const interrupted_write got = interrupt_a_write(hugezero::sim::signal_policy::partial_success, "10");
        CHECK(got.outcome.succeeded());
        CHECK(got.outcome.bytes_written == 2);
        CHECK(got.after.zeroed >= 1);
        CHECK(got.after.zeroed < 10);
        CHECK(got.after.zeroing == 0);
        CHECK(got.statistics.writes_interrupted == 1);
    }

    TEST_CASE("sim signal under the restart policy restarts the write which goes on")
    {
        // "max" so that the restarted write asks for what is left (a restarted "10" would now
        // be out of range, exactly as a restarted syscall with the same buffer would be).
        const interrupted_write got = interrupt_a_write(hugezero::sim::signal_policy::restart, "max");
        CHECK(got.outcome.succeeded());
        CHECK(got.outcome.bytes_written == 3);
        CHECK(got.after.zeroed == 10);
        CHECK(got.after.dirty == 0);
        CHECK(got.statistics.writes_restarted == 1);
        CHECK(got.statistics.writes == 2); // the first execution and the restarted one
        CHECK(got.statistics.writes_interrupted == 0);
        CHECK(got.statistics.pages_zeroed_by_writes == 10);
    }

    // ----- consumers -----

    TEST_CASE("sim allocate takes zeroed pages first and zeroes dirty ones on the spot")
    {
        const auto k = machine_builder().pages(2_MiB, 4).zeroed_pages(2_MiB, 3).build();
        const auto first = k->allocate(n0_2m, 2);
        CHECK(first.pages == 2);
        CHECK(first.zeroed_on_the_spot == 0);
        CHECK(k->counts(n0_2m).zeroed == 1);
        CHECK(k->counts(n0_2m).dirty == 4);
        CHECK(k->counts(n0_2m).in_use == 2);

        const auto second = k->allocate(n0_2m, 3);
        CHECK(second.pages == 3);
        CHECK(second.zeroed_on_the_spot == 2);
        CHECK(k->counts(n0_2m).zeroed == 0);
        CHECK(k->counts(n0_2m).dirty == 2);
        CHECK(k->counts(n0_2m).in_use == 5);
        CHECK(k->statistics(n0_2m).pages_zeroed_on_allocation == 2);
        CHECK(k->statistics(n0_2m).pages_zeroed_by_writes == 0);
    }

    TEST_CASE("sim allocate spends the zeroing cost of the dirty pages it takes, in the caller")
    {
        const auto k = machine_builder().pages(2_MiB, 3).zeroed_pages(2_MiB, 1).page_cost(2_MiB, 30ms).build();
        const auto start = std::chrono::steady_clock::now();
        const auto got = k->allocate(n0_2m, 3); // 1 zeroed (free of cost), 2 dirty (30 ms each)
        const auto took = std::chrono::steady_clock::now() - start;
        CHECK(got.zeroed_on_the_spot == 2);
        CHECK(took >= 60ms);
        const auto zeroed_start = std::chrono::steady_clock::now();
        (void)k->write_zeroable(n0_2m, "1", no_signals); // the last dirty page, now zeroed
        const auto cheap = std::chrono::steady_clock::now();
        (void)k->allocate(n0_2m, 1); // a zeroed page: no cost
        CHECK(std::chrono::steady_clock::now() - cheap < 30ms);
        CHECK(cheap - zeroed_start >= 30ms); // the write spent its page's cost
    }

    TEST_CASE("sim allocate waits for pages being zeroed")
    {
        const auto k = machine_builder().pages(2_MiB, 1).page_cost(2_MiB, 200ms).build();
        std::thread writer([&] { (void)k->write_zeroable(n0_2m, "1", no_signals); });
        const bool zeroing = wait_until([&] { return k->counts(n0_2m).zeroing == 1; });
        hugezero::sim::allocation got{};
        if (zeroing)
            got = k->allocate(n0_2m, 1); // the only free page is being zeroed: wait for it
        writer.join();
        REQUIRE(zeroing);
        CHECK(got.pages == 1);
        CHECK(got.zeroed_on_the_spot == 0);
        const page_counts after = k->counts(n0_2m);
        CHECK(after.in_use == 1);
        CHECK(after.zeroing == 0);
        CHECK(after.zeroed == 0);
        CHECK(after.dirty == 0);
        CHECK(k->statistics(n0_2m).pages_zeroed_by_writes == 1);
        CHECK(k->statistics(n0_2m).pages_zeroed_on_allocation == 0);
    }

    TEST_CASE("sim a write whose dirty pages a consumer takes ends early, succeeds and counts the shortfall")
    {
        // 4 dirty pages, a write of 4 at 50 ms a page; once it zeroes its first page, a consumer
        // allocates 3 pages: there is no zeroed page yet, so it takes the 3 dirty ones left.
        const auto k = machine_builder().pages(2_MiB, 4).page_cost(2_MiB, 50ms).build();
        write_outcome outcome;
        std::thread writer([&] { outcome = k->write_zeroable(n0_2m, "4", no_signals); });
        const bool zeroing = wait_until([&] { return k->counts(n0_2m).zeroing == 1; });
        hugezero::sim::allocation got{};
        if (zeroing)
            got = k->allocate(n0_2m, 3);
        writer.join();
        REQUIRE(zeroing);
        CHECK(got.zeroed_on_the_spot == 3);
        CHECK(outcome.succeeded());
        CHECK(outcome.bytes_written == 1);
        CHECK(k->statistics(n0_2m).pages_zeroed_by_writes == 1);
        CHECK(k->statistics(n0_2m).pages_short_in_writes == 3);
        CHECK(k->counts(n0_2m).zeroed == 1);
        CHECK(k->counts(n0_2m).in_use == 3);
    }

    TEST_CASE("sim allocate beyond the free pages fails with ENOSPC and takes nothing")
    {
        const auto k = machine_builder().pages(2_MiB, 4).zeroed_pages(2_MiB, 3).in_use_pages(2_MiB, 1).build();
        const auto e = thrown_by<std::system_error>([&] { (void)k->allocate(n0_2m, 8); });
        CHECK(e.code().value() == ENOSPC);
        CHECK(std::string(e.what())
              == "hugezero: simulated allocation of 8 pages of node0/2MiB: only 7 free: "
                     + std::generic_category().message(ENOSPC));
        const page_counts after = k->counts(n0_2m);
        CHECK(after.dirty == 4);
        CHECK(after.zeroed == 3);
        CHECK(after.in_use == 1);
        CHECK(k->statistics(n0_2m).pages_zeroed_on_allocation == 0);
        CHECK(k->allocate(n0_2m, 7).pages == 7); // exactly the free pages is fine
    }

    TEST_CASE("sim release makes pages dirty and zeroable and notifies subscribers")
    {
        const auto k = machine_builder().pages(2_MiB, 1).in_use_pages(2_MiB, 5).build();
        std::atomic<int> notified{0};
        auto subscription = k->subscribe(n0_2m, [&] { ++notified; });

        k->release(n0_2m, 3);
        CHECK(k->counts(n0_2m).in_use == 2);
        CHECK(k->counts(n0_2m).dirty == 4);
        CHECK(k->zeroable(n0_2m) == 4);
        CHECK(notified == 1);
        CHECK(k->statistics(n0_2m).notifications == 1);

        k->add_pages(n0_2m, 2); // a grown pool notifies too
        CHECK(k->counts(n0_2m).dirty == 6);
        CHECK(notified == 2);

        CHECK(notified == 2);

        CHECK(thrown_by<std::invalid_argument>([&] { k->release(n0_2m, 3); }).what()
              == std::string("hugezero::sim: release of 3 pages of node0/2MiB but only 2 are in use"));

        subscription.reset(); // no calls after reset()
        k->release(n0_2m, 1);
        CHECK(notified == 2);
        CHECK(k->statistics(n0_2m).notifications == 3);
    }

    TEST_CASE("sim notifications inside the minimum period are dropped and counted")
    {
        // An hour-long period: the second and third notifications are certainly inside it.
        const auto k = machine_builder().in_use_pages(2_MiB, 4).notify_min_period(1h).build();
        std::atomic<int> notified{0};
        const auto subscription = k->subscribe(n0_2m, [&] { ++notified; });
        k->release(n0_2m, 1);
        k->release(n0_2m, 1);
        k->add_pages(n0_2m, 1);
        CHECK(notified == 1);
        CHECK(k->statistics(n0_2m).notifications == 1);
        CHECK(k->statistics(n0_2m).notifications_suppressed == 2);
        CHECK(k->counts(n0_2m).dirty == 3); // the pages came back all the same

        k->set_notify_min_period(0ns);
        k->release(n0_2m, 1);
        CHECK(notified == 2);
        CHECK(k->statistics(n0_2m).notifications == 2);
        CHECK(k->statistics(n0_2m).notifications_suppressed == 2);
    }

    // ----- fault injection -----

    TEST_CASE("sim fail_next makes exactly the next read or open of an attribute fail")
    {
        const auto k = machine_builder().pages(2_MiB, 3).build();
        hugezero::sim::backend source(k);
        const std::string path = counter_path(n0_2m, "free_hugepages");
        const std::string shown = "simulated:/sys/" + path;

        k->fail_next(path, hugezero::sim::operation::read, EIO);
        const auto read_error = thrown_by<std::system_error>([&] { (void)source.read(path); });
        CHECK(read_error.code().value() == EIO);
        CHECK(std::string(read_error.what()) == "hugezero: read " + shown + ": " + std::generic_category().message(EIO));
        CHECK(source.read(path) == "3\n");

        k->fail_next(path, hugezero::sim::operation::open, EMFILE, 2);
        const auto open_error = thrown_by<std::system_error>([&] { (void)source.read(path); });
        CHECK(open_error.code().value() == EMFILE);
        CHECK(std::string(open_error.what()) == "hugezero: open " + shown + ": " + std::generic_category().message(EMFILE));
        CHECK(thrown_by<std::system_error>([&] { (void)source.open_watch(path); }).code().value() == EMFILE);
        CHECK(source.read(path) == "3\n");

        // A fault belongs to one path: its neighbours are unaffected.
        k->fail_next(path, hugezero::sim::operation::read, EIO);
        CHECK(source.read(counter_path(n0_2m, "nr_hugepages")) == "3\n");
        CHECK(thrown_by<std::system_error>([&] { (void)source.read(path); }).code().value() == EIO);
    }

    TEST_CASE("sim fail_next makes exactly the next write or open for writing fail")
    {
        const auto k = machine_builder().pages(2_MiB, 3).build();
        hugezero::sim::backend source(k);
        const std::string path = zeroable_path(n0_2m);

        k->fail_next(path, hugezero::sim::operation::open, EACCES);
        const auto open_error = thrown_by<std::system_error>([&] { (void)source.open_writer(path); });
        CHECK(open_error.code().value() == EACCES);
        CHECK(hugezero::test::contains(open_error.what(), "hugezero: open for writing simulated:/sys/" + path));

        const auto writer = source.open_writer(path);
        k->fail_next(path, hugezero::sim::operation::write, EHWPOISON);
        const write_outcome failed = writer->write("2");
        CHECK(failed.error == EHWPOISON);
        CHECK_FALSE(failed.succeeded());
        CHECK(k->counts(n0_2m).dirty == 3);
        CHECK(k->statistics(n0_2m).writes == 0);

        CHECK(writer->write("2").succeeded());
        CHECK(k->counts(n0_2m).dirty == 1);
    }

    // ----- the tree the kernel presents -----

    TEST_CASE("sim stock-kernel hstates have no zeroable_hugepages")
    {
        const auto k = machine_builder()
                           .nodes(2)
                           .pages(2_MiB, 4)
                           .pages(1_GiB, 1)
                           .without_zeroable(1_GiB)
                           .without_zeroable(n1_2m)
                           .build();
        const sysfs_view view(k);
        CHECK(k->has_zeroable_interface(n0_2m));
        CHECK_FALSE(k->has_zeroable_interface(n0_1g));
        CHECK_FALSE(k->has_zeroable_interface(n1_2m));
        const names with = {"free_hugepages", "nr_hugepages", "surplus_hugepages", "zeroable_hugepages"};
        const names without = {"free_hugepages", "nr_hugepages", "surplus_hugepages"};
        CHECK(listing(view, hugezero::detail::paths::node_hstate_dir(n0_2m)) == with);
        CHECK(listing(view, hugezero::detail::paths::node_hstate_dir(n0_1g)) == without);
        CHECK(listing(view, hugezero::detail::paths::node_hstate_dir(n1_2m)) == without);
        CHECK(view.read(zeroable_path(n0_1g)).error == ENOENT);
        CHECK(view.stat(zeroable_path(n0_1g)).type == sysfs_view::kind::missing);
        CHECK(k->write_zeroable(n0_1g, "1", no_signals).error == ENOENT);
        CHECK(k->counts(n0_1g).dirty == 1);

        // Discovery sees the same thing.
        const hugezero::machine m(std::make_shared<hugezero::sim::backend>(k));
        CHECK(m.supports_zeroing(n0_2m));
        CHECK_FALSE(m.supports_zeroing(n0_1g));
        CHECK_FALSE(m.supports_zeroing(n1_2m));
    }

    TEST_CASE("sim sysfs_view lists the root devices and kernel directories")
    {
        const auto k = machine_builder().nodes(2).pages(2_MiB, 1).pages(1_GiB, 1).build();
        const sysfs_view view(k);
        CHECK(listing(view, "") == names{"devices", "kernel"});
        CHECK(listing(view, "devices") == names{"system"});
        CHECK(listing(view, "devices/system") == names{"cpu", "node"});
        CHECK(listing(view, "devices/system/cpu") == names{"online"});
        CHECK(listing(view, "devices/system/node")
              == names{"has_cpu", "has_memory", "has_normal_memory", "node0", "node1", "online", "possible"});
        CHECK(listing(view, "devices/system/node/node1") == names{"cpulist", "hugepages"});
        CHECK(listing(view, "devices/system/node/node1/hugepages") == names{"hugepages-1048576kB", "hugepages-2048kB"});
        CHECK(listing(view, "kernel") == names{"mm"});
        CHECK(listing(view, "kernel/mm") == names{"hugepages"});
        CHECK(listing(view, "kernel/mm/hugepages") == names{"hugepages-1048576kB", "hugepages-2048kB"});
        CHECK(listing(view, "kernel/mm/hugepages/hugepages-2048kB")
              == names{"free_hugepages", "nr_hugepages", "nr_overcommit_hugepages", "resv_hugepages", "surplus_hugepages"});
    }

    TEST_CASE("sim sysfs_view global counters sum the nodes and report reservations")
    {
        const auto k = machine_builder()
                           .nodes(2)
                           .pages(2_MiB, 4)
                           .zeroed_pages(2_MiB, 1)
                           .in_use_pages(2_MiB, 2)
                           .reserved(2_MiB, 2)
                           .overcommit(2_MiB, 7)
                           .build();
        const sysfs_view view(k);
        const std::string dir = "kernel/mm/hugepages/hugepages-2048kB/";
        CHECK(content(view, dir + "nr_hugepages") == "14\n");
        CHECK(content(view, dir + "free_hugepages") == "10\n");
        CHECK(content(view, dir + "resv_hugepages") == "2\n");
        CHECK(content(view, dir + "surplus_hugepages") == "0\n");
        CHECK(content(view, dir + "nr_overcommit_hugepages") == "7\n");
        CHECK(k->reserved(2_MiB) == 2);
        CHECK(k->overcommit(2_MiB) == 7);
        CHECK(k->reserved(1_GiB) == 0);
    }

    TEST_CASE("sim sysfs_view node masks and cpulists with a memoryless node")
    {
        const auto k = machine_builder()
                           .nodes(3)
                           .memoryless(node_id(1))
                           .cpus(node_id(0), {0, 1})
                           .cpus(node_id(1), {2, 3})
                           .cpus(node_id(2), {})
                           .pages(2_MiB, 4)
                           .build();
        const sysfs_view view(k);
        CHECK(content(view, "devices/system/node/possible") == "0-2\n");
        CHECK(content(view, "devices/system/node/online") == "0-2\n");
        CHECK(content(view, "devices/system/node/has_memory") == "0,2\n");
        CHECK(content(view, "devices/system/node/has_normal_memory") == "0,2\n");
        CHECK(content(view, "devices/system/node/has_cpu") == "0-1\n");
        CHECK(content(view, "devices/system/node/node0/cpulist") == "0-1\n");
        CHECK(content(view, "devices/system/node/node1/cpulist") == "2-3\n");
        CHECK(content(view, "devices/system/node/node2/cpulist") == "\n"); // an empty mask
        CHECK(content(view, "devices/system/cpu/online") == "0-3\n");
        CHECK(listing(view, "devices/system/node/node1") == names{"cpulist"});
        CHECK(view.list("devices/system/node/node1/hugepages").error == ENOENT);
        CHECK(k->hstates() == std::vector<hstate>{n0_2m, {node_id(2), 2_MiB}});

        const hugezero::machine m(std::make_shared<hugezero::sim::backend>(k));
        CHECK_FALSE(m.topology().node(node_id(1)).has_memory);
        CHECK(m.topology().node(node_id(1)).hstates.empty());
        CHECK(m.topology().node(node_id(2)).cpus.empty());
    }

    TEST_CASE("sim sysfs_view sparse node numbers")
    {
        const auto k = machine_builder().node_ids({0, 2}).pages(2_MiB, 1).build();
        const sysfs_view view(k);
        CHECK(listing(view, "devices/system/node")
              == names{"has_cpu", "has_memory", "has_normal_memory", "node0", "node2", "online", "possible"});
        CHECK(content(view, "devices/system/node/online") == "0,2\n");
        CHECK(content(view, "devices/system/node/possible") == "0,2\n");
        CHECK(view.list("devices/system/node/node1").error == ENOENT);
        CHECK(listing(view, "devices/system/node/node2/hugepages") == names{"hugepages-2048kB"});
        CHECK(k->nodes() == std::vector<node_id>{node_id(0), node_id(2)});
    }

    TEST_CASE("sim sysfs_view without NUMA has no node directory")
    {
        const auto k = machine_builder().without_numa().pages(2_MiB, 3).cpus(node_id(0), {0, 1, 2, 3}).build();
        CHECK_FALSE(k->numa());
        const sysfs_view view(k);
        CHECK(listing(view, "devices/system") == names{"cpu"});
        CHECK(view.list("devices/system/node").error == ENOENT);
        CHECK(view.read("devices/system/node/online").error == ENOENT);
        CHECK(content(view, "devices/system/cpu/online") == "0-3\n");
        CHECK(listing(view, "kernel/mm/hugepages") == names{"hugepages-2048kB"});
        CHECK(content(view, "kernel/mm/hugepages/hugepages-2048kB/nr_hugepages") == "3\n");

        const hugezero::machine m(std::make_shared<hugezero::sim::backend>(k));
        CHECK_FALSE(m.topology().numa());
        CHECK(m.counters(n0_2m) == hugezero::hstate_counters{3, 3, 0, std::nullopt});
    }

    TEST_CASE("sim sysfs_view stat and the errors of reading listing and writing")
    {
        const auto k = machine_builder().pages(2_MiB, 2).build();
        const sysfs_view view(k);
        CHECK(view.stat("").type == sysfs_view::kind::directory);
        CHECK(view.stat("devices/system/node/node0/hugepages").type == sysfs_view::kind::directory);
        const auto zeroable = view.stat(zeroable_path(n0_2m));
        CHECK(zeroable.type == sysfs_view::kind::attribute);
        CHECK(zeroable.writable);
        const auto nr = view.stat(counter_path(n0_2m, "nr_hugepages"));
        CHECK(nr.type == sysfs_view::kind::attribute);
        CHECK_FALSE(nr.writable);
        CHECK(view.stat("devices/system/node/node0/meminfo").type == sysfs_view::kind::missing);

        CHECK(view.list("devices/system/node/online").error == ENOTDIR);
        CHECK(view.read("devices/system").error == EISDIR);
        CHECK(view.read("sys").error == ENOENT);
        // Only the names the kernel prints exist: no leading zeros, no other spellings.
        CHECK(view.read("devices/system/node/node00/cpulist").error == ENOENT);
        CHECK(view.list("devices/system/node/node0/hugepages/hugepages-02048kB").error == ENOENT);
        CHECK(view.list("devices/system/node/node0/hugepages/hugepages-1048576kB").error == ENOENT);

        CHECK(view.check_open(counter_path(n0_2m, "nr_hugepages"), hugezero::sim::operation::write) == EACCES);
        CHECK(view.check_open(zeroable_path(n0_2m), hugezero::sim::operation::write) == 0);
        CHECK(view.check_open("devices", hugezero::sim::operation::read) == EISDIR);
        CHECK(view.check_open("devices/nothing", hugezero::sim::operation::read) == ENOENT);
        CHECK(view.write(counter_path(n0_2m, "nr_hugepages"), "1", no_signals).error == EACCES);
        CHECK(view.write("devices/nothing", "1", no_signals).error == ENOENT);
        CHECK(k->counts(n0_2m).dirty == 2);
    }

    TEST_CASE("sim set_online false makes a node disappear until it is back")
    {
        const auto k = machine_builder().nodes(2).pages(2_MiB, 4).build();
        const sysfs_view view(k);
        k->set_online(node_id(1), false);
        CHECK_FALSE(k->online(node_id(1)));
        CHECK(view.read("devices/system/node/node1/cpulist").error == ENOENT);
        CHECK(view.read(counter_path(n1_2m, "nr_hugepages")).error == ENOENT);
        CHECK(listing(view, "devices/system/node")
              == names{"has_cpu", "has_memory", "has_normal_memory", "node0", "online", "possible"});
        CHECK(content(view, "devices/system/node/online") == "0\n");
        CHECK(content(view, "devices/system/node/has_memory") == "0\n");
        CHECK(content(view, "devices/system/node/possible") == "0-1\n");
        CHECK(k->counts(n1_2m).dirty == 4); // its pages keep their states
        // ...but they no longer count globally, as a real kernel removes them before offlining.
        CHECK(content(view, "kernel/mm/hugepages/hugepages-2048kB/nr_hugepages") == "4\n");

        k->set_online(node_id(1), true);
        CHECK(content(view, counter_path(n1_2m, "nr_hugepages")) == "4\n");
        CHECK(content(view, "devices/system/node/online") == "0-1\n");

        CHECK(thrown_by<std::invalid_argument>([&] { k->set_online(node_id(5), false); }).what()
              == std::string("hugezero::sim: no node 5"));
    }

    TEST_CASE("sim builder rejects inconsistent machines")
    {
        CHECK(thrown_by<std::invalid_argument>([] { (void)machine_builder().node_ids({0, 2, 0}).build(); }).what()
              == std::string("hugezero::sim: node 0 is configured twice"));
        CHECK(thrown_by<std::invalid_argument>([] {
                  (void)machine_builder().nodes(2).memoryless(node_id(1)).pages(n1_2m, 4).build();
              }).what()
              == std::string("hugezero::sim: memoryless node 1 cannot have huge pages"));
        CHECK(thrown_by<std::invalid_argument>([] { (void)machine_builder().without_numa().node_ids({0, 1}).build(); }).what()
              == std::string("hugezero::sim: a kernel without NUMA has exactly one node, node 0"));
        CHECK(thrown_by<std::invalid_argument>([] { (void)machine_builder().nodes(1).pages(n1_2m, 4).build(); }).what()
              == std::string("hugezero::sim: pages configured for node1/2MiB, but there is no node 1"));

        // The same checks guard kernel::create, for configurations built by hand.
        hugezero::sim::kernel::config cfg;
        cfg.nodes.push_back({node_id(0), {0}, true, {{2_MiB}, {2_MiB}}});
        CHECK(thrown_by<std::invalid_argument>([&] { (void)hugezero::sim::kernel::create(cfg); }).what()
              == std::string("hugezero::sim: page size 2MiB is configured twice on node 0"));
        cfg.nodes = {{node_id(3), {0}, false, {{2_MiB}}}};
        CHECK(thrown_by<std::invalid_argument>([&] { (void)hugezero::sim::kernel::create(cfg); }).what()
              == std::string("hugezero::sim: memoryless node 3 cannot have huge pages"));

        // Memoryless nodes simply get no pages from the per-size defaults.
        const auto k = machine_builder().nodes(2).memoryless(node_id(1)).pages(2_MiB, 4).build();
        CHECK(k->hstates() == std::vector<hstate>{n0_2m});
    }

    // ----- eventfd watches through sim::backend -----

    TEST_CASE("sim watch fd becomes readable after release and rearm drains it")
    {
        const auto k = machine_builder().pages(2_MiB, 1).in_use_pages(2_MiB, 4).build();
        hugezero::sim::backend source(k);
        const auto watch = source.open_watch(zeroable_path(n0_2m));
        CHECK(watch->events() == EPOLLIN);
        CHECK_FALSE(readable_within(watch->fd(), 0ms));

        k->release(n0_2m, 2);
        REQUIRE(readable_within(watch->fd(), 5s));
        CHECK(watch->rearm() == "3\n");
        CHECK_FALSE(readable_within(watch->fd(), 0ms));

        // It goes into an epoll set as a VMM's event loop would put it.
        const int ep = ::epoll_create1(EPOLL_CLOEXEC);
        REQUIRE(ep >= 0);
        epoll_event registration{};
        registration.events = watch->events();
        CHECK(::epoll_ctl(ep, EPOLL_CTL_ADD, watch->fd(), &registration) == 0);
        k->release(n0_2m, 1);
        epoll_event got{};
        CHECK(::epoll_wait(ep, &got, 1, 5000) == 1);
        CHECK(watch->rearm() == "4\n");
        CHECK(::epoll_wait(ep, &got, 1, 0) == 0);
        ::close(ep);
    }

    TEST_CASE("sim watches on counters never fire and closed watches stop notifying")
    {
        const auto k = machine_builder().in_use_pages(2_MiB, 4).build();
        hugezero::sim::backend source(k);
        const auto counter_watch = source.open_watch(counter_path(n0_2m, "free_hugepages"));
        CHECK(counter_watch->rearm() == "0\n");
        auto zeroable_watch = source.open_watch(zeroable_path(n0_2m));
        const int old_fd = zeroable_watch->fd();
        zeroable_watch.reset();
        // The next descriptor reuses the closed watch's number: a stale subscription would poke it.
        const int reused = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        REQUIRE(reused >= 0);
        k->release(n0_2m, 1);
        CHECK_FALSE(readable_within(counter_watch->fd(), 0ms));
        if (reused == old_fd)
            CHECK_FALSE(readable_within(reused, 0ms));
        ::close(reused);
        CHECK(counter_watch->rearm() == "1\n");
        CHECK(thrown_by<std::system_error>([&] { (void)source.open_watch("devices/nothing"); }).code().value() == ENOENT);
    }
}
