/// @file
/// @brief hugezero::reservoir_statistics and hugezero::reservoir_state: what a pool's reservoir
/// holds and what its refill is doing, as a snapshot.
#ifndef HUGEZERO_POOL_STATISTICS_HPP
#define HUGEZERO_POOL_STATISTICS_HPP

#include <chrono>
#include <cstdint>
#include <ostream>
#include <system_error>

#include <hugezero/hstate.hpp>

namespace hugezero {

/// What a reservoir's refill is doing.
enum class reservoir_state {
    at_target,      ///< The reservoir holds its target.
    filling,        ///< Workers are filling it.
    held_by_floor,  ///< Below target: more would leave the node fewer free pages than the floor.
    out_of_pages,   ///< Below target: the kernel had no free page of this size on the node.
    failing,        ///< Below target: the refill failed (see reservoir_statistics::last_error).
    quiet,          ///< Below target: a lease was just taken (pool_options::quiet_after_lease).
    paused,         ///< The pool is paused.
    stopped,        ///< The pool's workers are not running.
};

/// Prints e.g. `at target`, `held by floor`.
inline std::ostream& operator<<(std::ostream& out, reservoir_state state)
{
    switch (state) {
    case reservoir_state::at_target:
        return out << "at target";
    case reservoir_state::filling:
        return out << "filling";
    case reservoir_state::held_by_floor:
        return out << "held by floor";
    case reservoir_state::out_of_pages:
        return out << "out of pages";
    case reservoir_state::failing:
        return out << "failing";
    case reservoir_state::quiet:
        return out << "quiet after a lease";
    case reservoir_state::paused:
        return out << "paused";
    case reservoir_state::stopped:
        return out << "stopped";
    }
    return out << "unknown";
}

/// A snapshot of one reservoir: its level, its leases, what the refill did.
struct reservoir_statistics {
    hstate which{node_id(0), page_2mib};           ///< The node and page size.
    reservoir_state state = reservoir_state::stopped; ///< What the refill is doing.
    std::uint64_t target_pages = 0;                 ///< The target.
    std::uint64_t floor_pages = 0;                  ///< The floor.
    std::uint64_t ready_pages = 0;                  ///< The reservoir level: pages ready to lease.
    std::uint64_t ready_files = 0;                  ///< Files those pages are in.
    std::uint64_t filling_pages = 0;                ///< Pages in files being filled.
    std::uint64_t leases_out = 0;                   ///< Leases made and not yet closed.
    std::uint64_t leased_pages = 0;                 ///< Pages in those leases.
    std::uint64_t leases_served = 0;                ///< Leases made.
    std::uint64_t warm_pages_served = 0;            ///< Pages leased ready from the reservoir.
    std::uint64_t cold_pages_served = 0;            ///< Pages allocated on the spot for leases.
    std::uint64_t trimmed_pages = 0;                ///< Ready pages cut off larger files and given back.
    std::uint64_t refill_pages = 0;                 ///< Pages the workers allocated and zeroed.
    std::chrono::nanoseconds refill_time{0};        ///< Time workers spent allocating, summed over workers.
    std::uint64_t refills_interrupted = 0;          ///< Files whose refill ended short of its goal: stop, pause, a lease took them.
    std::uint64_t floor_holds = 0;                  ///< Times the refill stopped at the floor.
    std::uint64_t out_of_pages = 0;                 ///< Times the kernel had no free page (`ENOSPC`).
    std::uint64_t recycled_leases = 0;              ///< Leases pool::recycle() took back.
    std::uint64_t recycled_pages = 0;               ///< Their pages (kept for the reservoir, scrubbed before reuse).
    std::uint64_t recycles_refused = 0;             ///< Leases given back whose pages went to the kernel instead (see recycle_status).
    std::uint64_t returned_leases = 0;              ///< Leases given back while something still referred to their file (deferred).
    std::uint64_t waiting_pages = 0;                ///< Pages of those still waiting for the last reference to go.
    std::uint64_t scrubbing_pages = 0;              ///< Recycled pages waiting for or in their scrub.
    std::uint64_t scrubbed_pages = 0;               ///< Recycled pages the workers zeroed and put back in the reservoir.
    std::chrono::nanoseconds scrub_time{0};         ///< Time workers spent scrubbing, summed over workers.
    std::uint64_t errors = 0;                       ///< Other failures.
    std::error_code last_error;                     ///< The last failure's errno, if any.

    /// The reservoir level in bytes.
    [[nodiscard]] std::uint64_t ready_bytes() const noexcept { return ready_pages * which.size.bytes(); }
    /// The refill rate of one worker while it refills: bytes per second of worker time spent
    /// allocating (0 before any refill). Workers refilling in parallel add up to more.
    [[nodiscard]] double refill_bytes_per_second() const noexcept
    {
        const double seconds = std::chrono::duration<double>(refill_time).count();
        return seconds > 0 ? static_cast<double>(refill_pages * which.size.bytes()) / seconds : 0.0;
    }

    /// The scrub rate of one worker: bytes per second of worker time spent writing zeros to
    /// recycled pages (0 before any scrub).
    [[nodiscard]] double scrub_bytes_per_second() const noexcept
    {
        const double seconds = std::chrono::duration<double>(scrub_time).count();
        return seconds > 0 ? static_cast<double>(scrubbed_pages * which.size.bytes()) / seconds : 0.0;
    }

    /// Prints e.g. `node0/2MiB at target: 128/128 pages ready in 1 file, 0 filling, floor 0;
    /// 1 lease out (128 pages); served 2 leases (256 warm, 0 cold, 0 trimmed); refilled 384
    /// pages (0 interrupted, 0 floor holds, 0 out of pages, 0 errors)`, then, once leases were
    /// recycled, `; recycled 128 pages of 1 leases (0 scrubbing, 128 scrubbed, 0 waiting, 0 refused)`.
    friend std::ostream& operator<<(std::ostream& out, const reservoir_statistics& s)
    {
        out << s.which << ' ' << s.state << ": " << s.ready_pages << '/' << s.target_pages << " pages ready in "
            << s.ready_files << (s.ready_files == 1 ? " file, " : " files, ") << s.filling_pages << " filling, floor "
            << s.floor_pages << "; " << s.leases_out << (s.leases_out == 1 ? " lease" : " leases") << " out ("
            << s.leased_pages << " pages); served " << s.leases_served << (s.leases_served == 1 ? " lease" : " leases")
            << " (" << s.warm_pages_served << " warm, " << s.cold_pages_served << " cold, " << s.trimmed_pages
            << " trimmed); refilled " << s.refill_pages << " pages (" << s.refills_interrupted << " interrupted, "
            << s.floor_holds << " floor holds, " << s.out_of_pages << " out of pages, " << s.errors << " errors)";
        if (s.recycled_leases + s.recycles_refused + s.returned_leases > 0)
            out << "; recycled " << s.recycled_pages << " pages of " << s.recycled_leases << " leases (" << s.scrubbing_pages
                << " scrubbing, " << s.scrubbed_pages << " scrubbed, " << s.waiting_pages << " waiting, " << s.recycles_refused
                << " refused)";
        if (s.last_error)
            out << ", last error: " << s.last_error.message();
        return out;
    }
};

} // namespace hugezero

#endif
