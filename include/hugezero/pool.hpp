/// @file
/// @brief hugezero::pool: reservoirs of hugetlb memory allocated (hence zeroed) ahead of time
/// by pinned background workers, leased to VMs as fds. Works on every stock kernel.
#ifndef HUGEZERO_POOL_HPP
#define HUGEZERO_POOL_HPP

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <latch>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <ostream>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include <hugezero/detail/bytes_text.hpp>
#include <hugezero/detail/hugetlb_file.hpp>
#include <hugezero/detail/interrupter.hpp>
#include <hugezero/detail/pool_state.hpp>
#include <hugezero/error.hpp>
#include <hugezero/hstate.hpp>
#include <hugezero/lease.hpp>
#include <hugezero/machine.hpp>
#include <hugezero/thread_settings.hpp>

namespace hugezero {

/// What one reservoir (one node and page size) keeps ready.
struct reservoir_options {
    /// The node and page size.
    hstate which{node_id(0), page_2mib};
    /// How much memory to keep allocated and zeroed, in bytes, rounded up to whole pages.
    std::uint64_t target_bytes = 0;
    /// The size of each reservoir file, rounded up to whole pages; 0 means target_bytes (one
    /// file holds the whole reservoir).
    ///
    /// A lease is one file, and pages cannot move between files: a lease is served warm only up
    /// to the size of the largest ready file. Set it to the size of the VMs you start (a lease
    /// of exactly a file's size is a hand-over of microseconds) or leave it at the target (any
    /// lease up to the target is warm; a smaller one gives the excess pages back to the kernel).
    /// Smaller files let several workers refill one reservoir in parallel.
    std::uint64_t chunk_bytes = 0;
    /// Free huge pages of this size the refill always leaves on the node, for everyone else.
    std::uint64_t floor_pages = 0;
};

/// How a pool runs.
struct pool_options {
    /// The reservoirs to keep filled; each hstate at most once. Hstates not listed can still be
    /// leased: every page is then allocated on the spot (cold).
    std::vector<reservoir_options> reservoirs;
    /// Refill workers per node with a listed reservoir; 0 means one per CPU of the node.
    /// Workers fill different files, so they work in parallel.
    unsigned workers_per_node = 1;
    /// The most the whole pool refills per second, in bytes; 0 means no limit.
    std::uint64_t refill_bytes_per_second = 0;
    /// The most one fallocate() asks for, rounded down to whole pages (at least one). The floor
    /// and the rate limit are applied per batch; cancellation does not wait for it (a signal
    /// ends the call at the next page). Default 64 MiB.
    std::uint64_t batch_bytes = std::uint64_t{64} << 20;
    /// The signal that interrupts a worker's fallocate() (stop, pause, a lease that wants the
    /// file). See zeroing_options::cancel_signal: hugezero installs a no-op handler only if
    /// the signal has its default disposition, and otherwise refuses with `EBUSY`.
    int cancel_signal = SIGURG;
    /// Worker placement and charging. Without `cpus`, workers are pinned to their node's CPUs;
    /// `memory_node` is always the worker's node (that is what puts the pages there).
    thread_settings thread;
    /// How long a refill that was held (floor, no free pages, an error) waits before it looks
    /// again. Releasing a lease on the node ends the wait at once.
    std::chrono::nanoseconds retry_period = std::chrono::milliseconds(500);
    /// After each acquire(), the whole pool refills nothing for this long (fallocate()s in
    /// progress end at their next page): the VM that took the lease is starting, and a refill
    /// running meanwhile slows its start down a lot, not only through memory bandwidth: while
    /// it zeroes a page, fallocate() holds one of the kernel's few global hugetlb fault mutexes,
    /// which the VM's own page faults and populate() need too (measured here: populating a 512
    /// MiB lease took 0.3 ms with the pool quiet, 3-40 ms with a refill running). 0 disables it.
    std::chrono::nanoseconds quiet_after_lease = std::chrono::milliseconds(500);
};

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
    std::chrono::nanoseconds refill_time{0};        ///< Time workers spent in fallocate(), summed over workers.
    std::uint64_t refills_interrupted = 0;          ///< fallocate()s cut short (stop, pause, a lease).
    std::uint64_t floor_holds = 0;                  ///< Times the refill stopped at the floor.
    std::uint64_t out_of_pages = 0;                 ///< Times the kernel had no free page (`ENOSPC`).
    std::uint64_t errors = 0;                       ///< Other failures.
    std::error_code last_error;                     ///< The last failure's errno, if any.

    /// The reservoir level in bytes.
    [[nodiscard]] std::uint64_t ready_bytes() const noexcept { return ready_pages * which.size.bytes(); }
    /// The refill rate of one worker while it refills: bytes per second of worker time in
    /// fallocate() (0 before any refill). Workers refilling in parallel add up to more.
    [[nodiscard]] double refill_bytes_per_second() const noexcept
    {
        const double seconds = std::chrono::duration<double>(refill_time).count();
        return seconds > 0 ? static_cast<double>(refill_pages * which.size.bytes()) / seconds : 0.0;
    }

    /// Prints e.g. `node0/2MiB at target: 128/128 pages ready in 1 file, 0 filling, floor 0;
    /// 1 lease out (128 pages); served 2 leases (256 warm, 0 cold, 0 trimmed); refilled 384
    /// pages (0 interrupted, 0 floor holds, 0 out of pages, 0 errors)`.
    friend std::ostream& operator<<(std::ostream& out, const reservoir_statistics& s)
    {
        out << s.which << ' ' << s.state << ": " << s.ready_pages << '/' << s.target_pages << " pages ready in "
            << s.ready_files << (s.ready_files == 1 ? " file, " : " files, ") << s.filling_pages << " filling, floor "
            << s.floor_pages << "; " << s.leases_out << (s.leases_out == 1 ? " lease" : " leases") << " out ("
            << s.leased_pages << " pages); served " << s.leases_served << (s.leases_served == 1 ? " lease" : " leases")
            << " (" << s.warm_pages_served << " warm, " << s.cold_pages_served << " cold, " << s.trimmed_pages
            << " trimmed); refilled " << s.refill_pages << " pages (" << s.refills_interrupted << " interrupted, "
            << s.floor_holds << " floor holds, " << s.out_of_pages << " out of pages, " << s.errors << " errors)";
        if (s.last_error)
            out << ", last error: " << s.last_error.message();
        return out;
    }
};

/// The outcome of pool::acquire(): a lease, or why there is none.
///
/// The errors are outcomes a caller can act on (wait and retry, lease elsewhere, start the VM
/// smaller); the message names the node, the page size and the size asked for:
/// - `ENOSPC`: not enough free huge pages of that size on that node;
/// - `EPERM`, `EACCES`: not allowed to allocate them;
/// - `ENODEV`: the machine has no such node, or the node no such page size;
/// - `ECANCELED`: the stop token was triggered while pages were being allocated;
/// - anything else the kernel reported (`EMFILE`, `ENOMEM`, ...).
struct acquire_result {
    hugezero::lease lease;   ///< The lease; closed when there is an error.
    std::error_code error;   ///< Empty on success.
    std::string message;     ///< Empty on success; else a sentence naming node, size and cause.

    /// Whether a lease was made.
    explicit operator bool() const noexcept { return !error; }

    /// Prints the lease, or the message.
    friend std::ostream& operator<<(std::ostream& out, const acquire_result& r)
    {
        if (r.error)
            return out << r.message;
        return out << r.lease;
    }
};

/// Reservoirs of hugetlb memory kept allocated, and so zeroed, ahead of time, leased to VMs as
/// one fd each: the stock-kernel way to take page zeroing off a VM's start (ABI.md §1, §4).
///
/// Per listed (node, page size), background workers pinned to the node's CPUs and bound to its
/// memory fill hugetlb memfds with fallocate(), which has the kernel allocate and zero every
/// page in the worker, charged to the worker's cgroup. acquire() hands over such a file:
/// - a ready file of exactly the size asked for: handed over as it is (microseconds);
/// - else the smallest larger one, trimmed to size (the excess pages go back to the kernel);
/// - else the largest smaller one (or a file still being filled, which its worker yields at
///   its next page), grown to size with the missing pages allocated on the spot, in the
///   caller, on the node: they are counted as cold.
/// Pages never move between files and the pool never writes to them: every page of a lease
/// was zeroed by the kernel when it was allocated. See docs/pool.md for the design.
///
/// The refill never takes a node below its reservoir's floor of free pages, runs at most at
/// the configured rate, can be paused, and is cancelled through std::stop_token (stop(), the
/// destructor): a fallocate() in progress is interrupted at the next page.
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
    /// @throws std::system_error (`EBUSY`) if the application owns `cancel_signal`.
    explicit pool(const machine& m, pool_options options = {})
        : machine_(m), options_(std::move(options)), state_(std::make_shared<detail::pool_state>())
    {
        if (options_.batch_bytes == 0)
            throw std::invalid_argument("hugezero: pool_options::batch_bytes must be at least one page, got 0");
        for (const hstate& h : machine_.topology().hstates())
            state_->reservoirs.emplace(h, std::make_unique<detail::reservoir>(h));
        for (const reservoir_options& o : options_.reservoirs) {
            (void)machine_.topology().info(o.which); // names the node and the size
            detail::reservoir& r = *state_->reservoirs.at(o.which);
            if (r.listed)
                throw std::invalid_argument("hugezero: pool_options lists the reservoir " + to_string(o.which) + " twice");
            r.listed = true;
            r.floor_pages = o.floor_pages;
            r.target_pages = pages_for(o.target_bytes, o.which.size);
            r.chunk_follows_target = o.chunk_bytes == 0;
            r.chunk_pages = r.chunk_follows_target ? r.target_pages : pages_for(o.chunk_bytes, o.which.size);
            r.counters.floor_pages.store(r.floor_pages);
            r.counters.target_pages.store(r.target_pages);
            listed_.push_back(o.which);
            if (std::find(nodes_.begin(), nodes_.end(), o.which.node) == nodes_.end())
                nodes_.push_back(o.which.node);
        }
        std::sort(listed_.begin(), listed_.end());
        std::sort(nodes_.begin(), nodes_.end());
        detail::install_cancel_handler(options_.cancel_signal);
    }

    pool(const pool&) = delete;
    pool& operator=(const pool&) = delete;

    /// Stops the workers (interrupting fallocate()s in progress) and gives the reservoir's
    /// pages back to the kernel. Leases still out stay valid.
    ~pool()
    {
        stop();
        std::vector<detail::pool_file> files;
        {
            const std::lock_guard lock(state_->mutex);
            for (auto& [h, r] : state_->reservoirs) {
                for (auto& f : r->idle)
                    files.push_back(std::move(f));
                r->idle.clear();
                r->ready_pages = 0;
                r->publish_ready();
            }
        }
    }

    /// Starts the refill workers. Returns once each has applied its thread settings, so
    /// setting_failures() is complete by then.
    /// @throws std::logic_error if already running; std::system_error if a thread cannot start.
    void start()
    {
        const std::lock_guard lock(control_);
        if (state_->running.load())
            throw std::logic_error("hugezero: pool::start() called on a running pool");
        std::vector<node_id> worker_nodes;
        for (const node_id node : nodes_) {
            const std::size_t cpus = machine_.topology().node(node).cpus.count();
            const std::size_t count
                = options_.workers_per_node != 0 ? options_.workers_per_node : std::max<std::size_t>(1, cpus);
            worker_nodes.insert(worker_nodes.end(), count, node);
        }
        std::latch ready(static_cast<std::ptrdiff_t>(worker_nodes.size()));
        std::size_t started = 0;
        try {
            for (const node_id node : worker_nodes) {
                workers_.emplace_back([this, node, &ready](std::stop_token stop) { run_worker(stop, node, ready); });
                ++started;
            }
        } catch (...) {
            ready.count_down(static_cast<std::ptrdiff_t>(worker_nodes.size() - started));
            ready.wait();
            workers_.clear();
            throw;
        }
        ready.wait();
        state_->running.store(true);
    }

    /// Stops the workers, interrupting fallocate()s in progress (each ends at its next page),
    /// and waits for them. Files being filled join the reservoir with the pages they have.
    /// The reservoir stays and can still be leased. Does nothing if not running.
    void stop()
    {
        const std::lock_guard lock(control_);
        if (!state_->running.load())
            return;
        for (auto& w : workers_)
            w.request_stop();
        workers_.clear();
        state_->running.store(false);
        state_->changed();
    }

    /// Interrupts fallocate()s in progress and keeps the workers idle until resume().
    void pause()
    {
        {
            const std::lock_guard lock(state_->mutex);
            state_->paused.store(true);
            for (const auto& i : state_->worker_interrupters)
                i->request();
            ++state_->epoch;
        }
        state_->cv.notify_all();
        state_->wake_floor_waiters();
    }

    /// Lets the workers refill again.
    void resume()
    {
        {
            const std::lock_guard lock(state_->mutex);
            state_->paused.store(false);
            ++state_->epoch;
        }
        state_->cv.notify_all();
    }

    /// Whether start() was called without stop().
    [[nodiscard]] bool running() const noexcept { return state_->running.load(); }
    /// Whether paused.
    [[nodiscard]] bool paused() const noexcept { return state_->paused.load(); }
    /// The hstates with a reservoir, by node then size.
    [[nodiscard]] const std::vector<hstate>& hstates() const noexcept { return listed_; }

    /// Leases @p bytes (rounded up to whole pages) of @p size pages on @p node. See
    /// acquire(const hstate&, std::uint64_t, std::stop_token).
    acquire_result acquire(node_id node, page_size size, std::uint64_t bytes, std::stop_token stop = {})
    {
        return acquire(hstate{node, size}, bytes, std::move(stop));
    }

    /// Leases @p bytes (rounded up to whole pages) of @p h: one fd of exactly that size, every
    /// page allocated, zero and on the node.
    ///
    /// Takes the reservoir file that fits best (see the class description), and allocates on the
    /// spot, in the calling thread (bound to the node's memory for the call), the pages the
    /// reservoir did not have: lease::cold_pages() says how many. When a file fits, this takes
    /// microseconds. @p stop cancels the allocation of cold pages (`ECANCELED`); the calling
    /// thread then briefly gets the pool's cancel signal unblocked.
    ///
    /// On an error nothing is kept: pages allocated for the lease go back to the kernel and a
    /// reservoir file that was taken goes back to the reservoir.
    /// @return the lease, or an error value (see acquire_result).
    /// @throws std::invalid_argument if @p bytes is 0.
    /// @throws std::system_error if @p stop can be triggered and the cancel signal cannot be
    /// set up for this thread.
    acquire_result acquire(const hstate& h, std::uint64_t bytes, std::stop_token stop = {})
    {
        if (bytes == 0)
            throw std::invalid_argument("hugezero: cannot lease 0 bytes of " + to_string(h) + " huge pages");
        const auto what = [&] {
            return "hugezero: cannot lease " + detail::bytes_text(bytes) + " of " + to_string(h) + " huge pages: ";
        };
        try {
            (void)machine_.topology().info(h);
        } catch (const std::invalid_argument& e) {
            std::string reason = e.what();
            reason.erase(0, std::string_view("hugezero: ").size());
            return failure(ENODEV, what() + reason);
        }
        detail::reservoir& r = *state_->reservoirs.at(h);
        const page_size page = h.size;
        const std::uint64_t pages = bytes / page.bytes() + (bytes % page.bytes() != 0 ? 1 : 0);

        bool holding_refill = false;
        detail::pool_file file = take_for_lease(r, pages, holding_refill);
        const std::uint64_t ready = file.pages;
        struct refill_hold_guard {
            pool* self;
            detail::reservoir* r;
            ~refill_hold_guard()
            {
                if (r != nullptr)
                    self->end_cold(*r);
            }
        } const hold_guard{this, holding_refill ? &r : nullptr};
        std::uint64_t trimmed = 0;
        if (file.pages > pages) {
            if (const int error = detail::resize_file(file.fd.get(), page, pages); error != 0) {
                return_to_reservoir(r, std::move(file)); // unchanged: still ready
                return failure(error, what() + "trimming a reservoir file to the lease's size failed");
            }
            trimmed = file.pages - pages;
            file.pages = pages;
        }
        std::uint64_t cold = 0;
        if (file.pages < pages) {
            if (!file.fd) {
                int error = 0;
                file.fd = detail::create_hugetlb_memfd(memfd_name(h), page, error);
                if (!file.fd)
                    return failure(error, what() + "memfd_create failed" + permission_hint(error));
            }
            const std::uint64_t had = file.pages;
            const cold_outcome outcome = allocate_cold(file, h, pages, stop);
            if (outcome.error != 0) {
                const std::uint64_t got = file.pages - had;
                // Give back what was allocated for this lease (closing a file of its own frees
                // it); a reservoir file goes back to the reservoir, cut back to its ready pages,
                // or whole if it cannot be cut: every page in it is zero and was never mapped.
                if (had > 0) {
                    if (detail::resize_file(file.fd.get(), page, had) == 0)
                        file.pages = had;
                    return_to_reservoir(r, std::move(file));
                }
                return failure(outcome.error, what() + cold_failure_reason(outcome, ready, pages - had, got, h));
            }
            cold = pages - had;
        }

        auto& c = r.counters;
        constexpr auto relaxed = std::memory_order_relaxed;
        c.leases_served.fetch_add(1, relaxed);
        c.leases_out.fetch_add(1, relaxed);
        c.leased_pages.fetch_add(pages, relaxed);
        c.warm_pages_served.fetch_add(pages - cold, relaxed);
        c.cold_pages_served.fetch_add(cold, relaxed);
        c.trimmed_pages.fetch_add(trimmed, relaxed);
        acquire_result result;
        result.lease = detail::lease_access::make(std::move(file.fd), h, pages, cold, state_);
        return result;
    }

    /// Changes the target of @p h's reservoir. A lower target gives ready pages back to the
    /// kernel at once (whole files, then the excess of one file); a higher one wakes the refill.
    /// @throws std::invalid_argument if the pool has no reservoir for @p h.
    void set_target(const hstate& h, std::uint64_t target_bytes)
    {
        detail::reservoir& r = listed(h);
        std::vector<detail::pool_file> surplus;
        std::optional<detail::pool_file> to_trim;
        std::uint64_t trim_to = 0;
        {
            const std::lock_guard lock(state_->mutex);
            r.target_pages = pages_for(target_bytes, h.size);
            r.counters.target_pages.store(r.target_pages);
            if (r.chunk_follows_target)
                r.chunk_pages = r.target_pages;
            r.retry_at.reset();
            // Whole files first, smallest first (large files serve large leases), then the
            // excess of the smallest file left.
            shed_whole_files(r, surplus);
            if (r.ready_pages > r.target_pages) {
                std::size_t smallest = 0;
                for (std::size_t i = 1; i < r.idle.size(); ++i)
                    if (r.idle[i].pages < r.idle[smallest].pages)
                        smallest = i;
                trim_to = r.idle[smallest].pages - (r.ready_pages - r.target_pages);
                to_trim = r.take_idle(smallest);
            }
            ++state_->epoch;
        }
        if (to_trim) {
            if (detail::resize_file(to_trim->fd.get(), h.size, trim_to) == 0) {
                to_trim->pages = trim_to;
                return_to_reservoir(r, std::move(*to_trim));
            }
        }
        state_->cv.notify_all();
    }

    /// Waits up to @p timeout (0: just check; negative: forever) until every reservoir holds
    /// its target. Returns whether that happened; false also while the refill is held (floor,
    /// no free pages) or stopped.
    bool wait_filled(std::chrono::nanoseconds timeout)
    {
        std::unique_lock lock(state_->mutex);
        const auto filled = [this] {
            for (const hstate& h : listed_) {
                const detail::reservoir& r = *state_->reservoirs.at(h);
                if (r.ready_pages < r.target_pages)
                    return false;
            }
            return true;
        };
        if (timeout < std::chrono::nanoseconds::zero()) {
            state_->cv.wait(lock, filled);
            return true;
        }
        return state_->cv.wait_until(lock, detail::pool_clock::now() + timeout, filled);
    }

    /// A snapshot of @p h's reservoir (any hstate of the machine; one without a reservoir
    /// shows only its leases). Lock-free.
    /// @throws std::invalid_argument if the machine has no such hstate.
    [[nodiscard]] reservoir_statistics statistics(const hstate& h) const
    {
        const auto it = state_->reservoirs.find(h);
        if (it == state_->reservoirs.end())
            (void)machine_.topology().info(h); // throws the explanatory std::invalid_argument
        return snapshot(*state_->reservoirs.at(h));
    }

    /// Snapshots of every reservoir, then of every other hstate that served leases, by node
    /// then size.
    [[nodiscard]] std::vector<reservoir_statistics> statistics() const
    {
        std::vector<reservoir_statistics> out;
        for (const auto& [h, r] : state_->reservoirs)
            if (r->listed || r->counters.leases_served.load(std::memory_order_relaxed) != 0)
                out.push_back(snapshot(*r));
        return out;
    }

    /// The worker settings that could not be applied (each once per worker). A worker that
    /// could not bind its memory to its node does not refill (its pages could land elsewhere).
    [[nodiscard]] std::vector<setting_failure> setting_failures() const
    {
        const std::lock_guard lock(failures_mutex_);
        return setting_failures_;
    }

private:
    static std::uint64_t pages_for(std::uint64_t bytes, page_size page) noexcept
    {
        return bytes / page.bytes() + (bytes % page.bytes() != 0 ? 1 : 0);
    }

    static std::string memfd_name(const hstate& h)
    {
        return "hugezero-node" + std::to_string(h.node.value()) + "-" + to_string(h.size);
    }

    static std::string permission_hint(int error)
    {
        if (error == EPERM || error == EACCES)
            return " (not allowed: check seccomp filters and security modules)";
        return {};
    }

    // How a cold allocation ended: 0 or an errno, and the call that failed.
    struct cold_outcome {
        int error = 0;
        const char* call = "fallocate";
    };

    static acquire_result failure(int error, std::string message)
    {
        acquire_result result;
        result.error = std::error_code(error, std::system_category());
        result.message = std::move(message) + ": " + result.error.message();
        return result;
    }

    static std::string cold_failure_reason(const cold_outcome& outcome, std::uint64_t ready, std::uint64_t missing,
                                           std::uint64_t got, const hstate& h)
    {
        const std::string counts = "the reservoir had " + std::to_string(ready) + " pages ready, and "
                                   + std::to_string(got) + " of the " + std::to_string(missing)
                                   + " more pages needed could be allocated";
        const int error = outcome.error;
        if (error == ENOSPC)
            return "not enough free " + to_string(h.size) + " huge pages on " + to_string(h.node)
                   + " (or a hugetlb cgroup limit reached): " + counts;
        if (error == ECANCELED)
            return "cancelled while allocating pages the reservoir did not have (" + counts + ")";
        return std::string(outcome.call) + " failed" + permission_hint(error) + " (" + counts + ")";
    }

    static std::string to_string(node_id node) { return "node" + std::to_string(node.value()); }
    static std::string to_string(page_size size) { return hugezero::to_string(size); }
    static std::string to_string(const hstate& h) { return hugezero::to_string(h); }

    detail::reservoir& listed(const hstate& h) const
    {
        const auto it = state_->reservoirs.find(h);
        if (it == state_->reservoirs.end() || !it->second->listed)
            throw std::invalid_argument("hugezero: the pool has no reservoir for " + to_string(h));
        return *it->second;
    }

    reservoir_statistics snapshot(const detail::reservoir& r) const
    {
        constexpr auto relaxed = std::memory_order_relaxed;
        const auto& c = r.counters;
        reservoir_statistics s;
        s.which = r.which;
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
        s.errors = c.errors.load(relaxed);
        if (const int error = c.last_error.load(relaxed))
            s.last_error = std::error_code(error, std::system_category());
        const auto hold = static_cast<detail::refill_hold>(c.hold.load(relaxed));
        if (!state_->running.load(relaxed) || !r.listed)
            s.state = reservoir_state::stopped;
        else if (state_->paused.load(relaxed))
            s.state = reservoir_state::paused;
        else if (s.ready_pages >= s.target_pages)
            s.state = reservoir_state::at_target;
        else if (detail::pool_clock::now().time_since_epoch().count() < state_->quiet_until_ns.load(relaxed))
            s.state = reservoir_state::quiet;
        else if (hold == detail::refill_hold::floor)
            s.state = reservoir_state::held_by_floor;
        else if (hold == detail::refill_hold::no_pages)
            s.state = reservoir_state::out_of_pages;
        else if (hold == detail::refill_hold::error)
            s.state = reservoir_state::failing;
        else
            s.state = reservoir_state::filling;
        return s;
    }

    // --- acquire ---------------------------------------------------------------------------

    // The reservoir file that best serves a lease of `pages` pages, taken out of the reservoir
    // (or an empty one). Every worker yields the file it is filling (at its next page; the file
    // joins its reservoir) and the pool goes quiet for quiet_after_lease. If the best file is
    // short of `pages`, the caller allocates the rest cold: then this waits for the reservoir's
    // own workers to yield (their files may be the best), and the reservoir starts nothing new
    // until end_cold(): a VM waiting for pages comes before the reservoir, for free pages and
    // for bandwidth. Sets `holding_refill` when the caller must call end_cold().
    detail::pool_file take_for_lease(detail::reservoir& r, std::uint64_t pages, bool& holding_refill)
    {
        std::unique_lock lock(state_->mutex);
        std::size_t best = r.best_idle(pages);
        const bool short_of_pages = best == r.idle.size() || r.idle[best].pages < pages;
        const bool quiet = options_.quiet_after_lease > std::chrono::nanoseconds::zero();
        if (quiet) {
            state_->quiet_until = std::max(state_->quiet_until, detail::pool_clock::now() + options_.quiet_after_lease);
            state_->quiet_until_ns.store(state_->quiet_until.time_since_epoch().count());
        }
        std::vector<std::uint64_t> yielding; // the jobs of `r` to wait for
        bool yields = false;
        for (auto& [h, other] : state_->reservoirs) {
            const bool mine = other.get() == &r;
            if (!quiet && !(mine && short_of_pages))
                continue;
            for (detail::fill_job* job : other->filling) {
                job->yield_requested.store(true);
                job->interrupt->request();
                yields = true;
                if (mine && short_of_pages)
                    yielding.push_back(job->id);
            }
        }
        if (yields)
            state_->wake_floor_waiters(); // lock order: the pool mutex, then a floor mutex
        if (short_of_pages) {
            ++r.cold_allocations;
            holding_refill = true;
            if (!yielding.empty()) {
                ++state_->epoch;
                state_->cv.notify_all(); // workers waiting on the rate limit
                state_->cv.wait_until(lock, detail::pool_clock::now() + yield_timeout, [&] {
                    return std::none_of(yielding.begin(), yielding.end(), [&](std::uint64_t id) { return r.job_registered(id); });
                });
                best = r.best_idle(pages);
            }
        }
        ++state_->epoch;
        if (best == r.idle.size()) {
            lock.unlock();
            state_->cv.notify_all();
            return {};
        }
        detail::pool_file file = r.take_idle(best);
        lock.unlock();
        state_->cv.notify_all(); // workers waiting on the rate limit see their yield
        return file;
    }

    // The cold allocation that take_for_lease() announced is over: the refill may go on, after
    // the quiet period, counted from now.
    void end_cold(detail::reservoir& r)
    {
        {
            const std::lock_guard lock(state_->mutex);
            --r.cold_allocations;
            if (options_.quiet_after_lease > std::chrono::nanoseconds::zero()) {
                state_->quiet_until
                    = std::max(state_->quiet_until, detail::pool_clock::now() + options_.quiet_after_lease);
                state_->quiet_until_ns.store(state_->quiet_until.time_since_epoch().count());
            }
            ++state_->epoch;
        }
        state_->cv.notify_all();
    }

    void return_to_reservoir(detail::reservoir& r, detail::pool_file file)
    {
        std::vector<detail::pool_file> surplus;
        {
            const std::lock_guard lock(state_->mutex);
            r.add_idle(std::move(file));
            shed_whole_files(r, surplus);
            ++state_->epoch;
        }
        state_->cv.notify_all();
    }

    // Above target (the target was lowered, or a file came back while workers refilled): moves
    // whole idle files, smallest first, to `surplus` while the rest still meets the target.
    // Call under the pool mutex; close `surplus` after unlocking.
    static void shed_whole_files(detail::reservoir& r, std::vector<detail::pool_file>& surplus)
    {
        while (r.ready_pages > r.target_pages) {
            std::size_t smallest = r.idle.size();
            for (std::size_t i = 0; i < r.idle.size(); ++i)
                if (smallest == r.idle.size() || r.idle[i].pages < r.idle[smallest].pages)
                    smallest = i;
            if (smallest == r.idle.size() || r.ready_pages - r.idle[smallest].pages < r.target_pages)
                return;
            surplus.push_back(r.take_idle(smallest));
        }
    }

    // Allocates the pages [file.pages, pages) in the calling thread, bound to the node.
    // Updates file.pages to what the file holds; returns the errno (0) and the call that failed.
    cold_outcome allocate_cold(detail::pool_file& file, const hstate& h, std::uint64_t pages, const std::stop_token& stop)
    {
        const detail::scoped_memory_binding binding(h.node);
        if (binding.error() != 0)
            return {binding.error(), "binding the thread's memory to the node (set_mempolicy)"};
        std::shared_ptr<detail::interrupter> interrupt;
        if (stop.stop_possible()) {
            interrupt = detail::thread_interrupter(options_.cancel_signal);
            interrupt->reset(); // a request left over from an earlier call in this thread
        }
        const std::stop_callback on_stop(stop, [&interrupt]() noexcept {
            if (interrupt)
                interrupt->request();
        });
        for (;;) {
            if (stop.stop_requested() || (interrupt && !interrupt->begin_call()))
                return {ECANCELED};
            const int error = detail::allocate_pages(file.fd.get(), h.size, file.pages, pages - file.pages);
            if (interrupt)
                interrupt->end_call();
            const std::uint64_t present = std::min(pages, detail::pages_in_file(file.fd.get(), h.size).value_or(file.pages));
            if (error != 0 && present != file.pages)
                (void)detail::resize_file(file.fd.get(), h.size, present); // the file ends where its pages do
            file.pages = present;
            if (error == 0)
                return {file.pages == pages ? 0 : EIO};
            if (error != EINTR)
                return {error};
        }
    }

    // --- refill workers --------------------------------------------------------------------

    void run_worker(const std::stop_token& stop, node_id node, std::latch& ready)
    {
        thread_settings settings = options_.thread;
        const cpu_set& node_cpus = machine_.topology().node(node).cpus;
        if (!settings.cpus && !node_cpus.empty())
            settings.cpus = node_cpus;
        settings.memory_node = node;
        std::vector<setting_failure> failures = apply_to_current_thread(settings);
        bool can_refill = std::none_of(failures.begin(), failures.end(),
                                       [](const setting_failure& f) { return f.setting == "memory_node"; });
        int refusal = 0;
        for (const auto& f : failures)
            if (f.setting == "memory_node")
                refusal = f.error.value();
        std::shared_ptr<detail::interrupter> interrupt;
        try {
            interrupt = detail::thread_interrupter(options_.cancel_signal);
        } catch (const std::system_error& e) {
            can_refill = false;
            refusal = e.code().value();
        }
        if (!failures.empty()) {
            const std::lock_guard lock(failures_mutex_);
            setting_failures_.insert(setting_failures_.end(), failures.begin(), failures.end());
        }
        std::vector<detail::reservoir*> mine;
        for (auto& [h, r] : state_->reservoirs)
            if (r->listed && h.node == node)
                mine.push_back(r.get());
        // Largest pages first: a 1 GiB page saves a VM the most.
        std::sort(mine.begin(), mine.end(), [](const auto* a, const auto* b) { return a->which.size > b->which.size; });
        if (!can_refill)
            for (auto* r : mine) {
                r->counters.record_error(refusal != 0 ? refusal : EINVAL);
                r->counters.hold.store(static_cast<int>(detail::refill_hold::error));
            }
        {
            const std::lock_guard lock(state_->mutex);
            if (interrupt) {
                state_->worker_interrupters.push_back(interrupt);
                if (state_->paused.load())
                    interrupt->request();
            }
        }
        ready.count_down(); // `ready` lives in start(), which returns once all have counted down
        {
            const std::stop_callback on_stop(stop, [&interrupt]() noexcept {
                if (interrupt)
                    interrupt->request();
            });
            if (can_refill) {
                refill_loop(stop, mine, *interrupt);
            } else {
                std::unique_lock lock(state_->mutex);
                state_->cv.wait(lock, stop, [] { return false; });
            }
        }
        const std::lock_guard lock(state_->mutex);
        auto& list = state_->worker_interrupters;
        list.erase(std::remove(list.begin(), list.end(), interrupt), list.end());
        // The last reference to the interrupter goes in this thread, as it must.
    }

    void refill_loop(const std::stop_token& stop, const std::vector<detail::reservoir*>& mine,
                     detail::interrupter& interrupt)
    {
        std::unique_lock lock(state_->mutex);
        for (;;) {
            if (stop.stop_requested())
                return;
            std::optional<detail::pool_clock::time_point> wake_at;
            detail::reservoir* chosen = nullptr;
            const auto now = detail::pool_clock::now();
            if (now < state_->quiet_until) {
                wake_at = state_->quiet_until;
            } else if (!state_->paused.load()) {
                // Requests (pause, a yield) were for the file this worker had: it is gone.
                // Under the mutex, so that a pause() cannot fall between the check and the
                // reset; a stop is seen by the check after it.
                interrupt.reset();
                if (stop.stop_requested())
                    return;
                for (detail::reservoir* r : mine) {
                    if (r->planned_pages() >= r->target_pages || r->chunk_pages == 0 || r->cold_allocations > 0)
                        continue;
                    if (r->retry_at && now < *r->retry_at) {
                        wake_at = wake_at ? std::min(*wake_at, *r->retry_at) : *r->retry_at;
                        continue;
                    }
                    chosen = r;
                    break;
                }
            }
            if (chosen == nullptr) {
                const std::uint64_t seen = state_->epoch;
                const auto changed = [&] { return state_->epoch != seen; };
                if (wake_at)
                    state_->cv.wait_until(lock, stop, *wake_at, changed);
                else
                    state_->cv.wait(lock, stop, changed);
                continue;
            }
            detail::reservoir& r = *chosen;
            detail::fill_job job;
            job.id = r.next_job_id++;
            job.interrupt = &interrupt;
            const std::uint64_t deficit = r.target_pages - r.planned_pages();
            detail::pool_file file;
            // Grow the largest file short of a chunk (a file yielded or cut short earlier).
            std::size_t grow = r.idle.size();
            for (std::size_t i = 0; i < r.idle.size(); ++i)
                if (r.idle[i].pages < r.chunk_pages && (grow == r.idle.size() || r.idle[i].pages > r.idle[grow].pages))
                    grow = i;
            if (grow != r.idle.size())
                file = r.take_idle(grow);
            job.goal = std::min(r.chunk_pages, file.pages + deficit);
            r.retry_at.reset();
            r.counters.hold.store(static_cast<int>(detail::refill_hold::none));
            r.counters.filling_pages.fetch_add(file.pages, std::memory_order_relaxed);
            r.filling.push_back(&job);
            lock.unlock();
            fill(r, job, file, stop, interrupt);
            lock.lock();
        }
    }

    // Fills `file` up to job.goal pages in batches; then hands it to the reservoir.
    void fill(detail::reservoir& r, detail::fill_job& job, detail::pool_file& file, const std::stop_token& stop,
              detail::interrupter& interrupt)
    {
        const page_size page = r.which.size;
        const std::uint64_t batch = std::max<std::uint64_t>(1, options_.batch_bytes / page.bytes());
        auto& c = r.counters;
        constexpr auto relaxed = std::memory_order_relaxed;
        detail::refill_hold hold = detail::refill_hold::none;
        int error = 0;
        if (!file.fd) {
            file.fd = detail::create_hugetlb_memfd(memfd_name(r.which), page, error);
            if (!file.fd)
                hold = detail::refill_hold::error;
        }
        while (hold == detail::refill_hold::none && file.pages < job.goal) {
            if (stop.stop_requested() || state_->paused.load() || job.yield_requested.load())
                break;
            std::uint64_t claim = std::min(batch, job.goal - file.pages);
            bool claimed = false; // counted in r.in_flight (only with a floor)
            bool interrupted = false;
            {
                std::unique_lock floor_lock(r.floor_mutex);
                for (;;) {
                    std::uint64_t available = 0;
                    try {
                        available = available_pages(r.which);
                    } catch (const std::system_error& e) {
                        hold = detail::refill_hold::error;
                        error = e.code().value();
                        break;
                    } catch (const std::exception&) {
                        hold = detail::refill_hold::error;
                        error = EIO;
                        break;
                    }
                    if (available == 0) { // nothing to take, floor or not: the kernel would say ENOSPC
                        hold = detail::refill_hold::no_pages;
                        break;
                    }
                    if (available <= r.floor_pages) {
                        hold = detail::refill_hold::floor;
                        break;
                    }
                    const std::uint64_t room = available - r.floor_pages;
                    if (r.floor_pages == 0) { // the kernel's ENOSPC is the floor: no bookkeeping
                        claim = std::min(claim, room);
                        break;
                    }
                    // Claims in progress may or may not show in `available` yet: count them
                    // all (so the floor holds), and if they fill the room, wait for one to end
                    // rather than give up.
                    if (room > r.in_flight) {
                        claim = std::min(claim, room - r.in_flight);
                        r.in_flight += claim;
                        claimed = true;
                        break;
                    }
                    const std::uint64_t seen = r.claims_settled;
                    const auto should_stop = [&] { return state_->paused.load() || job.yield_requested.load(); };
                    r.floor_cv.wait(floor_lock, stop, [&] { return r.claims_settled != seen || should_stop(); });
                    if (stop.stop_requested() || should_stop()) {
                        interrupted = true;
                        break;
                    }
                }
            }
            if (hold != detail::refill_hold::none || interrupted)
                break;
            const auto release_claim = [&r, claim, claimed] {
                if (!claimed)
                    return;
                {
                    const std::lock_guard floor_lock(r.floor_mutex);
                    r.in_flight -= claim;
                    ++r.claims_settled;
                }
                r.floor_cv.notify_all();
            };
            if (!pace(claim * page.bytes(), job, stop) || !interrupt.begin_call()) {
                release_claim();
                break;
            }
            const auto start = detail::pool_clock::now();
            const int rc = detail::allocate_pages(file.fd.get(), page, file.pages, claim);
            interrupt.end_call();
            const auto elapsed = detail::pool_clock::now() - start;
            const std::optional<std::uint64_t> present = detail::pages_in_file(file.fd.get(), page);
            release_claim();
            if (!present) {
                hold = detail::refill_hold::error;
                error = errno;
                break;
            }
            if (rc != 0 && *present != file.pages)
                (void)detail::resize_file(file.fd.get(), page, *present); // the file ends where its pages do
            const std::uint64_t added = *present > file.pages ? *present - file.pages : 0;
            file.pages = *present;
            c.refill_pages.fetch_add(added, relaxed);
            c.refill_ns.fetch_add(std::chrono::duration_cast<std::chrono::nanoseconds>(elapsed).count(), relaxed);
            c.filling_pages.fetch_add(added, relaxed);
            if (rc == 0)
                continue;
            if (rc == EINTR) {
                c.refills_interrupted.fetch_add(1, relaxed);
                continue; // the loop's checks tell stop, pause and yield from a stray signal
            }
            error = rc;
            hold = rc == ENOSPC ? detail::refill_hold::no_pages : detail::refill_hold::error;
        }
        finish(r, job, std::move(file), hold, error);
    }

    // Unregisters the job; its file joins the reservoir (or is closed if empty).
    void finish(detail::reservoir& r, detail::fill_job& job, detail::pool_file file, detail::refill_hold hold, int error)
    {
        detail::pool_file empty;
        std::vector<detail::pool_file> surplus; // the target was lowered while this file filled
        {
            const std::lock_guard lock(state_->mutex);
            r.filling.erase(std::remove(r.filling.begin(), r.filling.end(), &job), r.filling.end());
            r.counters.filling_pages.fetch_sub(file.pages, std::memory_order_relaxed);
            if (file.pages > 0)
                r.add_idle(std::move(file));
            else
                empty = std::move(file);
            shed_whole_files(r, surplus);
            if (hold != detail::refill_hold::none) {
                r.retry_at = detail::pool_clock::now() + options_.retry_period;
                r.counters.hold.store(static_cast<int>(hold));
                switch (hold) {
                case detail::refill_hold::floor:
                    r.counters.floor_holds.fetch_add(1, std::memory_order_relaxed);
                    break;
                case detail::refill_hold::no_pages:
                    r.counters.out_of_pages.fetch_add(1, std::memory_order_relaxed);
                    r.counters.last_error.store(ENOSPC, std::memory_order_relaxed);
                    break;
                default:
                    r.counters.record_error(error != 0 ? error : EIO);
                    break;
                }
            }
            ++state_->epoch;
        }
        state_->cv.notify_all();
    }

    // Free pages of `h` that nobody has a claim on: the node's free pages, but no more than the
    // global free pages not promised to mappings (resv_hugepages is global only).
    std::uint64_t available_pages(const hstate& h) const
    {
        const hstate_counters node = machine_.counters(h);
        const global_counters all = machine_.global(h.size);
        const std::uint64_t unreserved = all.free > all.reserved ? all.free - all.reserved : 0;
        return std::min(node.free, unreserved);
    }

    // Waits for this batch's turn under the rate limit. False if stopped, paused or asked to
    // yield meanwhile.
    bool pace(std::uint64_t bytes, detail::fill_job& job, const std::stop_token& stop)
    {
        if (options_.refill_bytes_per_second == 0)
            return true;
        const auto now = detail::pool_clock::now();
        detail::pool_clock::time_point turn;
        {
            const std::lock_guard lock(pace_mutex_);
            turn = std::max(now, next_turn_);
            const double seconds = static_cast<double>(bytes) / static_cast<double>(options_.refill_bytes_per_second);
            next_turn_ = turn + std::chrono::duration_cast<detail::pool_clock::duration>(std::chrono::duration<double>(seconds));
        }
        if (turn <= now)
            return true;
        std::unique_lock lock(state_->mutex);
        const bool interrupted = state_->cv.wait_until(lock, stop, turn, [&] {
            return state_->paused.load() || job.yield_requested.load();
        });
        return !interrupted && !stop.stop_requested();
    }

    // How long an acquire() waits for a worker to yield the file it is filling: a worker does
    // at its next page (at most one page's zeroing, ~72 ms for 1 GiB here); this is a safety net.
    static constexpr std::chrono::seconds yield_timeout{2};

    machine machine_;
    pool_options options_;
    std::shared_ptr<detail::pool_state> state_;
    std::vector<hstate> listed_;
    std::vector<node_id> nodes_;
    std::mutex control_;
    mutable std::mutex failures_mutex_;
    std::vector<setting_failure> setting_failures_;
    std::mutex pace_mutex_;
    detail::pool_clock::time_point next_turn_{};
    // Threads last: they stop and join before the state they use is destroyed.
    std::vector<std::jthread> workers_;
};

} // namespace hugezero

#endif
