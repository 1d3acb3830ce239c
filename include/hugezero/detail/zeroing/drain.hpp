/// @file
/// @brief Internals of prezero_service: what a worker does with one hstate when woken, and
/// how a write is counted.
#ifndef HUGEZERO_DETAIL_ZEROING_DRAIN_HPP
#define HUGEZERO_DETAIL_ZEROING_DRAIN_HPP

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <optional>
#include <stop_token>

#include <hugezero/detail/call_gate.hpp>
#include <hugezero/detail/deadline.hpp>
#include <hugezero/detail/zeroing/session.hpp>
#include <hugezero/policy.hpp>
#include <hugezero/statistics.hpp>

namespace hugezero::detail {

/// Moves @p retry earlier, to @p t, unless it is already no later.
inline void retry_no_later_than(std::optional<std::chrono::steady_clock::time_point>& retry, std::chrono::steady_clock::time_point t)
{
    if (!retry || t < *retry)
        retry = t;
}

// Counts @p step, a write made, in @p c.
inline void count_write(statistics_counters& c, const zeroing_session::step& step)
{
    constexpr auto relaxed = std::memory_order_relaxed;
    c.requests.fetch_add(1, relaxed);
    c.pages_zeroed.fetch_add(step.credited, relaxed);
    c.time_zeroing_ns.fetch_add(step.duration.count(), relaxed);
    if (step.signalled || step.error == EINTR)
        c.requests_interrupted.fetch_add(1, relaxed);
    if (step.error == EINVAL && !step.signalled)
        c.requests_rejected.fetch_add(1, relaxed);
}

// Zeroes what @p policy allows of one hstate (@p s's) until nothing is left to claim, counting
// in @p c, unless @p stop or @p paused(). Each write and its accounting pass @p gate, which a
// pause closes and waits for. Sets @p retry no later than when to look again (the policy's
// time, or @p error_backoff after an error).
template <class Paused>
void drain(zeroing_session& s, call_gate& gate, const std::stop_token& stop, Paused paused, zeroing_policy& policy,
           statistics_counters& c, std::chrono::nanoseconds error_backoff, std::optional<std::chrono::steady_clock::time_point>& retry)
{
    using clock = std::chrono::steady_clock;
    const hstate& h = s.which();
    constexpr unsigned max_consecutive_rejections = 64;
    unsigned rejections = 0;
    while (!stop.stop_requested() && !paused()) {
        const std::uint64_t zeroable = s.read_zeroable();
        c.zeroable.store(zeroable, std::memory_order_relaxed);
        if (zeroable == 0)
            return;
        const policy_decision decision = policy.allow(h, zeroable, clock::now());
        if (decision.pages == 0) {
            if (decision.retry_at)
                retry_no_later_than(retry, *decision.retry_at);
            return;
        }
        if (!gate.enter()) { // paused
            policy.unused(h, decision.pages);
            return;
        }
        const auto step = s.zero_some(zeroable, decision.pages);
        const bool wrote = step.what == zeroing_session::step::outcome::wrote;
        if (wrote)
            count_write(c, step);
        gate.leave();
        const std::uint64_t used = wrote ? std::min(decision.pages, step.claimed) : 0;
        if (used < decision.pages)
            policy.unused(h, decision.pages - used);
        if (!wrote)
            return;
        if (step.error == EINVAL && !step.signalled) {
            // As in run_zeroing(): a kernel that keeps rejecting requests is an error, not a
            // race with another writer; back off instead of spinning.
            if (++rejections < max_consecutive_rejections)
                continue;
            c.record_error(EINVAL);
            retry_no_later_than(retry, deadline_after(error_backoff));
            return;
        }
        rejections = 0;
        if (step.error != 0 && step.error != EINTR && step.error != EINVAL) {
            c.record_error(step.error);
            retry_no_later_than(retry, deadline_after(error_backoff));
            return;
        }
    }
}

} // namespace hugezero::detail

#endif
