/// @file
/// @brief Zeroing pages of an hstate through `zeroable_hugepages`, blocking in the calling thread.
#ifndef HUGEZERO_ZEROING_HPP
#define HUGEZERO_ZEROING_HPP

#include <cstdint>
#include <optional>
#include <stop_token>
#include <utility>

#include <hugezero/detail/zeroing/session.hpp>
#include <hugezero/hstate.hpp>
#include <hugezero/machine.hpp>
#include <hugezero/zeroing_options.hpp>
#include <hugezero/zeroing_result.hpp>

namespace hugezero {

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
