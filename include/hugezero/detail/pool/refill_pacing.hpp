/// @file
/// @brief Internals of hugezero::pool: the refill's rate limit and the quiet period after a
/// lease, the two things that hold the refill back in time.
#ifndef HUGEZERO_DETAIL_REFILL_PACING_HPP
#define HUGEZERO_DETAIL_REFILL_PACING_HPP

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>

#include <hugezero/detail/lock_rank.hpp>

namespace hugezero::detail {

using pool_clock = std::chrono::steady_clock;

/// The pool-wide refill rate: steps take turns, each turn as long as its bytes take at the rate.
class rate_limiter {
public:
    /// @p bytes_per_second, 0 for no limit.
    explicit rate_limiter(std::uint64_t bytes_per_second) : rate_(bytes_per_second) {}

    /// When a step of @p bytes asked for at @p now may start (now, without a limit).
    pool_clock::time_point turn(std::uint64_t bytes, pool_clock::time_point now)
    {
        const std::uint64_t rate = rate_.load(std::memory_order_relaxed);
        if (rate == 0)
            return now;
        const std::lock_guard lock(mutex_);
        const pool_clock::time_point start = std::max(now, next_turn_);
        const std::chrono::duration<double> length(static_cast<double>(bytes) / static_cast<double>(rate));
        next_turn_ = start + std::chrono::duration_cast<pool_clock::duration>(length);
        return start;
    }

    /// Changes the rate (0: no limit). Turns given out before are void: their holders see the
    /// generation change and ask again.
    void set_rate(std::uint64_t bytes_per_second) noexcept
    {
        const std::lock_guard lock(mutex_);
        rate_.store(bytes_per_second);
        next_turn_ = {};
        generation_.fetch_add(1);
    }
    /// Counts set_rate() calls.
    [[nodiscard]] std::uint64_t generation() const noexcept { return generation_.load(); }
    /// The rate, 0 for no limit.
    [[nodiscard]] std::uint64_t rate() const noexcept { return rate_.load(); }

private:
    std::atomic<std::uint64_t> rate_;
    std::atomic<std::uint64_t> generation_{0};
    ranked_mutex<> mutex_{lock_rank::leaf, "the refill's rate limiter"};
    pool_clock::time_point next_turn_{};
};

/// After a lease the pool refills nothing until a deadline: one atomic, read by workers and by
/// lock-free statistics alike.
class quiet_period {
public:
    /// Keeps the pool quiet until at least @p until.
    void extend(pool_clock::time_point until) noexcept
    {
        const std::int64_t wanted = until.time_since_epoch().count();
        std::int64_t current = until_.load();
        while (current < wanted && !until_.compare_exchange_weak(current, wanted)) {
        }
    }
    /// The deadline (in the past when not quiet).
    [[nodiscard]] pool_clock::time_point until() const noexcept
    {
        return pool_clock::time_point(pool_clock::duration(until_.load()));
    }
    /// Whether the pool is quiet at @p now.
    [[nodiscard]] bool active(pool_clock::time_point now) const noexcept { return now < until(); }

private:
    std::atomic<std::int64_t> until_{0};
};

} // namespace hugezero::detail

#endif
