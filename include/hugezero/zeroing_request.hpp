/// @file
/// @brief hugezero::zeroing_request: zeroing in a worker thread, cancellable, observable.
#ifndef HUGEZERO_ZEROING_REQUEST_HPP
#define HUGEZERO_ZEROING_REQUEST_HPP

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <utility>

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <hugezero/detail/deadline.hpp>
#include <hugezero/detail/lock_rank.hpp>
#include <hugezero/detail/worker_group.hpp>
#include <hugezero/error.hpp>
#include <hugezero/machine.hpp>
#include <hugezero/thread_settings.hpp>
#include <hugezero/unique_fd.hpp>
#include <hugezero/zeroing.hpp>

namespace hugezero {

/// How an asynchronous request runs.
struct request_options {
    zeroing_options zeroing;  ///< Batch size and cancellation.
    /// Where the worker runs and who pays for it. Without `cpus`, the worker is pinned to the
    /// CPUs of the hstate's node (the kernel zeroes in the writer's context: local memory,
    /// local CPU); set `pin_to_node` to false to leave it unpinned instead.
    thread_settings thread;
    bool pin_to_node = true;  ///< See `thread`.
};

namespace detail {

/// Waits until @p fd is readable or @p timeout passes (0: just check; negative: forever).
inline bool wait_readable(int fd, std::chrono::nanoseconds timeout)
{
    const auto deadline = deadline_after(timeout);
    for (;;) {
        pollfd p{fd, POLLIN, 0};
        timespec ts{};
        timespec* tsp = nullptr;
        if (timeout >= std::chrono::nanoseconds::zero()) {
            const auto left = std::max(std::chrono::nanoseconds::zero(), deadline - std::chrono::steady_clock::now());
            ts.tv_sec = static_cast<time_t>(std::chrono::duration_cast<std::chrono::seconds>(left).count());
            ts.tv_nsec = static_cast<long>((left % std::chrono::seconds(1)).count());
            tsp = &ts;
        }
        const int rc = ::ppoll(&p, 1, tsp, nullptr);
        if (rc > 0)
            return true;
        if (rc == 0)
            return false;
        if (errno != EINTR)
            throw errno_error("poll");
    }
}

} // namespace detail

/// Zeroes pages of one hstate in a worker thread it owns.
///
/// - Cancel with request_stop() (or by destroying the request): the write blocked in the kernel
///   is interrupted (cancellation::signal) and the request ends within one page's zeroing time,
///   or within one batch in cancellation::chunked mode.
/// - Watch it with progress(), a timed wait(), or by polling fd() in your own event loop.
/// - Read what it did with result() once it is done.
///
/// Move-only; a moved-from request throws hugezero::closed_handle_error from its members.
///
/// @par Thread safety
/// All members may be called from any thread, except that a request must not be moved or
/// destroyed while another thread uses it.
class zeroing_request {
public:
    /// Starts zeroing @p pages pages of @p h (every zeroable page when empty).
    /// @throws hugezero::zeroing_unsupported or std::invalid_argument for an hstate that cannot
    /// be zeroed, and std::system_error (`EBUSY`) if the cancellation signal belongs to the
    /// application: all checked before the worker starts. Everything the worker meets later,
    /// including failing to open or read the attribute and settings it could not apply, is in
    /// the result (status `failed`, with the error and its message naming the file).
    zeroing_request(const machine& m, const hstate& h, std::optional<std::uint64_t> pages, request_options options = {})
        : state_(std::make_shared<state>())
    {
        (void)m.zeroable_path(h); // throws zeroing_unsupported / invalid_argument now
        if (options.zeroing.cancel == cancellation::signal)
            detail::install_cancel_handler(options.zeroing.cancel_signal); // EBUSY now, not in the worker
        state_->done_event.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
        if (!state_->done_event)
            throw detail::errno_error("eventfd for a zeroing request");
        if (options.pin_to_node)
            options.thread = detail::settings_for_node(m, h.node, std::move(options.thread));
        state_->started = std::chrono::steady_clock::now();
        worker_ = std::make_unique<detail::worker_group>();
        worker_->start(
            {{h.node, options.thread}},
            [s = state_, m, h, pages, zeroing = options.zeroing](detail::worker_context& c) {
                c.started(); // the caller need not wait for the zeroing
                s->finish(run_request(m, h, pages, zeroing, c, s->progress));
            },
            [s = state_, h](node_id, std::exception_ptr) { // never expected: the request still ends
                zeroing_result failed;
                failed.which = h;
                failed.status = zeroing_status::failed;
                failed.error = std::error_code(EIO, std::system_category());
                failed.error_message = "hugezero: the zeroing request's worker failed unexpectedly";
                s->finish(std::move(failed));
            });
    }

    /// Takes over another request; that one is left moved-from.
    zeroing_request(zeroing_request&&) noexcept = default;
    /// Cancels this request if it is still running and waits for its worker, then takes over
    /// another request; that one is left moved-from.
    zeroing_request& operator=(zeroing_request&&) noexcept = default;
    /// Cancels the request if it is still running and waits for its worker to end.
    ~zeroing_request() = default;

    /// Asks the request to stop: its write in progress is interrupted. Returns at once.
    void request_stop() { checked().worker_->request_stop(); }

    /// Whether the request has ended (its result is available).
    [[nodiscard]] bool done() const { return checked().state_->done.load(std::memory_order_acquire); }

    /// Waits for the request to end, at most @p timeout (0: just check; negative: forever).
    /// @return whether it has ended.
    bool wait(std::chrono::nanoseconds timeout) const
    {
        return detail::wait_readable(checked().state_->done_event.get(), timeout);
    }

    /// A descriptor that becomes readable (`POLLIN`) when the request ends and stays so, for
    /// your event loop. Owned by the request; poll it, do not read from it.
    [[nodiscard]] int fd() const { return checked().state_->done_event.get(); }

    /// Pages and writes so far.
    [[nodiscard]] zeroing_progress progress() const
    {
        const auto& p = checked().state_->progress;
        return {p.pages_zeroed.load(std::memory_order_relaxed), p.writes.load(std::memory_order_relaxed)};
    }

    /// Time since the request started.
    [[nodiscard]] std::chrono::nanoseconds elapsed() const
    {
        return std::chrono::steady_clock::now() - checked().state_->started;
    }

    /// What the request did, once done(); empty before.
    [[nodiscard]] std::optional<zeroing_result> result() const
    {
        const auto& s = *checked().state_;
        if (!s.done.load(std::memory_order_acquire))
            return std::nullopt;
        const std::lock_guard lock(s.mutex);
        return s.result;
    }

    /// Waits for the request to end and returns what it did.
    [[nodiscard]] zeroing_result get() const
    {
        (void)wait(std::chrono::nanoseconds(-1));
        return *result();
    }

private:
    struct state {
        detail::progress_counters progress;
        std::atomic<bool> done{false};
        mutable detail::ranked_mutex<> mutex{detail::lock_rank::leaf, "a zeroing_request's state"};
        zeroing_result result;
        unique_fd done_event;
        std::chrono::steady_clock::time_point started;

        // Publishes the result and makes fd() readable.
        void finish(zeroing_result r)
        {
            {
                const std::lock_guard lock(mutex);
                result = std::move(r);
            }
            done.store(true, std::memory_order_release);
            const std::uint64_t one = 1;
            (void)!::write(done_event.get(), &one, sizeof one);
        }
    };

    // What the worker does: zero, and put every failure in the result.
    static zeroing_result run_request(const machine& m, const hstate& h, std::optional<std::uint64_t> pages,
                                      const zeroing_options& options, const detail::worker_context& c,
                                      detail::progress_counters& progress)
    {
        zeroing_result result;
        try {
            detail::zeroing_session session(m, h, options);
            result = detail::run_zeroing(session, pages, c.stop(), &progress);
        } catch (const std::system_error& e) {
            result.status = zeroing_status::failed;
            result.error = e.code();
            result.error_message = e.what();
        } catch (const std::exception& e) {
            result.status = zeroing_status::failed;
            result.error = std::error_code(EIO, std::system_category());
            result.error_message = e.what();
        }
        result.which = h;
        result.pages_asked = pages;
        result.setting_failures = c.failures();
        return result;
    }

    const zeroing_request& checked() const
    {
        if (!state_)
            throw closed_handle_error("zeroing_request used after being moved from");
        return *this;
    }
    zeroing_request& checked()
    {
        if (!state_)
            throw closed_handle_error("zeroing_request used after being moved from");
        return *this;
    }

    std::shared_ptr<state> state_;
    std::unique_ptr<detail::worker_group> worker_; // last: stopped and joined before the state it shares is released
};

} // namespace hugezero

#endif
