/// @file
/// @brief Zeroing pages of an hstate through `zeroable_hugepages`, blocking in the calling thread.
#ifndef HUGEZERO_ZEROING_HPP
#define HUGEZERO_ZEROING_HPP

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <exception>
#include <limits>
#include <memory>
#include <optional>
#include <ostream>
#include <stop_token>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <hugezero/backend.hpp>
#include <hugezero/detail/ledger.hpp>
#include <hugezero/detail/interrupter.hpp>
#include <hugezero/error.hpp>
#include <hugezero/hstate.hpp>
#include <hugezero/machine.hpp>
#include <hugezero/thread_settings.hpp>

namespace hugezero {

/// How a zeroing request in progress is cancelled.
enum class cancellation {
    /// Interrupt the write blocked in the kernel with a signal (ABI.md §3): the request ends
    /// within one page's zeroing time of the stop request. Default.
    signal,
    /// Never send a signal: write at most zeroing_options::batch_bytes at a time and check for
    /// cancellation between writes. The request ends within one batch's zeroing time.
    chunked,
};

/// How zeroing requests are made.
struct zeroing_options {
    /// The most one write() asks the kernel to zero, in bytes, rounded down to whole pages
    /// (at least one). Bounds the work lost to an interruption, the time a cancellation takes
    /// in chunked mode (or on a kernel that restarts interrupted writes), and lets several
    /// workers share an hstate. Default 64 MiB: 32 pages of 2 MiB, one page of 1 GiB.
    std::uint64_t batch_bytes = std::uint64_t{64} << 20;
    /// How a request in progress is cancelled.
    cancellation cancel = cancellation::signal;
    /// The signal sent to a worker to interrupt its write. Default `SIGURG`: its default action
    /// is to be ignored, so a late or stray one can never kill the process, and applications
    /// practically never use it (only sockets with out-of-band data and `F_SETOWN` do; Go's
    /// runtime picked it for goroutine preemption for the same reasons). hugezero installs a
    /// no-op handler on it only if the signal has its default disposition, and otherwise refuses
    /// with `EBUSY` rather than replace the application's handler.
    int cancel_signal = SIGURG;

    /// The pages one write asks for, for pages of @p size.
    [[nodiscard]] std::uint64_t batch_pages(page_size size) const noexcept
    {
        return std::max<std::uint64_t>(1, batch_bytes / size.bytes());
    }
};

/// How a zeroing request ended.
enum class zeroing_status {
    complete,  ///< It did what was asked, or there was nothing (more) to zero.
    cancelled, ///< A stop was requested.
    failed,    ///< An I/O error ended it; see zeroing_result::error.
};

/// Prints `complete`, `cancelled` or `failed`.
inline std::ostream& operator<<(std::ostream& out, zeroing_status status)
{
    switch (status) {
    case zeroing_status::complete:
        return out << "complete";
    case zeroing_status::cancelled:
        return out << "cancelled";
    case zeroing_status::failed:
        return out << "failed";
    }
    return out << "unknown";
}

/// What a zeroing request did.
///
/// Counts are exact for writes that completed without a signal. A write cut short leaves only
/// the counter to tell what it did: hugezero re-reads it once no other write of the hstate is
/// in flight, and credits the drop to the request that re-read it (see `exact`). That drop is
/// exact only if no consumer allocated or released pages of the hstate since the first of
/// those writes began: each page released meanwhile (it becomes zeroable again) makes the
/// estimate one page low, each dirty page allocated meanwhile one page high. With VMs coming
/// and going while the service is paused again and again, a real kernel showed estimates ~7%
/// low.
///
/// One case no reading can tell apart: if consumers (VMs faulting memory in) allocate *dirty*
/// pages of the hstate while a write is in flight - they take zeroed pages first, so only
/// when they need more than are zeroed - the write may find its last pages gone, end early and
/// still succeed; the consumers zeroed those pages themselves. The kernel's counter drops by
/// the same amount either way, so `pages_zeroed` then counts them too: for writes no signal cut
/// short it is an upper bound, over by at most the dirty pages consumers took during them. The same holds
/// for writers hugezero does not know (another process, or another `machine` in this one) on
/// a kernel that clamps out-of-range requests, and for a signal hugezero did not send (a
/// profiler's) on a kernel that ends interrupted writes with success: hugezero's own writers of
/// one `machine` never cause it.
struct zeroing_result {
    hstate which{node_id(0), page_2mib};            ///< The hstate.
    zeroing_status status = zeroing_status::complete; ///< How it ended.
    std::optional<std::uint64_t> pages_asked;        ///< The pages asked for; empty for "all".
    std::uint64_t pages_zeroed = 0;                  ///< Pages zeroed (see above).
    bool exact = true;                               ///< False if a write of this request was cut short.
    std::uint64_t writes = 0;                        ///< Requests written to the kernel.
    std::uint64_t interrupted_writes = 0;            ///< Of those, cut short by a signal (see zero_pages()).
    std::uint64_t rejected_writes = 0;               ///< Of those, rejected (`EINVAL`: another writer came first).
    std::uint64_t zeroable_before = 0;               ///< `zeroable_hugepages` when the request started.
    std::uint64_t zeroable_after = 0;                ///< `zeroable_hugepages` when it ended.
    std::chrono::nanoseconds elapsed{0};             ///< Wall time of the whole request.
    std::chrono::nanoseconds time_in_writes{0};      ///< Of that, time spent in write() (the kernel's work).
    std::error_code error;                           ///< Why it failed (status failed), else empty.
    std::string error_message;                       ///< The same, in words, naming the file.
    std::vector<setting_failure> setting_failures;   ///< Thread settings that could not be applied.

    /// Bytes zeroed.
    [[nodiscard]] std::uint64_t bytes_zeroed() const noexcept { return pages_zeroed * which.size.bytes(); }

    /// Prints e.g. `node0/2MiB complete: 32 pages zeroed (exact) in 5 writes, 4.8ms`.
    friend std::ostream& operator<<(std::ostream& out, const zeroing_result& r)
    {
        out << r.which << ' ' << r.status << ": " << r.pages_zeroed << " pages zeroed (" << (r.exact ? "exact" : "estimated")
            << ") in " << r.writes << " writes";
        if (r.interrupted_writes > 0)
            out << ", " << r.interrupted_writes << " interrupted";
        if (r.rejected_writes > 0)
            out << ", " << r.rejected_writes << " rejected";
        out << ", " << std::chrono::duration<double, std::milli>(r.elapsed).count() << "ms";
        if (r.status == zeroing_status::failed)
            out << ": " << r.error_message;
        return out;
    }
};

/// Live progress of a request, readable from any thread while it runs.
struct zeroing_progress {
    std::uint64_t pages_zeroed = 0; ///< Pages zeroed so far.
    std::uint64_t writes = 0;       ///< Writes so far.
};

namespace detail {

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

} // namespace detail

/// Zeroes up to @p pages pages of @p h in the calling thread, in writes of at most
/// zeroing_options::batch_bytes. Returns when they are zeroed, when nothing zeroable is left
/// (fewer pages than asked; see the result), when @p stop is requested (the write in progress is
/// interrupted), or on an I/O error (status failed, with the errno and the file).
///
/// Errors that end a request, and those that do not:
/// - `EINTR` when no stop was requested (another signal reached the thread: a profiler's, the
///   application's) ends only that write: the request re-reads the counter, credits what the
///   write did, and goes on, also through a storm of them. It counts in `interrupted_writes`
///   and makes the result inexact. Only @p stop cancels a request.
/// - `EINVAL` (another writer took the pages first) is retried after re-reading the counter;
///   64 in a row end the request as failed.
/// - `ENODEV` (the attribute was removed while open: its node went offline) fails the request;
///   a later write of the same session (the service's workers) opens the attribute anew.
/// - Any other errno of a write, and any failure to read the counter, fails the request.
///
/// In signal mode the calling thread gets hugezero's cancellation signal unblocked for the
/// duration of the call (its mask is restored before returning).
/// @throws hugezero::zeroing_unsupported if the kernel lacks `zeroable_hugepages` for @p h.
/// @throws std::invalid_argument if @p m has no hstate @p h.
/// @throws std::system_error if the attribute cannot be opened for writing, or the
/// cancellation signal already has an application handler (`EBUSY`).
inline zeroing_result zero_pages(const machine& m, const hstate& h, std::uint64_t pages, std::stop_token stop = {},
                                 const zeroing_options& options = {})
{
    detail::zeroing_session session(m, h, options);
    return detail::run_zeroing(session, pages, std::move(stop));
}

/// Zeroes every zeroable page of @p h (including pages that become zeroable meanwhile) in the
/// calling thread; otherwise as zero_pages().
inline zeroing_result zero_all(const machine& m, const hstate& h, std::stop_token stop = {},
                               const zeroing_options& options = {})
{
    detail::zeroing_session session(m, h, options);
    return detail::run_zeroing(session, std::nullopt, std::move(stop));
}

} // namespace hugezero

#endif
