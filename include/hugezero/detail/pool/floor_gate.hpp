/// @file
/// @brief Internals of hugezero::pool: the floor gate, which never lets the refill take a node
/// below the free pages it must leave for everyone else.
#ifndef HUGEZERO_DETAIL_FLOOR_GATE_HPP
#define HUGEZERO_DETAIL_FLOOR_GATE_HPP

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <stop_token>
#include <system_error>
#include <utility>

#include <hugezero/detail/lock_rank.hpp>
#include <hugezero/detail/pool/reservoir_counters.hpp>

namespace hugezero::detail {

/// One reservoir's floor. A refill step asks it for pages before allocating: it reads how
/// many pages the node has free (machine::available(): three attributes) and grants what
/// stays above the floor. Steps in progress may or may not show in that count yet, so each
/// grant is counted until its step ends: concurrent workers can never overshoot the floor
/// together. With a floor of 0 the kernel's `ENOSPC` is the floor: no reading, no
/// bookkeeping, no lock.
///
/// Lock order: the pool's lock, then a floor gate's (only wake() takes both).
class floor_gate {
public:
    /// Reads the pages free on the node now. @throws what machine::available() throws.
    using reader = std::function<std::uint64_t()>;

    /// Pages a step may allocate, counted until the claim is destroyed; or why none.
    class claim {
    public:
        claim(const claim&) = delete;
        claim& operator=(const claim&) = delete;
        claim(claim&& other) noexcept
            : gate_(std::exchange(other.gate_, nullptr)), pages_(other.pages_), hold_(other.hold_), error_(other.error_)
        {
        }
        ~claim() { shrink_to(0); }

        /// Pages granted (0 when held).
        [[nodiscard]] std::uint64_t pages() const noexcept { return pages_; }
        /// Why nothing was granted (refill_hold::none when something was, or when stopped).
        [[nodiscard]] refill_hold hold() const noexcept { return hold_; }
        /// The errno when hold() is refill_hold::error.
        [[nodiscard]] int error() const noexcept { return error_; }
        /// Gives back all but @p pages of the grant (the step was smaller, or it ended).
        void shrink_to(std::uint64_t pages) noexcept
        {
            if (gate_ != nullptr && pages < pages_)
                gate_->release(pages_ - pages);
            pages_ = std::min(pages, pages_);
        }

    private:
        friend class floor_gate;
        claim(floor_gate* gate, std::uint64_t pages, refill_hold hold, int error)
            : gate_(gate), pages_(pages), hold_(hold), error_(error)
        {
        }
        floor_gate* gate_; // set when the pages are counted in the gate
        std::uint64_t pages_;
        refill_hold hold_;
        int error_;
    };

    /// A gate leaving @p floor_pages free.
    explicit floor_gate(std::uint64_t floor_pages) : floor_(floor_pages) {}

    /// Changes the floor (pool::set_floor()); waiting workers look again.
    void set_floor(std::uint64_t floor_pages) noexcept
    {
        floor_.store(floor_pages);
        wake();
    }

    /// Grants up to @p want pages. If the claims in progress fill the room above the floor,
    /// waits for one to end, unless @p give_up() (checked whenever woken: see wake()) or
    /// @p stop; then grants nothing, without a hold.
    claim acquire(std::uint64_t want, const reader& available, const std::stop_token& stop,
                  const std::function<bool()>& give_up)
    {
        if (floor_.load() == 0) // the kernel's ENOSPC ends the step where the free pages end
            return {nullptr, want, refill_hold::none, 0};
        std::unique_lock lock(mutex_);
        for (;;) {
            const auto [free, error] = read(available);
            if (error != 0)
                return {nullptr, 0, refill_hold::error, error};
            if (free == 0)
                return {nullptr, 0, refill_hold::no_pages, 0};
            const std::uint64_t floor = floor_.load();
            if (free <= floor)
                return {nullptr, 0, refill_hold::floor, 0};
            const std::uint64_t room = free - floor;
            if (room > in_flight_) {
                const std::uint64_t granted = std::min(want, room - in_flight_);
                in_flight_ += granted;
                return {this, granted, refill_hold::none, 0};
            }
            const std::uint64_t seen = settled_;
            settled_changed_.wait(lock, stop, [&] { return settled_ != seen || give_up(); });
            if (stop.stop_requested() || give_up())
                return {nullptr, 0, refill_hold::none, 0};
        }
    }

    /// Wakes workers waiting for other claims, so that they look at give_up() again. Taking the
    /// mutex orders whatever the caller changed before with the waiters' checks.
    void wake() noexcept
    {
        { const std::lock_guard lock(mutex_); }
        settled_changed_.notify_all();
    }

private:
    static std::pair<std::uint64_t, int> read(const reader& available) noexcept
    {
        try {
            return {available(), 0};
        } catch (const std::system_error& e) {
            return {0, e.code().value()};
        } catch (...) {
            return {0, EIO}; // a malformed counter
        }
    }

    void release(std::uint64_t pages) noexcept
    {
        {
            const std::lock_guard lock(mutex_);
            in_flight_ -= pages;
            ++settled_;
        }
        settled_changed_.notify_all();
    }

    std::atomic<std::uint64_t> floor_;
    ranked_mutex<> mutex_{lock_rank::floor_gate, "a floor_gate"};
    std::condition_variable_any settled_changed_;
    std::uint64_t in_flight_ = 0; // pages granted to steps in progress
    std::uint64_t settled_ = 0;   // bumped whenever a grant ends
};

} // namespace hugezero::detail

#endif
