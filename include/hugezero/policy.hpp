/// @file
/// @brief Zeroing policies: when, and how much, the pre-zeroing service may zero.
#ifndef HUGEZERO_POLICY_HPP
#define HUGEZERO_POLICY_HPP

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <hugezero/detail/lock_rank.hpp>
#include <hugezero/hstate.hpp>
#include <hugezero/thread_settings.hpp>

namespace hugezero {

class prezero_service;

/// What a policy allows a worker to do now.
struct policy_decision {
    /// Pages the worker may zero now (it may zero fewer: a batch, or what is left unclaimed).
    std::uint64_t pages = 0;
    /// When pages is 0: when to ask again even if nothing changes. Empty means "when pages
    /// become zeroable again" (the watcher wakes the worker).
    std::optional<std::chrono::steady_clock::time_point> retry_at;
};

/// Decides when and how much the pre-zeroing service zeroes. Implement it for a custom policy,
/// for example a scheduler that zeroes only ahead of a planned VM start.
///
/// A policy that allows nothing (0 pages) is asked again at its `retry_at`, when pages become
/// zeroable again, or when it calls allowance_changed(): a policy whose allowance rises for a
/// reason of its own (a scheduler's go-ahead) must call it, or the service will not ask.
///
/// @par Thread safety
/// Every worker of the service calls it, concurrently: implementations must be thread-safe.
class zeroing_policy {
public:
    /// The clock policies are given.
    using clock = std::chrono::steady_clock;

    zeroing_policy() = default;
    zeroing_policy(const zeroing_policy&) = delete;
    zeroing_policy& operator=(const zeroing_policy&) = delete;
    virtual ~zeroing_policy() = default;

    /// Tells every service using this policy that it may allow more now: their workers ask
    /// allow() again at once. Any thread, also from inside allow(). (The services are woken
    /// under the policy's own mutex, so a service that stops meanwhile waits for it.)
    void allowance_changed()
    {
        const std::lock_guard lock(listeners_mutex_);
        for (const auto& [id, wake] : listeners_)
            wake();
    }

    /// A worker of @p h's node found @p zeroable pages at @p now: how many may it zero? The
    /// pages allowed are considered spent; unused ones come back through unused().
    virtual policy_decision allow(const hstate& h, std::uint64_t zeroable, clock::time_point now) = 0;

    /// @p pages of those allowed for @p h were not zeroed after all (another worker had them,
    /// or the batch was smaller). Default: nothing.
    virtual void unused(const hstate& h, std::uint64_t pages) { (void)h, (void)pages; }

    /// Lets the policy adjust the workers' thread settings before they start (the idle policy
    /// sets `SCHED_IDLE`). Default: nothing.
    virtual void adjust(thread_settings& settings) const { (void)settings; }

private:
    friend class prezero_service;

    // A running service listens to allowance_changed() until it stops.
    std::uint64_t listen(std::function<void()> wake)
    {
        const std::lock_guard lock(listeners_mutex_);
        listeners_.emplace(++last_listener_, std::move(wake));
        return last_listener_;
    }
    void stop_listening(std::uint64_t id)
    {
        const std::lock_guard lock(listeners_mutex_);
        listeners_.erase(id);
    }

    detail::ranked_mutex<> listeners_mutex_{detail::lock_rank::policy_listeners, "a policy's listeners"};
    std::map<std::uint64_t, std::function<void()>> listeners_;
    std::uint64_t last_listener_ = 0;
};

/// Zero everything zeroable as soon as it appears: the seed's `echo max` loop.
class zero_all_policy final : public zeroing_policy {
public:
    policy_decision allow(const hstate&, std::uint64_t zeroable, clock::time_point) override { return {zeroable, {}}; }
};

/// Zero everything, but only with CPU time nobody else wants: workers run under `SCHED_IDLE`.
class idle_policy final : public zeroing_policy {
public:
    policy_decision allow(const hstate&, std::uint64_t zeroable, clock::time_point) override { return {zeroable, {}}; }
    void adjust(thread_settings& settings) const override { settings.idle = true; }
};

/// At most a given rate per node, in pages per second or bytes per second: a token bucket per
/// node that starts empty and holds at most max(one page, 50 ms of budget), so the long-run
/// rate is the budget and bursts stay small.
class budget_policy final : public zeroing_policy {
public:
    /// What the rate counts.
    enum class unit {
        pages, ///< Pages per second, whatever their size.
        bytes, ///< Bytes per second.
    };

    /// At most @p rate units per second per node.
    /// @throws std::invalid_argument unless @p rate is positive and finite.
    budget_policy(double rate, unit counted) : rate_(rate), unit_(counted)
    {
        if (!(rate > 0) || !std::isfinite(rate))
            throw std::invalid_argument("hugezero: a zeroing budget must be a positive rate, got " + std::to_string(rate));
    }

    policy_decision allow(const hstate& h, std::uint64_t zeroable, clock::time_point now) override
    {
        const double cost = cost_of(h);
        const std::lock_guard lock(mutex_);
        bucket& b = refill(h, now);
        const auto affordable = static_cast<std::uint64_t>(b.tokens / cost);
        const std::uint64_t pages = std::min(affordable, zeroable);
        if (pages == 0) {
            if (zeroable == 0)
                return {};
            // A tiny rate makes a huge wait: saturate rather than overflow the time point.
            const double wait_ns = (cost - b.tokens) / rate_ * 1e9 + 1000.0;
            const double room_ns = static_cast<double>((clock::time_point::max() - now).count());
            if (!(wait_ns < room_ns))
                return {0, clock::time_point::max()};
            return {0, now + std::chrono::nanoseconds(static_cast<std::int64_t>(wait_ns))};
        }
        b.tokens -= static_cast<double>(pages) * cost;
        return {pages, {}};
    }

    void unused(const hstate& h, std::uint64_t pages) override
    {
        const double cost = cost_of(h);
        const std::lock_guard lock(mutex_);
        bucket& b = buckets_[h.node];
        b.tokens = std::min(capacity(b), b.tokens + static_cast<double>(pages) * cost);
    }

private:
    struct bucket {
        double tokens = 0;
        double largest_cost = 0; // the bucket must hold at least one of the node's largest pages
        std::optional<clock::time_point> last;
    };

    double cost_of(const hstate& h) const
    {
        return unit_ == unit::pages ? 1.0 : static_cast<double>(h.size.bytes());
    }
    double capacity(const bucket& b) const { return std::max(b.largest_cost, rate_ * 0.05); }

    bucket& refill(const hstate& h, clock::time_point now)
    {
        bucket& b = buckets_[h.node];
        b.largest_cost = std::max(b.largest_cost, cost_of(h));
        if (b.last) {
            const double seconds = std::chrono::duration<double>(now - *b.last).count();
            b.tokens = std::min(capacity(b), b.tokens + std::max(0.0, seconds) * rate_);
        }
        b.last = now;
        return b;
    }

    double rate_;
    unit unit_;
    detail::ranked_mutex<> mutex_{detail::lock_rank::leaf, "bytes_per_second's buckets"};
    std::map<node_id, bucket> buckets_;
};

/// The built-in policies.
namespace policies {
/// Zero everything as soon as it is zeroable.
inline std::shared_ptr<zeroing_policy> all() { return std::make_shared<zero_all_policy>(); }
/// Zero everything, with `SCHED_IDLE` workers.
inline std::shared_ptr<zeroing_policy> idle() { return std::make_shared<idle_policy>(); }
/// At most @p rate pages per second per node.
inline std::shared_ptr<zeroing_policy> pages_per_second(double rate)
{
    return std::make_shared<budget_policy>(rate, budget_policy::unit::pages);
}
/// At most @p rate bytes per second per node.
inline std::shared_ptr<zeroing_policy> bytes_per_second(double rate)
{
    return std::make_shared<budget_policy>(rate, budget_policy::unit::bytes);
}
} // namespace policies

} // namespace hugezero

#endif
