/// @file
/// @brief Internals of hugezero::pool: the live counters of one reservoir, written with relaxed
/// atomics and read lock-free into a reservoir_statistics snapshot.
#ifndef HUGEZERO_DETAIL_RESERVOIR_COUNTERS_HPP
#define HUGEZERO_DETAIL_RESERVOIR_COUNTERS_HPP

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <system_error>

#include <hugezero/hstate.hpp>
#include <hugezero/pool_statistics.hpp>

namespace hugezero::detail {

/// Why a reservoir's refill is waiting for its retry time.
enum class refill_hold : int {
    none,     ///< It is not.
    floor,    ///< Taking more pages would leave the node fewer free pages than the floor.
    no_pages, ///< The kernel had no free page (`ENOSPC`).
    error,    ///< Something else failed (see last_error).
};

/// The live counters of one reservoir. Any thread may read them at any time without a lock.
struct reservoir_counters {
    explicit reservoir_counters(const hstate& h) : which(h) {}

    hstate which;
    bool listed = false;  // a reservoir in pool_options; fixed after construction
    bool recycle = false; // reservoir_options::recycle; fixed after construction
    std::atomic<std::uint64_t> target_pages{0};
    std::atomic<std::uint64_t> floor_pages{0};
    std::atomic<std::uint64_t> ready_pages{0};
    std::atomic<std::uint64_t> ready_files{0};
    std::atomic<std::uint64_t> filling_pages{0};
    std::atomic<std::uint64_t> leases_out{0};
    std::atomic<std::uint64_t> leased_pages{0};
    std::atomic<std::uint64_t> leases_served{0};
    std::atomic<std::uint64_t> warm_pages_served{0};
    std::atomic<std::uint64_t> cold_pages_served{0};
    std::atomic<std::uint64_t> trimmed_pages{0};
    std::atomic<std::uint64_t> refill_pages{0};
    std::atomic<std::int64_t> refill_ns{0};
    std::atomic<std::uint64_t> refills_interrupted{0};
    std::atomic<std::uint64_t> floor_holds{0};
    std::atomic<std::uint64_t> out_of_pages{0};
    std::atomic<std::uint64_t> recycled_leases{0};
    std::atomic<std::uint64_t> recycled_pages{0};
    std::atomic<std::uint64_t> recycles_refused{0};
    std::atomic<std::uint64_t> returned_leases{0};
    std::atomic<std::uint64_t> waiting_pages{0};
    std::atomic<std::uint64_t> scrubbing_pages{0};
    std::atomic<std::uint64_t> scrubbed_pages{0};
    std::atomic<std::int64_t> scrub_ns{0};
    std::atomic<std::uint64_t> errors{0};
    std::atomic<int> last_error{0};
    std::atomic<int> hold{static_cast<int>(refill_hold::none)};

    static constexpr auto relaxed = std::memory_order_relaxed;

    void add(std::atomic<std::uint64_t>& counter, std::uint64_t n) noexcept { counter.fetch_add(n, relaxed); }
    void record_error(int error) noexcept
    {
        errors.fetch_add(1, relaxed);
        last_error.store(error, relaxed);
    }
    /// Counts what made the refill hold, and shows it in the state.
    void record_hold(refill_hold why, int error) noexcept
    {
        hold.store(static_cast<int>(why), relaxed);
        if (why == refill_hold::floor)
            floor_holds.fetch_add(1, relaxed);
        else if (why == refill_hold::no_pages) {
            out_of_pages.fetch_add(1, relaxed);
            last_error.store(ENOSPC, relaxed);
        } else if (why == refill_hold::error)
            record_error(error != 0 ? error : EIO);
    }
    [[nodiscard]] refill_hold current_hold() const noexcept { return static_cast<refill_hold>(hold.load(relaxed)); }
};

/// What the pool as a whole is doing, for a snapshot's state.
struct pool_activity {
    bool running = false;
    bool paused = false;
    bool quiet = false;
};

/// A snapshot of @p c.
inline reservoir_statistics snapshot(const reservoir_counters& c, const pool_activity& pool)
{
    constexpr auto relaxed = std::memory_order_relaxed;
    reservoir_statistics s;
    s.which = c.which;
    s.target_pages = c.target_pages.load(relaxed);
    s.floor_pages = c.floor_pages.load(relaxed);
    s.ready_pages = c.ready_pages.load(relaxed);
    s.ready_files = c.ready_files.load(relaxed);
    s.filling_pages = c.filling_pages.load(relaxed);
    s.leases_out = c.leases_out.load(relaxed);
    s.leased_pages = c.leased_pages.load(relaxed);
    s.leases_served = c.leases_served.load(relaxed);
    s.warm_pages_served = c.warm_pages_served.load(relaxed);
    s.cold_pages_served = c.cold_pages_served.load(relaxed);
    s.trimmed_pages = c.trimmed_pages.load(relaxed);
    s.refill_pages = c.refill_pages.load(relaxed);
    s.refill_time = std::chrono::nanoseconds(c.refill_ns.load(relaxed));
    s.refills_interrupted = c.refills_interrupted.load(relaxed);
    s.floor_holds = c.floor_holds.load(relaxed);
    s.out_of_pages = c.out_of_pages.load(relaxed);
    s.recycled_leases = c.recycled_leases.load(relaxed);
    s.recycled_pages = c.recycled_pages.load(relaxed);
    s.recycles_refused = c.recycles_refused.load(relaxed);
    s.returned_leases = c.returned_leases.load(relaxed);
    s.waiting_pages = c.waiting_pages.load(relaxed);
    s.scrubbing_pages = c.scrubbing_pages.load(relaxed);
    s.scrubbed_pages = c.scrubbed_pages.load(relaxed);
    s.scrub_time = std::chrono::nanoseconds(c.scrub_ns.load(relaxed));
    s.errors = c.errors.load(relaxed);
    if (const int error = c.last_error.load(relaxed))
        s.last_error = std::error_code(error, std::system_category());
    const refill_hold hold = c.current_hold();
    if (!pool.running || !c.listed)
        s.state = reservoir_state::stopped;
    else if (pool.paused)
        s.state = reservoir_state::paused;
    else if (s.ready_pages >= s.target_pages)
        s.state = reservoir_state::at_target;
    else if (pool.quiet)
        s.state = reservoir_state::quiet;
    else if (hold == refill_hold::floor)
        s.state = reservoir_state::held_by_floor;
    else if (hold == refill_hold::no_pages)
        s.state = reservoir_state::out_of_pages;
    else if (hold == refill_hold::error)
        s.state = reservoir_state::failing;
    else
        s.state = reservoir_state::filling;
    return s;
}

} // namespace hugezero::detail

#endif
