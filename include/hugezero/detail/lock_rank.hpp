/// @file
/// @brief The one lock order of hugezero (docs/design.md, "Locks"), checked: every mutex has a
/// rank, and a thread may take a mutex only if it holds none of the same or a higher rank.
///
/// The check runs in builds without `NDEBUG` (the sanitizer presets) or with
/// `HUGEZERO_LOCK_ORDER_CHECKS` defined, as abseil's deadlock detection does in debug builds:
/// each thread keeps the ranks it holds, and taking a mutex out of order calls the violation
/// handler (by default: a message naming both mutexes, then abort()), whether or not the two
/// threads ever met. Elsewhere a ranked_mutex is a plain mutex with a name.
#ifndef HUGEZERO_DETAIL_LOCK_RANK_HPP
#define HUGEZERO_DETAIL_LOCK_RANK_HPP

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <mutex>
#include <shared_mutex>
#include <vector>

#if !defined(NDEBUG) && !defined(HUGEZERO_LOCK_ORDER_CHECKS)
/// Defined when every acquisition of a ranked_mutex is checked against the lock order: in builds
/// without `NDEBUG`, or when the user defines it.
#define HUGEZERO_LOCK_ORDER_CHECKS 1
#endif

namespace hugezero::detail {

/// The lock order, outer to inner: a thread holding one may take only those below it.
enum class lock_rank : unsigned {
    control = 10,      ///< A pool's or a prezero_service's control mutex (start, stop, pause, resume).
    worker_group = 20, ///< worker_group's enrolments and pause.
    pool_core = 30,    ///< The pool's lock (pool_state::core).
    floor_gate = 40,   ///< A reservoir's floor decisions.
    call_gate = 50,    ///< A call_gate's.
    interrupter = 51,  ///< An interrupter's (and its signal handler's registry).
    ledger = 52,       ///< An hstate's ledger of claims.
    service_drain = 55,    ///< A prezero_service's wait_drained() (it reads each node's work under it),
    policy_listeners = 56, ///< A policy's listeners (allowance_changed() wakes the service's nodes under it),
    service_node = 57,     ///< then a service node's work.
    leaf = 60,         ///< Held briefly, with nothing taken under it (node mutexes, lists, the rate limiter, a request's state).
    sim_inode = 70,    ///< The simulated kernel: a file's inode lock,
    sim_mmap = 71,     ///< then the memory-map lock,
    sim_kernel = 72,   ///< then the kernel's own.
};

/// What a violation handler is told: the mutex being taken, and the one held that forbids it.
struct lock_order_violation {
    const char* taking;
    lock_rank taking_rank;
    const char* holding;
    lock_rank holding_rank;
};

namespace lock_order {

using handler = void (*)(const lock_order_violation&);

inline void abort_on_violation(const lock_order_violation& v)
{
    std::fprintf(stderr,
                 "hugezero: lock order violated: taking %s (rank %u) while holding %s (rank %u); the order is in "
                 "docs/design.md, \"Locks\"\n",
                 v.taking, static_cast<unsigned>(v.taking_rank), v.holding, static_cast<unsigned>(v.holding_rank));
    std::abort();
}

inline std::atomic<handler>& current_handler()
{
    static std::atomic<handler> h{&abort_on_violation};
    return h;
}

/// Replaces the violation handler (tests); returns the one before.
inline handler set_handler(handler h) { return current_handler().exchange(h); }

struct held {
    const void* mutex;
    const char* name;
    lock_rank rank;
};

inline std::vector<held>& held_by_this_thread()
{
    thread_local std::vector<held> stack;
    return stack;
}

// Before a blocking acquisition of @p mutex: every rank held must be lower.
inline void check(const char* name, lock_rank rank)
{
    for (const held& h : held_by_this_thread())
        if (static_cast<unsigned>(h.rank) >= static_cast<unsigned>(rank)) {
            current_handler().load()(lock_order_violation{name, rank, h.name, h.rank});
            return;
        }
}

inline void acquired(const void* mutex, const char* name, lock_rank rank) { held_by_this_thread().push_back({mutex, name, rank}); }

inline void released(const void* mutex)
{
    auto& stack = held_by_this_thread();
    for (auto it = stack.rbegin(); it != stack.rend(); ++it)
        if (it->mutex == mutex) {
            stack.erase(std::next(it).base());
            return;
        }
}

} // namespace lock_order

/// A mutex (std::mutex, or std::shared_mutex for shared locks too) with its rank and name. Use
/// it with std::lock_guard, std::unique_lock and std::condition_variable_any.
template <class Mutex = std::mutex>
class ranked_mutex {
public:
    /// A mutex of @p rank, named @p name in violation reports (a string literal).
    constexpr ranked_mutex(lock_rank rank, const char* name) noexcept : rank_(rank), name_(name) {}
    ranked_mutex(const ranked_mutex&) = delete;
    ranked_mutex& operator=(const ranked_mutex&) = delete;

    /// Takes it (checked against the ranks this thread holds).
    void lock()
    {
#if HUGEZERO_LOCK_ORDER_CHECKS
        lock_order::check(name_, rank_);
        mutex_.lock();
        lock_order::acquired(this, name_, rank_);
#else
        mutex_.lock();
#endif
    }
    /// Takes it if free (never waits, so never deadlocks: not checked, but counted as held).
    bool try_lock()
    {
        const bool got = mutex_.try_lock();
#if HUGEZERO_LOCK_ORDER_CHECKS
        if (got)
            lock_order::acquired(this, name_, rank_);
#endif
        return got;
    }
    /// Lets it go.
    void unlock()
    {
#if HUGEZERO_LOCK_ORDER_CHECKS
        lock_order::released(this);
#endif
        mutex_.unlock();
    }
    /// Takes it shared (std::shared_mutex only), checked as lock() is.
    void lock_shared()
    {
#if HUGEZERO_LOCK_ORDER_CHECKS
        lock_order::check(name_, rank_);
        mutex_.lock_shared();
        lock_order::acquired(this, name_, rank_);
#else
        mutex_.lock_shared();
#endif
    }
    /// Lets a shared hold go.
    void unlock_shared()
    {
#if HUGEZERO_LOCK_ORDER_CHECKS
        lock_order::released(this);
#endif
        mutex_.unlock_shared();
    }

    /// Its rank.
    [[nodiscard]] lock_rank rank() const noexcept { return rank_; }

private:
    Mutex mutex_;
    lock_rank rank_;
    const char* name_;
};

} // namespace hugezero::detail

#endif
