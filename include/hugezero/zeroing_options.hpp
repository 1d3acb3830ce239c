/// @file
/// @brief hugezero::zeroing_options: how zeroing requests are made (batch, cancellation,
/// placement of the writing thread).
#ifndef HUGEZERO_ZEROING_OPTIONS_HPP
#define HUGEZERO_ZEROING_OPTIONS_HPP

#include <algorithm>
#include <csignal>
#include <cstdint>

#include <hugezero/page_size.hpp>
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

} // namespace hugezero

#endif
