/// @file
/// @brief hugezero::zeroing_result: what a zeroing request did, and its progress while it runs.
#ifndef HUGEZERO_ZEROING_RESULT_HPP
#define HUGEZERO_ZEROING_RESULT_HPP

#include <chrono>
#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <system_error>

#include <hugezero/hstate.hpp>

namespace hugezero {

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

} // namespace hugezero

#endif
