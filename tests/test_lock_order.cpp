// The lock order of docs/design.md ("Locks"), checked: every mutex of the library has a rank
// (detail/lock_rank.hpp), and a thread that takes one out of order calls the violation handler.
// The check is on in the sanitizer presets (no NDEBUG), where every suite runs with it; this
// file turns it on in every build, so that it shows in each that a reversed pair is caught.
#define HUGEZERO_LOCK_ORDER_CHECKS 1

#include <doctest/doctest.h>

#include <condition_variable>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include <hugezero/detail/lock_rank.hpp>

using hugezero::detail::lock_rank;
using hugezero::detail::ranked_mutex;

namespace {

std::vector<std::string>& violations()
{
    static std::vector<std::string> seen;
    return seen;
}

void record(const hugezero::detail::lock_order_violation& v) { violations().push_back(std::string(v.taking) + " under " + v.holding); }

// Records violations instead of aborting, for the life of the object.
struct recording_violations {
    recording_violations() : before(hugezero::detail::lock_order::set_handler(&record)) { violations().clear(); }
    ~recording_violations() { (void)hugezero::detail::lock_order::set_handler(before); }
    hugezero::detail::lock_order::handler before;
};

} // namespace

TEST_SUITE("lock-order")
{
    TEST_CASE("the pool's lock taken, then worker_group's: reversed, and reported naming both")
    {
        const recording_violations recording;
        ranked_mutex<> core(lock_rank::pool_core, "the pool's lock");
        ranked_mutex<> workers(lock_rank::worker_group, "worker_group");
        {
            const std::lock_guard outer(core);
            const std::lock_guard inner(workers);
        }
        REQUIRE(violations().size() == 1);
        CHECK(violations()[0] == "worker_group under the pool's lock");
    }

    TEST_CASE("every rank of the list taken in its order, each under the ones before: no violation")
    {
        const recording_violations recording;
        ranked_mutex<> control(lock_rank::control, "control");
        ranked_mutex<> workers(lock_rank::worker_group, "worker_group");
        ranked_mutex<> core(lock_rank::pool_core, "core");
        ranked_mutex<> floor(lock_rank::floor_gate, "floor");
        ranked_mutex<> gate(lock_rank::call_gate, "gate");
        ranked_mutex<> interrupter(lock_rank::interrupter, "interrupter");
        ranked_mutex<> ledger(lock_rank::ledger, "ledger");
        ranked_mutex<> leaf(lock_rank::leaf, "leaf");
        ranked_mutex<> inode(lock_rank::sim_inode, "inode");
        ranked_mutex<std::shared_mutex> map(lock_rank::sim_mmap, "mmap");
        ranked_mutex<> kernel(lock_rank::sim_kernel, "kernel");
        const std::scoped_lock all(control, workers, core, floor, gate, interrupter, ledger, leaf, inode);
        const std::shared_lock shared(map);
        const std::lock_guard last(kernel);
        CHECK(violations().empty());
    }

    TEST_CASE("two mutexes of one rank at once are a violation, one after the other is not")
    {
        const recording_violations recording;
        ranked_mutex<> a(lock_rank::leaf, "leaf a");
        ranked_mutex<> b(lock_rank::leaf, "leaf b");
        {
            const std::lock_guard first(a);
        }
        {
            const std::lock_guard second(b); // a was let go
        }
        CHECK(violations().empty());
        {
            const std::lock_guard first(a);
            const std::lock_guard second(b);
        }
        CHECK(violations() == std::vector<std::string>{"leaf b under leaf a"});
    }

    TEST_CASE("a try_lock never waits, so it is never a violation, but what it takes counts as held")
    {
        const recording_violations recording;
        ranked_mutex<> core(lock_rank::pool_core, "core");
        ranked_mutex<> workers(lock_rank::worker_group, "worker_group");
        ranked_mutex<> floor(lock_rank::floor_gate, "floor");
        const std::lock_guard outer(core);
        REQUIRE(workers.try_lock());
        CHECK(violations().empty());
        workers.unlock();
        REQUIRE(floor.try_lock());
        {
            const std::lock_guard again(workers); // under core and floor: reversed
        }
        floor.unlock();
        CHECK(violations() == std::vector<std::string>{"worker_group under core"});
    }

    TEST_CASE("a wait on a condition variable lets the mutex go and takes it again, in order")
    {
        const recording_violations recording;
        ranked_mutex<> core(lock_rank::pool_core, "core");
        ranked_mutex<> floor(lock_rank::floor_gate, "floor");
        std::condition_variable_any changed;
        bool ready = false;
        std::thread other([&] {
            const std::lock_guard lock(floor);
            ready = true;
            changed.notify_all();
        });
        {
            const std::lock_guard outer(core);
            std::unique_lock lock(floor);
            changed.wait(lock, [&] { return ready; });
        }
        other.join();
        CHECK(violations().empty());
    }

    TEST_CASE("each thread has its own ranks: a lock held by one thread does not order another's")
    {
        const recording_violations recording;
        ranked_mutex<> core(lock_rank::pool_core, "core");
        ranked_mutex<> workers(lock_rank::worker_group, "worker_group");
        const std::lock_guard held(core);
        std::thread([&] { const std::lock_guard lock(workers); }).join();
        CHECK(violations().empty());
    }
}
