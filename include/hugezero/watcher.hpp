/// @file
/// @brief hugezero::watcher: one epoll instance telling when hstates have pages to pre-zero.
#ifndef HUGEZERO_WATCHER_HPP
#define HUGEZERO_WATCHER_HPP

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <ostream>
#include <stop_token>
#include <string>
#include <system_error>
#include <vector>

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <hugezero/backend.hpp>
#include <hugezero/error.hpp>
#include <hugezero/machine.hpp>
#include <hugezero/unique_fd.hpp>

namespace hugezero {

/// Why a watch event was reported.
enum class watch_reason {
    notified, ///< The kernel notified a change of `zeroable_hugepages`.
    periodic, ///< The safety-net re-read found a different value (a notification was lost or coalesced).
};

/// A change of one hstate's `zeroable_hugepages`.
struct watch_event {
    hstate which{node_id(0), page_2mib}; ///< The hstate.
    std::uint64_t zeroable = 0;           ///< Its `zeroable_hugepages` when re-read.
    watch_reason reason = watch_reason::notified; ///< What made the watcher look.
    /// Set when the attribute could not be re-read (for instance its node went offline, or its
    /// content was malformed); `zeroable` then holds the last good value.
    std::error_code error;
    std::string message; ///< The error in words, naming the file; empty without error.

    /// Prints e.g. `node0/2MiB zeroable 12 (notified)`.
    friend std::ostream& operator<<(std::ostream& out, const watch_event& e)
    {
        out << e.which << " zeroable " << e.zeroable << (e.reason == watch_reason::notified ? " (notified)" : " (periodic)");
        if (e.error)
            out << ": " << e.message;
        return out;
    }
};

/// How a watcher behaves.
struct watcher_options {
    /// How often every watched hstate is re-read in case a notification was lost: the kernel
    /// rate-limits and coalesces them, and whether it sends any cannot be detected from user
    /// space (ABI.md §3). Zero disables the re-read (then only notifications wake the watcher).
    std::chrono::nanoseconds safety_net_period = std::chrono::seconds(1);
};

/// Watches the `zeroable_hugepages` of any set of hstates with one epoll instance.
///
/// Real sysfs attributes are polled for `EPOLLPRI` and re-armed by reading them at offset 0; the
/// simulated kernel's watches are eventfds. A timer re-reads every hstate each
/// safety_net_period, and an eventfd lets stop() wake a waiting thread at once. Nothing else
/// wakes it: an idle machine costs one wake-up per safety-net period.
///
/// Use it from your event loop (poll fd() for `POLLIN`, then call wait() with a zero timeout),
/// with a timed wait(), or with run() and a callback.
///
/// @par Thread safety
/// wait() and run() must be called by one thread at a time; stop() may be called from any
/// thread, also while another waits.
class watcher {
public:
    /// Watches @p hstates of @p m.
    /// @throws hugezero::zeroing_unsupported if one lacks `zeroable_hugepages`.
    /// @throws std::invalid_argument for an unknown hstate; std::system_error naming the file
    /// when an attribute cannot be opened or read.
    watcher(const machine& m, const std::vector<hstate>& hstates, watcher_options options = {})
        : machine_(m), options_(options)
    {
        epoll_.reset(::epoll_create1(EPOLL_CLOEXEC));
        if (!epoll_)
            throw detail::errno_error("epoll_create1 for a watcher");
        stop_event_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
        if (!stop_event_)
            throw detail::errno_error("eventfd for a watcher");
        add(stop_event_.get(), EPOLLIN, stop_key);
        if (options_.safety_net_period > std::chrono::nanoseconds::zero()) {
            timer_.reset(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
            if (!timer_)
                throw detail::errno_error("timerfd_create for a watcher");
            const auto period = options_.safety_net_period;
            itimerspec spec{};
            spec.it_interval.tv_sec = static_cast<time_t>(std::chrono::duration_cast<std::chrono::seconds>(period).count());
            spec.it_interval.tv_nsec = static_cast<long>((period % std::chrono::seconds(1)).count());
            spec.it_value = spec.it_interval;
            if (::timerfd_settime(timer_.get(), 0, &spec, nullptr) != 0)
                throw detail::errno_error("arm the safety-net timer of a watcher");
            add(timer_.get(), EPOLLIN, timer_key);
        }
        for (const hstate& h : hstates) {
            entry e{h, machine_.zeroable_path(h), nullptr, 0, false};
            e.watch = machine_.backend().open_watch(e.path);
            e.last = detail::counter_from(machine_.backend(), e.path, e.watch->rearm());
            // A regular file (a golden tree on disk) cannot be epolled (EPERM): it is re-read by
            // the safety net only.
            epoll_event registration = make_event(e.watch->events(), entries_.size());
            e.pollable = ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, e.watch->fd(), &registration) == 0;
            if (!e.pollable && errno != EPERM)
                throw detail::errno_error("epoll_ctl for " + machine_.backend().display_path(e.path));
            entries_.push_back(std::move(e));
        }
    }

    watcher(const watcher&) = delete;
    watcher& operator=(const watcher&) = delete;

    /// The epoll descriptor: readable when wait() has something to report (or was stopped).
    /// Owned by the watcher.
    [[nodiscard]] int fd() const noexcept { return epoll_.get(); }

    /// The last value seen of each watched hstate, in the order given to the constructor.
    [[nodiscard]] std::vector<watch_event> current() const
    {
        std::vector<watch_event> out;
        for (const auto& e : entries_)
            out.push_back({e.which, e.last, watch_reason::periodic, {}, {}});
        return out;
    }

    /// Waits up to @p timeout (0: just check; negative: forever) for changes and returns them
    /// (empty on timeout or after stop()). Each notified hstate is re-read (which re-arms its
    /// notification); a safety-net tick re-reads all and reports those that changed. An
    /// attribute that cannot be re-read is reported as an event with `error` set, at each tick.
    ///
    /// An attribute that fails (for instance its node went offline: the kernel then fails its
    /// open file for good, and polls it as changed forever) stops being polled, and is watched
    /// by the safety net only. The first tick that reads it again reports it (even unchanged)
    /// and opens a new watch on it, so its notifications come back with it.
    /// @throws std::system_error only if epoll itself fails.
    std::vector<watch_event> wait(std::chrono::nanoseconds timeout)
    {
        std::vector<watch_event> events;
        if (stopped())
            return events;
        epoll_event ready[16];
        const auto rounded_up = std::chrono::ceil<std::chrono::milliseconds>(timeout);
        const int timeout_ms = timeout < std::chrono::nanoseconds::zero()
                                   ? -1
                                   : static_cast<int>(std::min<std::int64_t>(rounded_up.count(), 24 * 3600 * 1000));
        int n = ::epoll_wait(epoll_.get(), ready, 16, timeout_ms);
        if (n < 0) {
            if (errno == EINTR)
                return events;
            throw detail::errno_error("epoll_wait in a watcher");
        }
        if (n > 0)
            wakeups_.fetch_add(1, std::memory_order_relaxed);
        bool tick = false;
        for (int i = 0; i < n; ++i) {
            const std::uint64_t key = ready[i].data.u64;
            if (key == stop_key)
                return {};
            if (key == timer_key) {
                std::uint64_t expirations = 0;
                (void)!::read(timer_.get(), &expirations, sizeof expirations);
                tick = true;
                continue;
            }
            entry& e = entries_.at(key);
            reread(e, watch_reason::notified, events);
        }
        if (tick)
            for (entry& e : entries_)
                reread(e, watch_reason::periodic, events);
        return events;
    }

    /// Calls @p on_event for every change until @p stop is requested or stop() is called.
    /// Exceptions from reading an attribute or from @p on_event end the loop and propagate.
    void run(std::stop_token stop, const std::function<void(const watch_event&)>& on_event)
    {
        const std::stop_callback wake(stop, [this]() noexcept { this->stop(); });
        while (!stopped())
            for (const watch_event& e : wait(std::chrono::nanoseconds(-1)))
                on_event(e);
    }

    /// Wakes a waiting thread at once; wait() returns empty from now on. Any thread; never blocks.
    void stop() noexcept
    {
        stopped_.store(true);
        const std::uint64_t one = 1;
        (void)!::write(stop_event_.get(), &one, sizeof one);
    }
    /// Whether stop() was called.
    [[nodiscard]] bool stopped() const noexcept { return stopped_.load(); }

    /// How many times a wait was woken by something (a notification, the safety net, stop()),
    /// rather than by its own timeout: what an idle machine should keep at zero.
    [[nodiscard]] std::uint64_t wakeups() const noexcept { return wakeups_.load(std::memory_order_relaxed); }

private:
    static constexpr std::uint64_t stop_key = ~std::uint64_t{0};
    static constexpr std::uint64_t timer_key = ~std::uint64_t{0} - 1;

    struct entry {
        hstate which;
        std::string path;
        std::unique_ptr<attribute_watch> watch;
        std::uint64_t last;
        bool pollable;
        bool failed = false; // the last read failed: not polled until read again (see wait())
    };

    static epoll_event make_event(std::uint32_t events, std::uint64_t key)
    {
        epoll_event e{};
        e.events = events;
        e.data.u64 = key;
        return e;
    }

    // Re-reads @p e (through its watch when notified, which re-arms it) and reports a change,
    // any notification, or a failure.
    void reread(entry& e, watch_reason reason, std::vector<watch_event>& events)
    {
        watch_event event{e.which, e.last, reason, {}, {}};
        try {
            const std::uint64_t now = reason == watch_reason::notified && !e.failed
                                          ? detail::counter_from(machine_.backend(), e.path, e.watch->rearm())
                                          : detail::read_counter(machine_.backend(), e.path);
            if (e.failed)
                rewatch(e); // readable again: a new watch, so that notifications come back too
            else if (reason == watch_reason::periodic && now == e.last)
                return;
            e.last = event.zeroable = now;
        } catch (const std::system_error& error) {
            event.error = error.code();
            event.message = error.what();
        } catch (const parse_error& error) {
            event.error = std::make_error_code(std::errc::bad_message);
            event.message = error.what();
        }
        if (event.error)
            unwatch(e);
        events.push_back(std::move(event));
    }

    // Stops polling @p e after a failure: an open file of a removed sysfs attribute stays
    // "changed" forever, which would make a level-triggered epoll spin.
    void unwatch(entry& e) noexcept
    {
        e.failed = true;
        if (e.pollable)
            (void)::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, e.watch->fd(), nullptr);
        e.pollable = false;
    }

    // Replaces @p e's watch by a new one on the attribute as it is now, polled again.
    // @throws std::system_error as backend::open_watch; @p e then stays failed.
    void rewatch(entry& e)
    {
        auto fresh = machine_.backend().open_watch(e.path);
        const auto key = static_cast<std::uint64_t>(&e - entries_.data());
        epoll_event registration = make_event(fresh->events(), key);
        e.pollable = ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fresh->fd(), &registration) == 0;
        e.watch = std::move(fresh);
        e.failed = false;
    }

    void add(int fd, std::uint32_t events, std::uint64_t key)
    {
        epoll_event e = make_event(events, key);
        if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &e) != 0)
            throw detail::errno_error("epoll_ctl for a watcher");
    }

    machine machine_;
    watcher_options options_;
    unique_fd epoll_;
    unique_fd stop_event_;
    unique_fd timer_;
    std::vector<entry> entries_;
    std::atomic<bool> stopped_{false};
    std::atomic<std::uint64_t> wakeups_{0};
};

} // namespace hugezero

#endif
