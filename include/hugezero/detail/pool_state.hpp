/// @file
/// @brief Internals of hugezero::pool: the reservoirs, the files being filled, the live
/// counters, and the state the pool shares with its leases.
#ifndef HUGEZERO_DETAIL_POOL_STATE_HPP
#define HUGEZERO_DETAIL_POOL_STATE_HPP

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include <hugezero/detail/interrupter.hpp>
#include <hugezero/detail/unique_fd.hpp>
#include <hugezero/hstate.hpp>
#include <hugezero/lease.hpp>

namespace hugezero::detail {

using pool_clock = std::chrono::steady_clock;

/// A hugetlb memfd of the reservoir and how many pages it holds (all allocated, all zero).
struct pool_file {
    unique_fd fd;
    std::uint64_t pages = 0;
};

/// Why a reservoir's refill is waiting for its retry time.
enum class refill_hold : int {
    none,     ///< It is not.
    floor,    ///< Taking more pages would leave the node fewer free pages than the floor.
    no_pages, ///< The kernel had no free page (`ENOSPC`).
    error,    ///< Something else failed (see last_error).
};

/// The live counters of one reservoir: written with relaxed atomics, read lock-free.
struct reservoir_counters {
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
    std::atomic<std::uint64_t> errors{0};
    std::atomic<int> last_error{0};
    std::atomic<int> hold{static_cast<int>(refill_hold::none)};

    void record_error(int error) noexcept
    {
        errors.fetch_add(1, std::memory_order_relaxed);
        last_error.store(error, std::memory_order_relaxed);
    }
};

/// A file a worker is filling. Registered in its reservoir (under the pool mutex) while the
/// worker owns the file, so that an acquire() can ask for it (yield) rather than allocate cold.
struct fill_job {
    std::uint64_t id = 0;                       // unique per reservoir; set before registration
    std::uint64_t goal = 0;                     // pages the file should reach; under the pool mutex
    std::atomic<bool> yield_requested{false};   // an acquire() wants the file as it is
    interrupter* interrupt = nullptr;           // the worker's, to cut its fallocate() short
};

/// One hstate's reservoir. Everything but the counters and the floor fields is under the pool
/// mutex.
struct reservoir {
    explicit reservoir(const hstate& h) : which(h) {}

    hstate which;
    bool listed = false;               // in pool_options (fixed after construction)
    std::uint64_t floor_pages = 0;     // fixed after construction
    std::uint64_t target_pages = 0;
    std::uint64_t chunk_pages = 0;
    bool chunk_follows_target = true;  // chunk_bytes was 0: one file holds the whole target
    std::vector<pool_file> idle;       // ready files, not being filled
    std::uint64_t ready_pages = 0;     // pages in `idle`
    std::vector<fill_job*> filling;    // files being filled by workers
    std::uint64_t next_job_id = 1;
    unsigned cold_allocations = 0;     // acquire()s allocating cold pages: the refill holds meanwhile
    std::optional<pool_clock::time_point> retry_at; // the refill holds until then
    std::mutex floor_mutex;            // one floor decision at a time (reads counters, claims pages)
    std::condition_variable_any floor_cv; // a claim settled, or a waiter should look at its flags
    std::uint64_t in_flight = 0;       // under floor_mutex: pages claimed by fallocate()s in progress
    std::uint64_t claims_settled = 0;  // under floor_mutex: bumped when a claim ends
    reservoir_counters counters;

    /// Pages ready plus pages the files being filled will reach.
    [[nodiscard]] std::uint64_t planned_pages() const noexcept
    {
        std::uint64_t planned = ready_pages;
        for (const fill_job* job : filling)
            planned += job->goal;
        return planned;
    }

    /// The idle file that best serves a lease of @p pages pages: one of exactly that size,
    /// else the smallest larger one (trimmed, nothing cold), else the largest smaller one
    /// (the rest allocated cold). Returns idle.size() if there is none.
    [[nodiscard]] std::size_t best_idle(std::uint64_t pages) const noexcept
    {
        std::size_t best = idle.size();
        for (std::size_t i = 0; i < idle.size(); ++i) {
            if (best == idle.size()) {
                best = i;
                continue;
            }
            const std::uint64_t have = idle[best].pages;
            const std::uint64_t candidate = idle[i].pages;
            const bool have_fits = have >= pages;
            const bool candidate_fits = candidate >= pages;
            if (candidate_fits && (!have_fits || candidate < have))
                best = i;
            else if (!candidate_fits && !have_fits && candidate > have)
                best = i;
        }
        return best;
    }

    /// Removes idle file @p index and updates the counts.
    pool_file take_idle(std::size_t index)
    {
        pool_file file = std::move(idle[index]);
        idle.erase(idle.begin() + static_cast<std::ptrdiff_t>(index));
        ready_pages -= file.pages;
        publish_ready();
        return file;
    }

    /// Adds @p file to the idle files.
    void add_idle(pool_file file)
    {
        ready_pages += file.pages;
        idle.push_back(std::move(file));
        publish_ready();
    }

    void publish_ready() noexcept
    {
        counters.ready_pages.store(ready_pages, std::memory_order_relaxed);
        counters.ready_files.store(idle.size(), std::memory_order_relaxed);
    }

    [[nodiscard]] bool job_registered(std::uint64_t id) const noexcept
    {
        return std::any_of(filling.begin(), filling.end(), [id](const fill_job* j) { return j->id == id; });
    }
};

/// What a pool shares with its workers and its leases. Leases keep it alive (they report
/// their release to it), so it may outlive the pool object.
struct pool_state final : lease_owner {
    std::mutex mutex;
    std::condition_variable_any cv;   // any change: files, targets, pause, releases
    std::uint64_t epoch = 0;          // under mutex: bumped with every change workers may act on
    std::atomic<bool> paused{false};
    std::atomic<bool> running{false};
    pool_clock::time_point quiet_until{};      // under mutex: no refill before (a VM is starting)
    std::atomic<std::int64_t> quiet_until_ns{0}; // the same, for lock-free statistics
    std::map<hstate, std::unique_ptr<reservoir>> reservoirs; // every hstate of the machine; fixed
    std::vector<std::shared_ptr<interrupter>> worker_interrupters; // under mutex

    /// Wakes workers waiting for other workers' floor claims, so that they look at their
    /// flags (pause, yield). Taking each floor mutex orders the flags set before it with the
    /// waiters' checks.
    void wake_floor_waiters()
    {
        for (auto& [h, r] : reservoirs) {
            { const std::lock_guard lock(r->floor_mutex); }
            r->floor_cv.notify_all();
        }
    }

    /// Marks a change and wakes every waiter. Call without holding the mutex.
    void changed()
    {
        {
            const std::lock_guard lock(mutex);
            ++epoch;
        }
        cv.notify_all();
    }

    void lease_closed(const hstate& which, std::uint64_t pages) noexcept override
    {
        const auto it = reservoirs.find(which);
        if (it == reservoirs.end())
            return;
        it->second->counters.leases_out.fetch_sub(1, std::memory_order_relaxed);
        it->second->counters.leased_pages.fetch_sub(pages, std::memory_order_relaxed);
        {
            const std::lock_guard lock(mutex);
            // Pages just went back to the kernel: refills of the node held for want of free
            // pages may go on now.
            for (auto& [h, r] : reservoirs) {
                const auto hold = static_cast<refill_hold>(r->counters.hold.load(std::memory_order_relaxed));
                if (h.node == which.node && (hold == refill_hold::floor || hold == refill_hold::no_pages))
                    r->retry_at.reset();
            }
            ++epoch;
        }
        cv.notify_all();
    }
};

} // namespace hugezero::detail

#endif
