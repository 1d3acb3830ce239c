/// @file
/// @brief Internals of hugezero::pool: what its rooms share. The reservoirs under the pool's
/// lock, their lock-free counters, the quiet period; and the state leases keep alive to report
/// their release.
#ifndef HUGEZERO_DETAIL_POOL_STATE_HPP
#define HUGEZERO_DETAIL_POOL_STATE_HPP

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include <hugezero/detail/deadline.hpp>
#include <hugezero/detail/fill_job.hpp>
#include <hugezero/detail/floor_gate.hpp>
#include <hugezero/detail/guarded.hpp>
#include <hugezero/detail/refill_pacing.hpp>
#include <hugezero/detail/reservoir.hpp>
#include <hugezero/detail/reservoir_counters.hpp>
#include <hugezero/detail/worker_group.hpp>
#include <hugezero/hstate.hpp>
#include <hugezero/lease.hpp>
#include <hugezero/machine.hpp>
#include <hugezero/pool_options.hpp>

namespace hugezero::detail {

/// One hstate's reservoir: its settings, its ready files, the file being filled. Under the
/// pool's lock.
struct reservoir_slot {
    explicit reservoir_slot(reservoir_counters& c) : counters(&c), files(c) {}

    reservoir_counters* counters;
    std::uint64_t target_pages = 0;
    std::uint64_t chunk_pages = 0;
    bool chunk_follows_target = true;           // chunk_bytes was 0: one file holds the target
    reservoir files;                            // the ready files
    std::vector<std::unique_ptr<fill_job>> jobs; // the files being filled
    unsigned cold_allocations = 0;              // acquire()s allocating cold: the refill waits
    std::optional<pool_clock::time_point> retry_at; // a held refill looks again then

    /// Pages ready, and those the files being filled will add.
    [[nodiscard]] std::uint64_t planned_pages() const noexcept
    {
        std::uint64_t planned = files.ready_pages();
        for (const auto& job : jobs)
            planned += job->growth();
        return planned;
    }
    /// A file being filled that another worker may join, or null.
    [[nodiscard]] fill_job* joinable_job() const noexcept
    {
        for (const auto& job : jobs)
            if (job->joinable())
                return job.get();
        return nullptr;
    }
    /// Whether the refill should start another file now.
    [[nodiscard]] bool wants_refill(pool_clock::time_point now) const noexcept
    {
        return cold_allocations == 0 && planned_pages() < target_pages && chunk_pages > 0 && (!retry_at || now >= *retry_at);
    }
    /// Whether a file being filled still has steps no worker took (it is not shared yet, or its
    /// workers are busy): a worker that wants work should wait for it rather than start another.
    [[nodiscard]] bool job_with_steps_left() const noexcept
    {
        return std::any_of(jobs.begin(), jobs.end(), [](const auto& job) { return job->takes_steps(); });
    }
    /// Closes every file being filled to its workers: they leave it after their step.
    void close_jobs() noexcept
    {
        for (const auto& job : jobs)
            job->close();
    }
    /// Shows @p why in the state, and when it holds the refill, for how long.
    void hold(refill_hold why, int error, std::chrono::nanoseconds retry_period)
    {
        counters->record_hold(why, error);
        if (why != refill_hold::none)
            retry_at = deadline_after(retry_period);
    }
};

/// What the pool's lock guards.
struct pool_core {
    bool paused = false;
    std::map<hstate, reservoir_slot> slots; // every hstate of the machine; the set is fixed

    /// Whether every reservoir of @p listed holds its target.
    [[nodiscard]] bool filled(const std::vector<hstate>& listed) const
    {
        return std::all_of(listed.begin(), listed.end(), [&](const hstate& h) {
            const auto& slot = slots.at(h);
            return slot.files.ready_pages() >= slot.target_pages;
        });
    }
    /// Whether a reservoir of @p listed below its target is held (floor, no pages, failing)
    /// with no file being filled: it cannot get there before its retry time.
    [[nodiscard]] bool held(const std::vector<hstate>& listed) const
    {
        return std::any_of(listed.begin(), listed.end(), [&](const hstate& h) {
            const auto& slot = slots.at(h);
            return slot.files.ready_pages() < slot.target_pages && slot.jobs.empty()
                   && slot.counters->current_hold() != refill_hold::none;
        });
    }
};

/// What a pool shares with its workers and its leases. Leases keep it alive (they report their
/// release to it), so it may outlive the pool object.
struct pool_state final : lease_owner {
    std::map<hstate, std::unique_ptr<reservoir_counters>> counters; // every hstate; fixed
    guarded<pool_core> core;
    quiet_period quiet;
    std::atomic<bool> running{false}; // mirrors for lock-free statistics
    std::atomic<bool> paused{false};

    /// What the whole pool is doing, for statistics.
    [[nodiscard]] pool_activity activity() const noexcept
    {
        return {running.load(), paused.load(), quiet.active(pool_clock::now())};
    }

    void lease_closed(const hstate& which, std::uint64_t pages, bool pages_back) noexcept override
    {
        const auto it = counters.find(which);
        if (it == counters.end())
            return;
        it->second->leases_out.fetch_sub(1, std::memory_order_relaxed);
        it->second->leased_pages.fetch_sub(pages, std::memory_order_relaxed);
        if (!pages_back)
            return;
        // Pages just went back to the kernel: refills of the node held for want of free pages
        // may go on now.
        auto g = core.lock();
        for (auto& [h, slot] : g->slots) {
            const refill_hold hold = slot.counters->current_hold();
            if (h.node == which.node && (hold == refill_hold::floor || hold == refill_hold::no_pages)) {
                slot.retry_at.reset();
                slot.counters->hold.store(static_cast<int>(refill_hold::none), std::memory_order_relaxed);
            }
        }
    }
};

/// Everything the pool's rooms (refill workers, lease maker, facade) work with; the pool owns
/// it, and it outlives the workers.
struct pool_engine {
    pool_engine(machine machine_, pool_options options_)
        : m(std::move(machine_)), options(std::move(options_)), state(std::make_shared<pool_state>()),
          limiter(options.refill_bytes_per_second)
    {
    }

    machine m;
    pool_options options;
    std::shared_ptr<pool_state> state;
    std::map<hstate, std::unique_ptr<floor_gate>> floors; // every hstate; fixed
    rate_limiter limiter;

    /// The reservoirs of @p listed on @p node, largest pages first: a 1 GiB page saves a VM the
    /// most.
    [[nodiscard]] static std::vector<hstate> reservoirs_of(const std::vector<hstate>& listed, node_id node)
    {
        std::vector<hstate> mine;
        for (const hstate& h : listed)
            if (h.node == node)
                mine.push_back(h);
        std::sort(mine.begin(), mine.end(), [](const hstate& a, const hstate& b) { return a.size > b.size; });
        return mine;
    }
    /// One spec per refill worker: each node of @p listed gets its workers, pinned to its CPUs.
    /// Their memory is bound by the worker itself, through machine::files().
    [[nodiscard]] std::vector<worker_spec> worker_specs(const std::vector<hstate>& listed) const
    {
        std::vector<node_id> nodes;
        for (const hstate& h : listed)
            if (std::find(nodes.begin(), nodes.end(), h.node) == nodes.end())
                nodes.push_back(h.node);
        std::vector<worker_spec> specs;
        for (const node_id node : nodes) {
            thread_settings settings = settings_for_node(m, node, options.thread);
            settings.memory_node.reset();
            specs.insert(specs.end(), workers_for_node(m, node, options.workers_per_node), {node, settings});
        }
        return specs;
    }

    /// The pages one refill step asks for.
    [[nodiscard]] std::uint64_t step_pages(page_size page) const noexcept
    {
        return std::max<std::uint64_t>(1, options.batch_bytes / page.bytes());
    }
    /// Wakes workers waiting in a floor gate, so that they see a pause, a stop or a yield.
    void wake_floor_waiters() noexcept
    {
        for (auto& [h, gate] : floors)
            gate->wake();
    }
};

} // namespace hugezero::detail

#endif
