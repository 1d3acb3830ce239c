/// @file
/// @brief hugezero::pool: reservoirs of hugetlb memory allocated (hence zeroed) ahead of time
/// by pinned background workers, leased to VMs as fds. Works on every stock kernel.
#ifndef HUGEZERO_POOL_HPP
#define HUGEZERO_POOL_HPP

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <hugezero/acquire_options.hpp>
#include <hugezero/acquire_result.hpp>
#include <hugezero/detail/lock_rank.hpp>
#include <hugezero/detail/pool/lease_batch.hpp>
#include <hugezero/detail/pool/lease_maker.hpp>
#include <hugezero/detail/pool/pool_state.hpp>
#include <hugezero/detail/pool/recycler.hpp>
#include <hugezero/detail/pool/refill_worker.hpp>
#include <hugezero/detail/pool/target_change.hpp>
#include <hugezero/detail/worker_group.hpp>
#include <hugezero/hstate.hpp>
#include <hugezero/lease.hpp>
#include <hugezero/machine.hpp>
#include <hugezero/pool_options.hpp>
#include <hugezero/pool_statistics.hpp>
#include <hugezero/recycle_result.hpp>

namespace hugezero {

/// Reservoirs of hugetlb memory kept allocated, and so zeroed, ahead of time, leased to VMs as
/// one fd each: the stock-kernel way to take page zeroing off a VM's start (ABI.md §1, §4).
///
/// Per listed (node, page size), background workers pinned to the node's CPUs and bound to its
/// memory fill hugetlb files, the kernel allocating and zeroing every page in the worker,
/// charged to the worker's cgroup. The node's workers fill one file together, step by step
/// (page faults on one file run in parallel; fallocate()s would not). acquire() hands over a
/// ready file:
/// - one of exactly the size asked for: handed over as it is (microseconds);
/// - else the smallest larger one, trimmed to size (the excess pages go back to the kernel);
/// - else the largest smaller one (or the file being filled, which its workers leave after
///   their step), grown to size with the missing pages allocated on the spot, on the node, by
///   as many threads as QEMU's prealloc rule gives: they are counted as cold.
/// Pages never move between files. Every page of a lease was zeroed by the kernel when it was
/// allocated, or by the pool when the lease of a previous tenant was recycled (recycle()).
/// See docs/pool.md for the design.
///
/// Neither the refill nor an acquire() takes a node below its reservoir's floor of free pages.
/// The refill runs at most at the configured rate, can be paused, and is cancelled through
/// std::stop_token (stop(), the destructor) at its next step.
///
/// The pool runs on whatever hugetlb files its machine's backend has (machine::files()): the
/// real kernel's, or the simulated kernel's for a machine over a sim::backend.
///
/// @par Thread safety
/// Every member may be called from any thread; statistics() reads lock-free counters. A pool
/// must not be destroyed while another thread uses it; its leases may outlive it.
class pool {
public:
    /// A pool for @p m, not yet started (start() launches the workers; acquire() works either
    /// way).
    /// @throws std::invalid_argument naming the node and the size for a reservoir of an hstate
    /// the machine does not have, for an hstate listed twice, or for a zero batch size.
    explicit pool(const machine& m, pool_options options = {}) : e_(m, std::move(options))
    {
        if (e_.options.batch_bytes == 0)
            throw std::invalid_argument("hugezero: pool_options::batch_bytes must be at least one page, got 0");
        auto g = e_.state->core.lock();
        for (const hstate& h : m.topology().hstates()) {
            auto& counters = *e_.state->counters.emplace(h, std::make_unique<detail::reservoir_counters>(h)).first->second;
            g->slots.emplace(h, counters);
        }
        for (const reservoir_options& o : e_.options.reservoirs)
            list(*g, o);
        for (const hstate& h : m.topology().hstates())
            e_.floors.emplace(h, std::make_unique<detail::floor_gate>(e_.state->counters.at(h)->floor_pages.load()));
        std::sort(listed_.begin(), listed_.end());
    }

    pool(const pool&) = delete;
    pool& operator=(const pool&) = delete;

    /// Stops the workers (after their step in progress) and gives the reservoir's pages back
    /// to the kernel, but for a named reservoir's files, left for the next pool on its
    /// directory. Leases still out stay valid.
    ~pool()
    {
        stop();
        auto g = e_.state->core.lock();
        std::vector<detail::pool_file> files = g->take_every_file();
        g.unlock(); // `files` close outside the lock
        (void)e_.state->descriptions.take_all(); // the leases out keep their pages
    }

    /// Starts the refill workers. Returns once each has applied its thread settings, so
    /// setting_failures() is complete by then.
    /// @throws std::logic_error if already running; std::system_error if a thread cannot start.
    void start()
    {
        const std::lock_guard lock(control_);
        if (workers_.running())
            throw std::logic_error("hugezero: pool::start() called on a running pool");
        workers_.start(
            e_.worker_specs(listed_),
            [this](detail::worker_context& c) { detail::run_refill_worker(e_, workers_, c, e_.reservoirs_of(listed_, c.node())); },
            [this](node_id node, std::exception_ptr) { // never expected: count it, never terminate
                for (const hstate& h : e_.reservoirs_of(listed_, node))
                    e_.state->counters.at(h)->record_error(EIO);
            });
        const auto g = e_.state->core.lock(); // wait_filled() waiters look again
        e_.state->running.store(true);
    }

    /// Stops the workers, each after its step in progress, and waits for them. Files being
    /// filled join the reservoir with the pages they have. The reservoir stays and can still be
    /// leased. Does nothing if not running.
    void stop()
    {
        const std::lock_guard lock(control_);
        workers_.stop();
        const auto g = e_.state->core.lock(); // wait_filled() waiters look again
        e_.state->running.store(false);
    }

    /// Stops the refill and returns once no worker is allocating (each ends its step first:
    /// the CPUs are back). Workers stay idle until resume().
    void pause()
    {
        const std::lock_guard lock(control_);
        {
            auto g = e_.state->core.lock();
            g->paused = true;
            e_.state->paused.store(true);
        }
        e_.wake_floor_waiters();
        workers_.pause();
    }

    /// Lets the workers refill again.
    void resume()
    {
        const std::lock_guard lock(control_);
        workers_.resume();
        auto g = e_.state->core.lock();
        g->paused = false;
        e_.state->paused.store(false);
    }

    /// Whether start() was called without stop().
    [[nodiscard]] bool running() const noexcept { return e_.state->running.load(); }
    /// Whether paused.
    [[nodiscard]] bool paused() const noexcept { return e_.state->paused.load(); }
    /// The hstates with a reservoir, by node then size.
    [[nodiscard]] const std::vector<hstate>& hstates() const noexcept { return listed_; }

    /// Leases @p bytes (rounded up to whole pages) of @p size pages on @p node. See
    /// acquire(const hstate&, std::uint64_t, const acquire_options&).
    acquire_result acquire(node_id node, page_size size, std::uint64_t bytes, std::stop_token stop = {})
    {
        return acquire(hstate{node, size}, bytes, acquire_options{std::nullopt, std::move(stop)});
    }

    /// Leases @p bytes of @p h, with no limit on cold pages, @p stop cancelling their
    /// allocation. See acquire(const hstate&, std::uint64_t, const acquire_options&).
    acquire_result acquire(const hstate& h, std::uint64_t bytes, std::stop_token stop = {})
    {
        return acquire(h, bytes, acquire_options{std::nullopt, std::move(stop)});
    }

    /// Leases @p bytes (rounded up to whole pages) of @p h: one fd of exactly that size, every
    /// page allocated, zero and on the node.
    ///
    /// Takes the reservoir file that fits best (see the class description), and allocates on the
    /// spot, on the node (threads pinned to its CPUs, by QEMU's rule), the pages the reservoir
    /// did not have: lease::cold_pages() says how many. When a file fits, this takes
    /// microseconds. It fails before allocating any page with `EAGAIN` if more would be cold
    /// than acquire_options::max_cold_pages allows, and with `ENOSPC` if the node's free pages
    /// above the floor cannot cover them. acquire_options::stop cancels the allocation of cold
    /// pages between steps (`ECANCELED`).
    ///
    /// On an error nothing is kept: pages allocated for the lease go back to the kernel and a
    /// reservoir file that was taken goes back to the reservoir (or, if it cannot be cut back to
    /// its ready pages, to the kernel, counted in reservoir_statistics::errors).
    /// @return the lease, or an error value (see acquire_result).
    /// @throws std::invalid_argument if @p bytes is 0.
    acquire_result acquire(const hstate& h, std::uint64_t bytes, const acquire_options& options)
    {
        return detail::lease_maker::acquire(e_, h, bytes, options);
    }

    /// Leases one file per request, with @p options for each: a VM with several memory backends
    /// (one per node, or per DIMM). All or none: if one cannot be made, those already made go
    /// back to their reservoirs as they are (they never left the pool: their cold pages stay
    /// ready), and the result names the request that failed and why.
    /// @throws std::invalid_argument if a request is for 0 bytes.
    acquire_many_result acquire(std::span<const lease_request> requests, const acquire_options& options = {})
    {
        return detail::lease_all(e_, requests, options);
    }

    /// Gives @p l back for reuse (it is left closed), if its reservoir recycles
    /// (reservoir_options::recycle: off by default). Once the pool's own description of the
    /// file is the last reference to it - no copy of the lease's fd, no mapping, no fd in flight
    /// in a socket, in any process: the kernel tells (a write lease, `F_SETLEASE`) and /proc is
    /// searched - and the file is still exactly the lease's pages (not resized, holed or linked
    /// elsewhere), a refill worker of the node scrubs the file (zeros from user space, paced,
    /// pausable and cancellable like a refill) and it joins the reservoir, cut to the room it
    /// has. While something still refers to the file, the pool looks again every retry period
    /// (`deferred`). Otherwise - recycling off, no reservoir for the lease's hstate, no room, a
    /// file out of shape - the file is emptied at once, as retire() does; the result says why.
    ///
    /// Recycling hands one tenant's pages to the next, so it is only as safe as that proof,
    /// which a tenant that wants to keep a way back in can defeat (a descriptor in flight in a
    /// socket it keeps, pages it spliced into a pipe): recycle only the leases of tenants you
    /// trust. See docs/pool.md, "Recycling".
    /// @throws hugezero::closed_handle_error if @p l is closed; std::invalid_argument if this
    /// pool did not make it.
    recycle_result recycle(lease&& l) { return detail::recycler::take_back(e_, l, true); }

    /// Takes @p l back without recycling it (it is left closed): its file is emptied at once -
    /// its pages go back to the kernel, which zeroes them before anyone gets them; a mapping
    /// left gets `SIGBUS`, a descriptor kept sees an empty file - and a named file is removed.
    /// What a lease given back by a tenant you do not trust must get. Returns
    /// recycle_status::emptied.
    /// @throws hugezero::closed_handle_error if @p l is closed; std::invalid_argument if this
    /// pool did not make it.
    recycle_result retire(lease&& l) { return detail::recycler::take_back(e_, l, false); }

    /// Changes the target of @p h's reservoir. A lower target gives ready pages back to the
    /// kernel at once (whole files, then the excess of one file, counted as trimmed); a higher
    /// one wakes the refill.
    /// A file that cannot be cut stays whole (counted in reservoir_statistics::errors).
    /// @throws std::invalid_argument if the pool has no reservoir for @p h.
    void set_target(const hstate& h, std::uint64_t target_bytes);

    /// Changes the floor of @p h's reservoir (reservoir_options::floor_pages) for the refill
    /// steps and acquires from now on; a refill held by the old floor looks again at once.
    /// @throws std::invalid_argument if the pool has no reservoir for @p h.
    void set_floor(const hstate& h, std::uint64_t floor_pages) { detail::change_floor(e_, h, floor_pages); }

    /// Changes pool_options::refill_bytes_per_second (0: no limit); a step waiting for its turn
    /// under the old rate asks again.
    void set_refill_rate(std::uint64_t bytes_per_second)
    {
        e_.limiter.set_rate(bytes_per_second);
        (void)e_.state->core.lock(); // announced on unlock: waiting steps look again
    }

    /// Waits up to @p timeout (0: just check; negative: forever) until every reservoir holds
    /// its target. Returns whether that happened; returns false at once when the refill cannot
    /// get there: not running, paused, or a reservoir held (floor, no free pages, failing).
    bool wait_filled(std::chrono::nanoseconds timeout)
    {
        auto g = e_.state->core.observe();
        (void)g.wait_for(timeout, [&] { return g->filled(listed_) || !running() || g->paused || g->held(listed_); });
        return g->filled(listed_);
    }

    /// A snapshot of @p h's reservoir (any hstate of the machine; one without a reservoir
    /// shows only its leases). Lock-free.
    /// @throws std::invalid_argument if the machine has no such hstate.
    [[nodiscard]] reservoir_statistics statistics(const hstate& h) const
    {
        (void)e_.m.topology().info(h); // throws the explanatory std::invalid_argument
        return detail::snapshot(*e_.state->counters.at(h), e_.state->activity());
    }

    /// Snapshots of every reservoir, then of every other hstate that served leases, by node
    /// then size.
    [[nodiscard]] std::vector<reservoir_statistics> statistics() const
    {
        std::vector<reservoir_statistics> out;
        for (const auto& [h, c] : e_.state->counters)
            if (c->listed || c->leases_served.load(std::memory_order_relaxed) != 0)
                out.push_back(detail::snapshot(*c, e_.state->activity()));
        return out;
    }

    /// The worker settings that could not be applied (each once per worker). A worker that
    /// could not bind its memory to its node does not refill (its pages could land elsewhere).
    [[nodiscard]] std::vector<setting_failure> setting_failures() const { return workers_.setting_failures(); }

private:
    void list(detail::pool_core& core, const reservoir_options& o)
    {
        (void)e_.m.topology().info(o.which); // names the node and the size
        detail::reservoir_counters& c = *e_.state->counters.at(o.which);
        if (c.listed)
            throw std::invalid_argument("hugezero: pool_options lists the reservoir " + to_string(o.which) + " twice");
        c.listed = true;
        c.recycle = o.recycle;
        detail::reservoir_slot& slot = core.slots.at(o.which);
        slot.target_pages = pages_for(o.target_bytes, o.which.size);
        slot.chunk_follows_leases = o.chunk_bytes == 0;
        slot.chunk_pages = pages_for(o.chunk_bytes, o.which.size);
        slot.follow_leases();
        c.floor_pages.store(o.floor_pages);
        c.target_pages.store(slot.target_pages);
        e_.place(slot, o); // its cgroup, its directory
        listed_.push_back(o.which);
    }

    static std::uint64_t pages_for(std::uint64_t bytes, page_size page) noexcept
    {
        return bytes / page.bytes() + (bytes % page.bytes() != 0 ? 1 : 0);
    }

    detail::pool_engine e_;
    std::vector<hstate> listed_;
    detail::ranked_mutex<> control_{detail::lock_rank::control, "a pool's control"};
    // Last: the workers stop and join before the engine they use goes.
    detail::worker_group workers_;
};

inline void pool::set_target(const hstate& h, std::uint64_t target_bytes)
{
    detail::change_target(e_, h, pages_for(target_bytes, h.size));
}

} // namespace hugezero

#endif
