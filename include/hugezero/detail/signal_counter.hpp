/// @file
/// @brief The per-thread count of cancellation signals, shared by the signal machinery (which
/// increments it) and the in-process simulated kernel (which reads it, as a real kernel checks
/// signal_pending() between pages).
#ifndef HUGEZERO_DETAIL_SIGNAL_COUNTER_HPP
#define HUGEZERO_DETAIL_SIGNAL_COUNTER_HPP

#include <csignal>

namespace hugezero::detail {

/// Incremented by hugezero's cancellation signal handler in the thread it interrupted.
/// Constant-initialised, so reading or writing it from a signal handler needs no TLS setup.
inline thread_local volatile std::sig_atomic_t cancel_signals_received = 0;

/// Counts one received signal; async-signal-safe.
inline void note_cancel_signal() noexcept { cancel_signals_received = cancel_signals_received + 1; }

} // namespace hugezero::detail

#endif
