/// @file
/// @brief The per-hstate ledger that keeps hugezero's own writers from claiming the same pages.
#ifndef HUGEZERO_DETAIL_LEDGER_HPP
#define HUGEZERO_DETAIL_LEDGER_HPP

#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>

#include <hugezero/detail/lock_rank.hpp>

namespace hugezero::detail {

/// Coordinates every writer of one hstate within one hugezero::machine.
///
/// Why: the kernel lets concurrent writers share the work page by page, so a write of `x` that
/// races another write may end with fewer than `x` pages done and still succeed. If hugezero's
/// writers never ask together for more than the zeroable count, a write that succeeds without
/// having been signalled did exactly `x` pages: counts stay exact. So each write first claims
/// its pages here, net of pages claimed by writes still in flight. (Consumers allocating dirty
/// pages during a write can still shorten it unseen: see zeroing_result.)
///
/// A reading of the counter can be stale by the time it is used to claim: pages of claims that
/// settled in between were zeroed, maybe after the reading, and are no longer outstanding. So a
/// writer takes a ticket() before reading, and claim() also deducts every page settled since
/// that ticket. Staleness can only make a claim smaller, never too large.
///
/// Writes whose outcome is unknown (interrupted, or signalled and then successful) are settled
/// from the counter, but only when no other claim is in flight: then the drop of the counter
/// since the first claim of that busy period, minus the pages known exactly, is what the
/// uncertain writes did together (exact unless consumers allocated or released pages of the
/// hstate in the meantime). That amount is credited to the writer that ends the busy period.
/// The counter is read without the ledger's mutex (a sysfs read can be slow); new claims wait
/// for the reading instead, since a write starting meanwhile would move the counter under it.
class hstate_ledger {
public:
    /// What to pass to claim() with a reading of the counter: take it just before reading.
    [[nodiscard]] std::uint64_t ticket()
    {
        const std::lock_guard lock(mutex_);
        return settled_;
    }

    /// Claims up to @p want of the @p zeroable pages read after taking @p ticket; 0 means every
    /// zeroable page is already claimed by writes in flight (or may have been since the reading).
    std::uint64_t claim(std::uint64_t zeroable, std::uint64_t ticket, std::uint64_t want)
    {
        std::unique_lock lock(mutex_);
        settled_cv_.wait(lock, [this] { return !settling_; });
        const std::uint64_t gone = outstanding_ + (settled_ - ticket);
        const std::uint64_t unclaimed = zeroable > gone ? zeroable - gone : 0;
        const std::uint64_t pages = std::min(want, unclaimed);
        if (pages == 0)
            return 0;
        if (in_flight_ == 0) {
            baseline_ = zeroable;
            exact_since_baseline_ = 0;
            uncertain_ = false;
        }
        ++in_flight_;
        outstanding_ += pages;
        return pages;
    }

    /// Ends a claim of @p claimed pages whose write did exactly @p done pages, or an unknown
    /// number (std::nullopt). @p read_zeroable reads the counter; it is called only to settle
    /// uncertain writes. Returns the pages to credit to the caller.
    template <class ReadZeroable>
    std::uint64_t settle(std::uint64_t claimed, std::optional<std::uint64_t> done, ReadZeroable&& read_zeroable)
    {
        std::unique_lock lock(mutex_);
        outstanding_ -= claimed;
        settled_ += claimed; // at most this many pages left the counter since the claim
        --in_flight_;
        std::uint64_t credited = 0;
        if (done) {
            exact_since_baseline_ += *done;
            credited = *done;
        } else {
            uncertain_ = true;
        }
        if (in_flight_ == 0 && uncertain_) {
            uncertain_ = false;
            settling_ = true;
            const std::uint64_t baseline = baseline_;
            const std::uint64_t known_exact = exact_since_baseline_;
            lock.unlock();
            std::uint64_t now = baseline;
            try {
                now = read_zeroable();
            } catch (...) {
                // The caller's next read reports the error; credit nothing rather than guess.
            }
            lock.lock();
            settling_ = false;
            settled_cv_.notify_all();
            const std::uint64_t known = now + known_exact;
            credited += baseline > known ? baseline - known : 0;
        }
        return credited;
    }

private:
    ranked_mutex<> mutex_{lock_rank::ledger, "an hstate's ledger"};
    std::condition_variable_any settled_cv_; // a settling reading ended
    bool settling_ = false;              // a settle() is reading the counter: claims wait
    std::uint64_t outstanding_ = 0;
    std::uint64_t settled_ = 0; // pages of every settled claim: tickets count from it
    unsigned in_flight_ = 0;
    std::uint64_t baseline_ = 0;
    std::uint64_t exact_since_baseline_ = 0;
    bool uncertain_ = false;
};

} // namespace hugezero::detail

#endif
