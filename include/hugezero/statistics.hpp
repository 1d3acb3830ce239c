/// @file
/// @brief hugezero::hstate_statistics: what the pre-zeroing service did for one hstate.
#ifndef HUGEZERO_STATISTICS_HPP
#define HUGEZERO_STATISTICS_HPP

#include <atomic>
#include <chrono>
#include <cstdint>
#include <ostream>
#include <system_error>

#include <hugezero/hstate.hpp>

namespace hugezero {

/// What the pre-zeroing service did for one hstate since it was created (a snapshot).
struct hstate_statistics {
    hstate which{node_id(0), page_2mib};   ///< The hstate.
    /// Pages zeroed: exact, but see zeroing_result for consumers racing a write and for writes
    /// a signal cut short.
    std::uint64_t pages_zeroed = 0;
    std::chrono::nanoseconds time_zeroing{0}; ///< Time workers spent in write() for it.
    std::uint64_t zeroable = 0;             ///< `zeroable_hugepages` when last read.
    std::uint64_t requests = 0;             ///< Writes made.
    std::uint64_t requests_interrupted = 0; ///< Writes cut short by a signal (pause, stop).
    std::uint64_t requests_rejected = 0;    ///< Writes rejected with `EINVAL` (another writer came first).
    std::uint64_t errors = 0;               ///< Failures: writes, reads, workers that could not start.
    std::error_code last_error;             ///< The last failure's errno, if any.

    /// Bytes zeroed.
    [[nodiscard]] std::uint64_t bytes_zeroed() const noexcept { return pages_zeroed * which.size.bytes(); }
    /// Zeroing rate while zeroing, in bytes per second (0 before any zeroing).
    [[nodiscard]] double bytes_per_second() const noexcept
    {
        const double seconds = std::chrono::duration<double>(time_zeroing).count();
        return seconds > 0 ? static_cast<double>(bytes_zeroed()) / seconds : 0.0;
    }

    /// Prints e.g. `node0/2MiB: 512 pages zeroed in 12 requests (0 interrupted, 0 rejected,
    /// 0 errors), zeroable 0`.
    friend std::ostream& operator<<(std::ostream& out, const hstate_statistics& s)
    {
        out << s.which << ": " << s.pages_zeroed << " pages zeroed in " << s.requests << " requests ("
            << s.requests_interrupted << " interrupted, " << s.requests_rejected << " rejected, " << s.errors
            << " errors), zeroable " << s.zeroable;
        if (s.last_error)
            out << ", last error: " << s.last_error.message();
        return out;
    }
};

namespace detail {

/// The live counters behind hstate_statistics: written by workers with relaxed atomics, read
/// by anyone at any time without a lock.
struct statistics_counters {
    explicit statistics_counters(const hstate& h) : which(h) {}

    hstate which;
    std::atomic<std::uint64_t> pages_zeroed{0};
    std::atomic<std::int64_t> time_zeroing_ns{0};
    std::atomic<std::uint64_t> zeroable{0};
    std::atomic<std::uint64_t> requests{0};
    std::atomic<std::uint64_t> requests_interrupted{0};
    std::atomic<std::uint64_t> requests_rejected{0};
    std::atomic<std::uint64_t> errors{0};
    std::atomic<int> last_error{0};

    void record_error(int error) noexcept
    {
        errors.fetch_add(1, std::memory_order_relaxed);
        last_error.store(error, std::memory_order_relaxed);
    }

    [[nodiscard]] hstate_statistics snapshot() const
    {
        constexpr auto relaxed = std::memory_order_relaxed;
        hstate_statistics s;
        s.which = which;
        s.pages_zeroed = pages_zeroed.load(relaxed);
        s.time_zeroing = std::chrono::nanoseconds(time_zeroing_ns.load(relaxed));
        s.zeroable = zeroable.load(relaxed);
        s.requests = requests.load(relaxed);
        s.requests_interrupted = requests_interrupted.load(relaxed);
        s.requests_rejected = requests_rejected.load(relaxed);
        s.errors = errors.load(relaxed);
        if (const int error = last_error.load(relaxed))
            s.last_error = std::error_code(error, std::system_category());
        return s;
    }
};

} // namespace detail

} // namespace hugezero

#endif
