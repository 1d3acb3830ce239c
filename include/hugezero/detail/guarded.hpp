/// @file
/// @brief detail::guarded<T>: state behind a mutex that wakes its waiters whenever it changes.
#ifndef HUGEZERO_DETAIL_GUARDED_HPP
#define HUGEZERO_DETAIL_GUARDED_HPP

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <stop_token>
#include <utility>

#include <hugezero/detail/deadline.hpp>
#include <hugezero/detail/lock_rank.hpp>

namespace hugezero::detail {

/// State of type @p T shared by threads and reachable only through a guard (in the spirit of
/// folly's `Synchronized`). A writable guard counts a change when it lets go: the epoch moves on
/// and every waiter wakes. So no code path can change the state and forget to tell the threads
/// waiting on it, and there is one place that does the telling. Every timed wait goes through
/// deadline_after(), so any timeout a caller passes is safe.
template <class T>
class guarded {
public:
    using clock = std::chrono::steady_clock;

    /// Access to the state while the mutex is held. @p Writable guards count a change when they
    /// let go (unlock() or destruction); read-only ones never do.
    template <bool Writable>
    class basic_guard {
    public:
        using value_type = std::conditional_t<Writable, T, const T>;

        basic_guard(const basic_guard&) = delete;
        basic_guard& operator=(const basic_guard&) = delete;
        ~basic_guard() { unlock(); }

        value_type* operator->() const noexcept { return &owner_->value_; }
        value_type& operator*() const noexcept { return owner_->value_; }

        /// How many changes the state has seen.
        [[nodiscard]] std::uint64_t epoch() const noexcept { return owner_->epoch_; }

        /// Waits until @p done holds or @p stop is requested; returns done().
        template <class Predicate>
        bool wait(const std::stop_token& stop, Predicate done)
        {
            return owner_->changed_.wait(lock_, stop, std::move(done));
        }
        /// Waits until @p done holds, @p stop is requested or @p deadline passes (none: no
        /// deadline); returns done().
        template <class Predicate>
        bool wait_until(const std::stop_token& stop, std::optional<clock::time_point> deadline, Predicate done)
        {
            if (!deadline)
                return wait(stop, std::move(done));
            return owner_->changed_.wait_until(lock_, stop, *deadline, std::move(done));
        }
        /// Waits at most @p timeout (0: just check; negative: forever) until @p done holds.
        template <class Predicate>
        bool wait_for(std::chrono::nanoseconds timeout, Predicate done)
        {
            if (timeout < std::chrono::nanoseconds::zero())
                return wait(std::stop_token{}, std::move(done));
            return wait_until(std::stop_token{}, deadline_after(timeout), std::move(done));
        }
        /// Waits until another thread changed the state, @p stop is requested or @p deadline
        /// passes.
        void wait_for_change(const std::stop_token& stop, std::optional<clock::time_point> deadline)
        {
            const std::uint64_t seen = owner_->epoch_;
            (void)wait_until(stop, deadline, [&] { return owner_->epoch_ != seen; });
        }

        /// Announces the changes made so far now, keeping the lock: for a writer that is about
        /// to wait for others to react to them.
        void announce() noexcept
        {
            static_assert(Writable, "only a writable guard changes the state");
            ++owner_->epoch_;
            owner_->changed_.notify_all();
        }

        /// Lets go now rather than at the end of the scope. Does nothing the second time.
        void unlock() noexcept
        {
            if (!lock_.owns_lock())
                return;
            if constexpr (Writable)
                ++owner_->epoch_;
            lock_.unlock();
            if constexpr (Writable)
                if (!unheard_)
                    owner_->changed_.notify_all();
        }

        /// The changes made under this guard can satisfy no waiter before its own deadline
        /// (the caller knows: a lease taken while every worker sleeps out the quiet period it
        /// just extended): the epoch still moves on when the guard lets go, but nobody is woken
        /// for it. A warm acquire then costs no other thread a wake-up and a turn at the lock.
        void leave_waiters_asleep() noexcept
        {
            static_assert(Writable, "only a writable guard changes the state");
            unheard_ = true;
        }

    private:
        friend class guarded;
        explicit basic_guard(guarded& owner) : owner_(&owner), lock_(owner.mutex_) {}
        guarded* owner_;
        std::unique_lock<ranked_mutex<>> lock_;
        bool unheard_ = false;
    };

    /// The state, to read and change.
    using guard = basic_guard<true>;
    /// The state, to read only.
    using read_guard = basic_guard<false>;

    /// Builds the state from @p args, behind a mutex of @p rank named @p name.
    template <class... Args>
    explicit guarded(lock_rank rank, const char* name, Args&&... args) : mutex_(rank, name), value_(std::forward<Args>(args)...)
    {
    }
    guarded(const guarded&) = delete;
    guarded& operator=(const guarded&) = delete;

    /// Locks the state to read and change it; the change is announced when the guard lets go.
    [[nodiscard]] guard lock() { return guard(*this); }
    /// Locks the state to read it (and wait on it) without announcing a change.
    [[nodiscard]] read_guard observe() const { return read_guard(const_cast<guarded&>(*this)); }

private:
    mutable ranked_mutex<> mutex_;
    std::condition_variable_any changed_;
    std::uint64_t epoch_ = 0;
    T value_;
};

} // namespace hugezero::detail

#endif
