/// @file
/// @brief Internals of zeroing.hpp: one thread's session of writes to `zeroable_hugepages`,
/// each claimed on the hstate's ledger, and the loop that makes a request of them.
#ifndef HUGEZERO_DETAIL_ZEROING_SESSION_HPP
#define HUGEZERO_DETAIL_ZEROING_SESSION_HPP

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <limits>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <system_error>
#include <utility>

#include <hugezero/backend.hpp>
#include <hugezero/detail/zeroing/interrupter.hpp>
#include <hugezero/detail/zeroing/ledger.hpp>
#include <hugezero/error.hpp>
#include <hugezero/hstate.hpp>
#include <hugezero/machine.hpp>
#include <hugezero/zeroing_options.hpp>
#include <hugezero/zeroing_result.hpp>

namespace hugezero::detail {

/// Progress counters updated by the thread zeroing, read by anyone.
struct progress_counters {
    std::atomic<std::uint64_t> pages_zeroed{0};
    std::atomic<std::uint64_t> writes{0};
};

/// Everything one thread needs to zero pages of one hstate: its own writer fd (kernfs
/// serialises operations on an open file), the hstate's ledger, and, in signal mode, the
/// interrupter bound to this thread. Create and use it in one thread; interrupt() and
/// resume() may be called from any thread.
class zeroing_session {
public:
    /// What one claimed write did.
    struct step {
        /// What happened.
        enum class outcome {
            wrote,            ///< A write was made (see `error` for its errno).
            nothing_to_claim, ///< Every zeroable page is zeroed or claimed by another writer.
            stopped,          ///< An interruption was requested before writing.
        } what = outcome::wrote;
        std::uint64_t claimed = 0;              ///< Pages asked for.
        std::uint64_t credited = 0;             ///< Pages credited to the caller (see hstate_ledger).
        bool exact = true;                      ///< False if the write's own outcome is unknown.
        bool signalled = false;                 ///< Whether the cancellation signal hit the write.
        int error = 0;                          ///< The write's errno, or 0.
        std::chrono::nanoseconds duration{0};   ///< Time in write().
    };

    /// @throws hugezero::zeroing_unsupported, std::invalid_argument, std::system_error (the
    /// attribute cannot be opened; the cancellation signal is taken by the application).
    zeroing_session(machine m, const hstate& h, const zeroing_options& options)
        : machine_(std::move(m)), which_(h), path_(machine_.zeroable_path(h)),
          ledger_(machine_internals::ledger(machine_, h)),
          batch_(options.batch_pages(h.size)), writer_(machine_.backend().open_writer(path_))
    {
        if (options.cancel == cancellation::signal)
            interrupter_ = thread_interrupter(options.cancel_signal);
    }

    /// Stops the current write (in signal mode) and refuses further writes until resume().
    void interrupt() noexcept
    {
        interrupted_.store(true);
        if (interrupter_)
            interrupter_->request();
    }
    /// Allows writes again.
    void resume() noexcept
    {
        interrupted_.store(false);
        if (interrupter_)
            interrupter_->reset();
    }
    /// Whether interrupt() was called and not undone.
    [[nodiscard]] bool interrupted() const noexcept { return interrupted_.load(); }

    /// The hstate.
    [[nodiscard]] const hstate& which() const noexcept { return which_; }
    /// The attribute's full path, for messages.
    [[nodiscard]] std::string display_path() const { return machine_.backend().display_path(path_); }

    /// Reads `zeroable_hugepages`. @throws std::system_error, hugezero::parse_error.
    [[nodiscard]] std::uint64_t read_zeroable()
    {
        ticket_ = ledger_.ticket(); // the claim made with this reading allows for staleness
        return read_counter(machine_.backend(), path_);
    }

    /// Claims up to @p want pages (at most one batch) of the @p zeroable pages, which must be
    /// this session's latest read_zeroable(), and writes one request for them.
    step zero_some(std::uint64_t zeroable, std::uint64_t want)
    {
        step result;
        result.claimed = ledger_.claim(zeroable, ticket_, std::min(want, batch_));
        if (result.claimed == 0) {
            result.what = step::outcome::nothing_to_claim;
            return result;
        }
        if (interrupted_.load() || (interrupter_ && !interrupter_->begin_call())) {
            (void)ledger_.settle(result.claimed, std::uint64_t{0}, [] { return std::uint64_t{0}; });
            result.what = step::outcome::stopped;
            return result;
        }
        if (writer_stale_)
            reopen_writer();
        const std::string request = std::to_string(result.claimed);
        const auto start = std::chrono::steady_clock::now();
        const write_outcome outcome = writer_->write(request);
        // ENODEV: the attribute was removed while open (its node went offline). The kernel fails
        // that open file for good, even once the node is back: the next write opens it anew.
        writer_stale_ = outcome.error == ENODEV;
        result.duration = std::chrono::steady_clock::now() - start;
        result.signalled = interrupter_ && interrupter_->end_call();
        result.error = outcome.error;
        // Only an unsignalled, complete success proves exactly `claimed` pages were zeroed;
        // an unsignalled EINVAL proves none were (the range check precedes any work).
        std::optional<std::uint64_t> done;
        if (!result.signalled && outcome.succeeded() && outcome.bytes_written == request.size())
            done = result.claimed;
        else if (!result.signalled && outcome.error == EINVAL)
            done = 0;
        result.exact = done.has_value();
        result.credited = ledger_.settle(result.claimed, done, [this] { return read_counter(machine_.backend(), path_); });
        return result;
    }

private:
    // Replaces the writer by one on the attribute as it is now; if it cannot be opened (the node
    // is still offline), the old one stays and its write fails again with ENODEV.
    void reopen_writer() noexcept
    {
        try {
            writer_ = machine_.backend().open_writer(path_);
            writer_stale_ = false;
        } catch (const std::exception&) {
        }
    }

    machine machine_;
    hstate which_;
    std::string path_;
    hstate_ledger& ledger_;
    std::uint64_t batch_;
    std::unique_ptr<attribute_writer> writer_;
    bool writer_stale_ = false; // the last write failed with ENODEV
    std::uint64_t ticket_ = 0;  // the ledger's ticket taken with the latest reading
    std::shared_ptr<interrupter> interrupter_; // the thread's, shared with its other sessions
    std::atomic<bool> interrupted_{false};
};

/// Counts one write of a request in @p result (and @p progress). Returns the errno that ends the
/// request with its message, or 0 to go on; @p rejections counts EINVALs in a row.
inline std::pair<int, std::string> count_write(zeroing_result& result, const zeroing_session& session,
                                               const zeroing_session::step& step, unsigned& rejections,
                                               progress_counters* progress)
{
    // Consecutive EINVALs without progress mean the kernel rejects our requests, not a race.
    constexpr unsigned max_consecutive_rejections = 64;
    ++result.writes;
    result.time_in_writes += step.duration;
    result.pages_zeroed += step.credited;
    result.exact = result.exact && step.exact;
    if (progress != nullptr) {
        progress->writes.fetch_add(1, std::memory_order_relaxed);
        progress->pages_zeroed.fetch_add(step.credited, std::memory_order_relaxed);
    }
    if (step.signalled || step.error == EINTR)
        ++result.interrupted_writes;
    if (step.error == EINVAL && !step.signalled) {
        ++result.rejected_writes;
        if (++rejections == max_consecutive_rejections)
            return {EINVAL, "write " + session.display_path() + ": the kernel rejected " + std::to_string(rejections)
                                + " requests in a row"};
        return {0, {}};
    }
    rejections = 0;
    if (step.error != 0 && step.error != EINTR && step.error != EINVAL) // a signalled EINVAL says nothing
        return {step.error, "write " + std::to_string(step.claimed) + " to " + session.display_path() + ": "
                                + std::error_code(step.error, std::system_category()).message()};
    return {0, {}};
}

/// The loop behind every request: zero @p pages pages (all zeroable ones when empty) in the
/// calling thread until done, stopped or failed.
inline zeroing_result run_zeroing(zeroing_session& session, std::optional<std::uint64_t> pages, std::stop_token stop,
                                  progress_counters* progress = nullptr)
{
    zeroing_result result;
    result.which = session.which();
    result.pages_asked = pages;
    const auto start = std::chrono::steady_clock::now();
    const std::stop_callback on_stop(stop, [&session]() noexcept { session.interrupt(); });
    const auto fail = [&](int error, std::string message) {
        result.status = zeroing_status::failed;
        result.error = std::error_code(error, std::system_category());
        result.error_message = std::move(message);
    };
    try {
        std::uint64_t zeroable = result.zeroable_before = result.zeroable_after = session.read_zeroable();
        unsigned rejections = 0;
        for (;;) {
            if (session.interrupted()) {
                result.status = zeroing_status::cancelled;
                break;
            }
            const std::uint64_t want = pages ? *pages - std::min(*pages, result.pages_zeroed)
                                             : std::numeric_limits<std::uint64_t>::max();
            if (want == 0)
                break;
            const auto step = session.zero_some(zeroable, want);
            if (step.what == zeroing_session::step::outcome::nothing_to_claim)
                break;
            if (step.what == zeroing_session::step::outcome::stopped) {
                result.status = zeroing_status::cancelled;
                break;
            }
            if (auto [error, message] = count_write(result, session, step, rejections, progress); error != 0) {
                fail(error, std::move(message));
                break;
            }
            zeroable = result.zeroable_after = session.read_zeroable();
        }
        if (result.status != zeroing_status::failed)
            result.zeroable_after = session.read_zeroable();
    } catch (const std::system_error& e) {
        fail(e.code().value(), e.what());
    } catch (const std::exception& e) {
        fail(EIO, e.what());
    }
    result.elapsed = std::chrono::steady_clock::now() - start;
    return result;
}

} // namespace hugezero::detail

#endif
