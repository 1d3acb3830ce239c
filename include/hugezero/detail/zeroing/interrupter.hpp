/// @file
/// @brief Cutting short a system call blocked in the kernel (a zeroing write(), a pool's
/// fallocate()): the cancellation signal's handler and the per-thread interrupter. The one
/// place in hugezero that deals with signals.
#ifndef HUGEZERO_DETAIL_INTERRUPTER_HPP
#define HUGEZERO_DETAIL_INTERRUPTER_HPP

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>

#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <hugezero/detail/lock_rank.hpp>
#include <hugezero/detail/signal_counter.hpp>
#include <hugezero/error.hpp>

namespace hugezero::detail {

// Why a signal at all: a thread blocked in write() on zeroable_hugepages, or in fallocate() on a
// hugetlb file, leaves the kernel only when the call is done or a signal is pending (ABI.md §3,
// §4). A handler without SA_RESTART turns -ERESTARTSYS into EINTR; the kernel checks between
// pages, so the call ends at a page boundary.

class interrupter;

/// The interrupter of the calling thread, if it has one (set and cleared by the interrupter).
inline thread_local interrupter* current_interrupter = nullptr;

inline void cancel_signal_handler(int) noexcept;

/// "SIGURG (23)" for messages (sigabbrev_np is thread-safe, unlike strsignal).
inline std::string signal_name(int signo)
{
    const char* abbreviation = ::sigabbrev_np(signo);
    return (abbreviation != nullptr ? std::string("SIG") + abbreviation + " (" : std::string("signal (")) + std::to_string(signo)
           + ")";
}

/// Makes sure @p signo has hugezero's no-op handler (without `SA_RESTART`), installing it if the
/// signal has its default disposition. It is left installed for the life of the process: the
/// handler does nothing but count, and removing it could let a late re-sent signal take the
/// default action.
/// @throws std::system_error (`EBUSY`) if the application already set a disposition for
/// @p signo: hugezero never replaces an application's handler.
inline void install_cancel_handler(int signo)
{
    static ranked_mutex<> mutex{lock_rank::leaf, "the cancellation signal's handler"};
    const std::lock_guard lock(mutex);
    struct sigaction current {};
    if (::sigaction(signo, nullptr, &current) != 0)
        throw errno_error("query the disposition of cancellation signal " + std::to_string(signo));
    const bool ours = (current.sa_flags & SA_SIGINFO) == 0 && current.sa_handler == &cancel_signal_handler;
    if (ours)
        return;
    if ((current.sa_flags & SA_SIGINFO) != 0 || current.sa_handler != SIG_DFL)
        throw system_error(EBUSY, "use signal " + signal_name(signo)
                                      + " to cancel zeroing: the application already set its disposition, and "
                                        "hugezero never replaces it; choose another signal in "
                                        "zeroing_options::cancel_signal, or use cancellation::chunked");
    struct sigaction action {};
    action.sa_handler = &cancel_signal_handler;
    sigemptyset(&action.sa_mask);
    action.sa_flags = 0; // no SA_RESTART: the blocked write must fail with EINTR
    if (::sigaction(signo, &action, nullptr) != 0)
        throw errno_error("install the handler of cancellation signal " + std::to_string(signo));
}

/// Interrupts the blocking calls (write, fallocate) of the thread that created it, on request
/// from any thread.
///
/// The race ABI.md §3 warns about: a signal sent just before the worker enters the call is
/// handled and forgotten, and the call then blocks for its whole length. So a request does not
/// send one signal: it arms a per-thread POSIX timer that re-sends the signal every
/// `resend_period_ns` to that thread until the call returns (the worker disarms it). A flag
/// checked before each call covers requests that come between calls.
///
/// The re-sending stops after `max_resends` signals: a kernel that restarts interrupted calls
/// would otherwise restart them forever, each restart ending after one page, so the call would
/// only end when nothing was left. After the last signal, a restarted call completes its own
/// request, which the caller keeps small (a batch): the bound is then one batch.
///
/// Usage, in the worker: `if (!i.begin_call()) stop; rc = write(...); bool hit = i.end_call();`
/// There is at most one per thread (the signal handler finds it through a thread-local
/// pointer): get it with thread_interrupter(), in the thread whose calls it interrupts, and let
/// the last reference go in that thread.
class interrupter {
public:
    /// How often the signal is re-sent while an interrupted call is still in the kernel.
    static constexpr long resend_period_ns = 1'000'000;
    /// How many signals one request sends at most.
    static constexpr int max_resends = 20;

    /// Prepares the calling thread: hugezero's handler on @p signo, @p signo unblocked in this
    /// thread (it may be blocked in the thread that created this one), and a timer that
    /// delivers @p signo to this thread only.
    /// @throws std::system_error as install_cancel_handler(), or if the timer cannot be created.
    explicit interrupter(int signo) : signo_(signo)
    {
        install_cancel_handler(signo);
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, signo);
        if (const int rc = ::pthread_sigmask(SIG_UNBLOCK, &set, &saved_mask_); rc != 0)
            throw system_error(rc, "unblock cancellation signal " + std::to_string(signo));
        sigevent event{};
        event.sigev_notify = SIGEV_THREAD_ID;
        event.sigev_signo = signo;
        event._sigev_un._tid = static_cast<pid_t>(::syscall(SYS_gettid));
        if (::timer_create(CLOCK_MONOTONIC, &event, &timer_) != 0) {
            const int error = errno;
            ::pthread_sigmask(SIG_SETMASK, &saved_mask_, nullptr);
            throw system_error(error, "create the timer that re-sends cancellation signal " + std::to_string(signo));
        }
        current_interrupter = this;
    }
    interrupter(const interrupter&) = delete;
    interrupter& operator=(const interrupter&) = delete;
    ~interrupter()
    {
        current_interrupter = nullptr; // a signal still on its way finds no interrupter
        ::timer_delete(timer_);
        ::pthread_sigmask(SIG_SETMASK, &saved_mask_, nullptr);
    }

    /// From any thread: interrupt the current call, and refuse further ones until reset().
    /// Never blocks for long (a short lock shared only with begin_call() and end_call()).
    void request() noexcept
    {
        const std::lock_guard lock(mutex_);
        requested_.store(true);
        if (in_call_ && !armed_)
            arm(true);
    }

    /// Whether an interruption was requested and not reset.
    [[nodiscard]] bool requested() const noexcept { return requested_.load(); }

    /// Clears a request (to resume after a pause). From any thread.
    void reset() noexcept
    {
        const std::lock_guard lock(mutex_);
        requested_.store(false);
    }

    /// Called by the owning thread just before the blocking call: false means "do not make
    /// it, an interruption was requested".
    [[nodiscard]] bool begin_call() noexcept
    {
        const std::lock_guard lock(mutex_);
        if (requested_.load())
            return false;
        in_call_ = true;
        return true;
    }

    /// Called by the owning thread when the call returned. Returns whether signals were sent
    /// during the call (so a success may hide partial progress).
    bool end_call() noexcept
    {
        const std::lock_guard lock(mutex_);
        in_call_ = false;
        const bool signalled = armed_;
        if (armed_)
            arm(false);
        return signalled;
    }

    /// The signal this interrupter sends.
    [[nodiscard]] int signal_number() const noexcept { return signo_; }

    /// Called by the signal handler, in the owning thread: counts the signal and stops the
    /// re-sending after max_resends. Async-signal-safe.
    void on_signal() noexcept
    {
        if (resends_left_.fetch_sub(1) == 1) {
            const itimerspec stop{};
            ::timer_settime(timer_, 0, &stop, nullptr);
        }
    }

private:
    void arm(bool on) noexcept
    {
        itimerspec spec{};
        if (on) {
            resends_left_.store(max_resends);
            spec.it_value.tv_nsec = 1; // now
            spec.it_interval.tv_nsec = resend_period_ns;
        } else {
            resends_left_.store(0); // a signal already on its way must not count down to a re-arm
        }
        ::timer_settime(timer_, 0, &spec, nullptr);
        armed_ = on;
    }

    int signo_;
    sigset_t saved_mask_{};
    timer_t timer_{};
    ranked_mutex<> mutex_{lock_rank::interrupter, "an interrupter"};
    std::atomic<bool> requested_{false};
    bool in_call_ = false; // under mutex_
    bool armed_ = false;    // under mutex_
    std::atomic<int> resends_left_{0}; // also used by the signal handler (lock-free)
};

/// The calling thread's interrupter, created on first use with @p signo. Everything that makes
/// blocking calls in one thread shares it: the thread makes one call at a time, and the
/// signal handler can tell only threads apart.
/// @throws std::invalid_argument if the thread's interrupter uses another signal; otherwise as
/// interrupter's constructor.
inline std::shared_ptr<interrupter> thread_interrupter(int signo)
{
    thread_local std::weak_ptr<interrupter> existing;
    if (auto shared = existing.lock()) {
        if (shared->signal_number() != signo)
            throw std::invalid_argument("hugezero: this thread already cancels with " + signal_name(shared->signal_number())
                                        + "; one thread cannot use two cancellation signals");
        return shared;
    }
    auto created = std::make_shared<interrupter>(signo);
    existing = created;
    return created;
}

inline void cancel_signal_handler(int) noexcept
{
    note_cancel_signal();
    if (interrupter* owner = current_interrupter)
        owner->on_signal();
}

} // namespace hugezero::detail

#endif
