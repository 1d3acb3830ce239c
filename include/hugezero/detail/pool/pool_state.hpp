/// @file
/// @brief Internals of hugezero::pool: what its rooms share. The reservoirs under the pool's
/// lock, their lock-free counters, the quiet period; and the state leases keep alive to report
/// their release.
#ifndef HUGEZERO_DETAIL_POOL_STATE_HPP
#define HUGEZERO_DETAIL_POOL_STATE_HPP

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <sys/stat.h>

#include <hugezero/detail/deadline.hpp>
#include <hugezero/detail/guarded.hpp>
#include <hugezero/detail/lock_rank.hpp>
#include <hugezero/detail/pool/charged_files.hpp>
#include <hugezero/detail/pool/fill_job.hpp>
#include <hugezero/detail/pool/floor_gate.hpp>
#include <hugezero/detail/pool/refill_pacing.hpp>
#include <hugezero/detail/pool/reservoir.hpp>
#include <hugezero/detail/pool/reservoir_counters.hpp>
#include <hugezero/detail/pool/reservoir_directory.hpp>
#include <hugezero/detail/worker_group.hpp>
#include <hugezero/hstate.hpp>
#include <hugezero/lease.hpp>
#include <hugezero/machine.hpp>
#include <hugezero/pool_options.hpp>

namespace hugezero::detail {

/// Whether the file behind @p fd is exactly @p pages pages of @p page, every one allocated, with
/// at most one name, once every page past its end is dropped (it is grown by a page and cut
/// back: a shrink always drops them, a truncate to the same size need not). A tenant may have
/// grown a file, written past its end, punched a hole or linked it elsewhere: the pool scrubs
/// and serves again only a file that passes.
inline bool cut_to_shape(hugetlb_files& files, int fd, page_size page, std::uint64_t pages)
{
    if (files.resize(fd, page, pages + 1) != 0 || files.resize(fd, page, pages) != 0)
        return false;
    return files.pages_in(fd, page).exactly(pages);
}

/// One hstate's reservoir: its settings, its ready files, the files being filled, the recycled
/// files waiting for their scrub. Under the pool's lock.
struct reservoir_slot {
    explicit reservoir_slot(reservoir_counters& c) : counters(&c), files(c) {}

    reservoir_counters* counters;
    std::uint64_t target_pages = 0;
    std::uint64_t chunk_pages = 0;              // the size of the files the refill makes
    bool chunk_follows_leases = true;           // chunk_bytes was 0 (see follow_leases())
    std::uint64_t latest_lease_pages = 0;       // the size of the latest lease, 0 before any
    reservoir files;                            // the ready files
    std::vector<std::unique_ptr<fill_job>> jobs; // the files being filled
    std::deque<scrub_item> scrub_queue;         // recycled files waiting for their scrub
    std::uint64_t scrub_pages = 0;              // their pages, and those of scrubs in progress
    std::deque<returned_file> returned;         // given back, still referred to elsewhere

    /// The default chunk (reservoir_options::chunk_bytes 0): the target until the first lease
    /// (any lease up to the target is warm), then the size of the latest lease, so that the
    /// refill makes files the next VM of that size takes whole. Call when either changes.
    void follow_leases() noexcept
    {
        if (chunk_follows_leases)
            chunk_pages = latest_lease_pages == 0 ? target_pages : std::min(latest_lease_pages, target_pages);
    }

    pool_clock::time_point next_return_look{}; // the earliest the next file given back is looked at
    pool_clock::time_point next_reshape{};     // the earliest the next unmet lease may reshape the files

    /// When the refill should look at the files given back again, if any are waiting.
    [[nodiscard]] std::optional<pool_clock::time_point> next_return_check() const noexcept
    {
        std::optional<pool_clock::time_point> next;
        for (const returned_file& r : returned)
            next = std::min(next.value_or(r.check_at), r.check_at);
        if (next)
            next = std::max(*next, next_return_look);
        return next;
    }
    /// Takes a file given back whose time to be looked at again has come, if any, at most one
    /// per @p spacing: each look may search every process's descriptors, which a tenant with
    /// many of them and many leases given back could make cost a CPU, and the refill waits
    /// for it. The others wait their turn (their pages are the holder's meanwhile).
    std::optional<returned_file> take_due_return(pool_clock::time_point now, std::chrono::nanoseconds spacing)
    {
        if (now < next_return_look)
            return std::nullopt;
        const auto due = std::find_if(returned.begin(), returned.end(), [&](const returned_file& r) { return r.check_at <= now; });
        if (due == returned.end())
            return std::nullopt;
        returned_file r = std::move(*due);
        returned.erase(due);
        next_return_look = now + std::chrono::duration_cast<pool_clock::duration>(spacing);
        return r;
    }
    unsigned cold_allocations = 0;              // acquire()s allocating cold: the refill waits
    std::optional<pool_clock::time_point> retry_at; // a held refill looks again then

    /// Pages ready, and those the files being filled will add.
    [[nodiscard]] std::uint64_t planned_pages() const noexcept
    {
        std::uint64_t planned = files.ready_pages() + scrub_pages;
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

/// The pool's own description of each leased file, by ticket: a lease holds another, so that
/// once the lease and every copy of it are gone, this one is provably the last reference
/// (hugetlb_files::sole_reference()). Closed with the lease. Its mutex is a leaf, and no one
/// waits for a change here: an acquire and a lease's close touch it without waking workers.
class lease_descriptions {
public:
    /// Keeps @p fd; returns its ticket (never 0).
    std::uint64_t add(unique_fd fd)
    {
        const std::lock_guard lock(mutex_);
        fds_.emplace(++last_, std::move(fd));
        return last_;
    }
    /// Takes the description of @p ticket (empty if there is none).
    unique_fd take(std::uint64_t ticket)
    {
        const std::lock_guard lock(mutex_);
        const auto it = fds_.find(ticket);
        if (it == fds_.end())
            return unique_fd();
        unique_fd fd = std::move(it->second);
        fds_.erase(it);
        return fd;
    }
    /// Takes them all.
    std::vector<unique_fd> take_all()
    {
        const std::lock_guard lock(mutex_);
        std::vector<unique_fd> all;
        for (auto& [ticket, fd] : fds_)
            all.push_back(std::move(fd));
        fds_.clear();
        return all;
    }

private:
    ranked_mutex<> mutex_{lock_rank::leaf, "the pool's lease descriptions"};
    std::map<std::uint64_t, unique_fd> fds_;
    std::uint64_t last_ = 0;
};

/// What the pool's lock guards.
struct pool_core {
    pool_core() = default;
    pool_core(const pool_core&) = delete;
    pool_core& operator=(const pool_core&) = delete;
    /// However the pool ends (also when its constructor throws after a named reservoir adopted
    /// files), a named reservoir's ready files stay for the next pool.
    ~pool_core() { (void)take_every_file(); }

    bool paused = false;
    std::map<hstate, reservoir_slot> slots; // every hstate of the machine; the set is fixed

    /// Takes every file of the reservoirs - ready, waiting for a scrub, given back and still
    /// referred to - for the caller to close outside the lock: the pool is ending. A named
    /// reservoir's files keep their names, so they stay for the next pool on the directory:
    /// it scrubs the ready ones (and those waiting for a scrub), and watches those given back
    /// until nothing refers to them, then empties them.
    std::vector<pool_file> take_every_file()
    {
        std::vector<pool_file> files;
        for (auto& [h, slot] : slots) {
            for (auto& f : slot.files.take_all())
                files.push_back(std::move(f));
            for (auto& item : slot.scrub_queue)
                files.push_back(std::move(item.file));
            for (auto& r : slot.returned)
                files.push_back(std::move(r.file));
            slot.scrub_queue.clear();
            slot.returned.clear();
        }
        for (pool_file& f : files)
            f.name.keep();
        return files;
    }

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
    guarded<pool_core> core{lock_rank::pool_core, "the pool's lock"};
    lease_descriptions descriptions;
    quiet_period quiet;
    std::atomic<bool> running{false}; // mirrors for lock-free statistics
    std::atomic<bool> paused{false};

    /// What the whole pool is doing, for statistics.
    [[nodiscard]] pool_activity activity() const noexcept
    {
        return {running.load(), paused.load(), quiet.active(pool_clock::now())};
    }

    void lease_closed(const hstate& which, std::uint64_t pages, bool pages_back, std::uint64_t ticket) noexcept override
    {
        const auto it = counters.find(which);
        if (it == counters.end())
            return;
        it->second->leases_out.fetch_sub(1, std::memory_order_relaxed);
        it->second->leased_pages.fetch_sub(pages, std::memory_order_relaxed);
        descriptions.take(ticket).reset(); // the pages may go back now
        if (pages_back)
            pages_went_back(which.node);
    }

    /// Pages of @p node just went back to the kernel: refills of the node held for want of
    /// free pages may go on now.
    void pages_went_back(node_id node) noexcept
    {
        auto g = core.lock();
        for (auto& [h, slot] : g->slots) {
            const refill_hold hold = slot.counters->current_hold();
            if (h.node == node && (hold == refill_hold::floor || hold == refill_hold::no_pages)) {
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
    std::map<hstate, std::shared_ptr<charged_files>> charged; // reservoirs with a cgroup; fixed
    std::map<hstate, std::unique_ptr<reservoir_directory>> directories; // named reservoirs; fixed
    rate_limiter limiter;

    /// Waits for the turn of a step of @p bytes under the rate limit, asking again if the rate
    /// changes meanwhile. False if @p leave() (checked whenever the pool's state changes) or
    /// @p stop.
    template <class Leave>
    bool wait_turn(std::uint64_t bytes, const std::stop_token& stop, Leave leave)
    {
        for (;;) {
            const std::uint64_t generation = limiter.generation();
            const auto now = pool_clock::now();
            const auto turn = limiter.turn(bytes, now);
            if (turn <= now)
                break;
            auto g = state->core.observe();
            (void)g.wait_until(stop, turn, [&] { return leave() || limiter.generation() != generation; });
            if (limiter.generation() == generation)
                break;
        }
        return !leave() && !stop.stop_requested();
    }

    /// The directory of @p h's reservoir if it is named, else null.
    [[nodiscard]] reservoir_directory* directory_of(const hstate& h) const noexcept
    {
        const auto it = directories.find(h);
        return it == directories.end() ? nullptr : it->second.get();
    }
    /// A new, empty file for @p h's pages in @p file: a ready file in its reservoir's
    /// directory, or a memfd named @p memfd_name. 0 or the errno.
    int create_file(const hstate& h, pool_file& file, const std::string& memfd_name)
    {
        hugetlb_files& files = files_for(h);
        reservoir_directory* dir = directory_of(h);
        if (dir == nullptr) {
            const int fd = files.create(memfd_name, h.size);
            if (fd < 0)
                return -fd;
            file.fd.reset(fd);
            return 0;
        }
        file_name name = dir->ready_name();
        const int fd = files.create_in(dir->fd(), name.name(), h.size);
        if (fd < 0) {
            name.keep(); // not made: nothing of ours to remove
            return -fd;
        }
        file.fd.reset(fd);
        file.name = std::move(name);
        return 0;
    }

    /// The files through which @p h's pages are allocated: those charging its reservoir's
    /// cgroup, or the machine's.
    [[nodiscard]] hugetlb_files& files_for(const hstate& h) const noexcept
    {
        const auto it = charged.find(h);
        return it == charged.end() ? m.files() : *it->second;
    }
    /// How many of @p want pages of @p h its reservoir's cgroup may still be charged (all of
    /// them when it has no cgroup).
    [[nodiscard]] std::uint64_t charge_room(const hstate& h, std::uint64_t want) const noexcept
    {
        const auto it = charged.find(h);
        if (it == charged.end())
            return want;
        return std::min(want, it->second->room(h.size));
    }
    /// Charges @p o's pages to its cgroup and keeps its files in its directory, if it names
    /// them. @throws what charge() and name_reservoir() throw.
    void place(reservoir_slot& slot, const reservoir_options& o)
    {
        if (!o.cgroup.empty())
            charge(o.which, o.cgroup);
        if (!o.directory.empty())
            name_reservoir(slot, o.which, o.directory);
    }
    /// Keeps @p h's files in @p path (reservoir_options::directory) and takes over what a
    /// previous pool left there. Its ready files: each one in shape and referred to by nothing
    /// else is queued for its scrub (its content is not trusted), up to the target; the others
    /// go, but for one in use elsewhere, which is left alone. Its leases' files (a daemon that
    /// was killed with leases out): each waits, as a lease given back, until nothing refers to
    /// it, and is then emptied, never recycled. @throws std::invalid_argument on a simulated
    /// kernel; std::system_error naming @p path if it cannot be used.
    void name_reservoir(reservoir_slot& slot, const hstate& h, const std::filesystem::path& path)
    {
        if (dynamic_cast<const kernel_hugetlb_files*>(&m.files()) == nullptr)
            throw std::invalid_argument("hugezero: reservoir " + to_string(h) + " names directory " + path.string()
                                        + ", but named files need the real kernel's hugetlb files");
        auto dir = std::make_unique<reservoir_directory>(path, h);
        for (found_file& found : dir->adopt()) {
            pool_file file;
            file.fd = std::move(found.fd);
            file.name = std::move(found.name);
            if (found.leased) {
                watch_orphan(slot, h, std::move(file));
                continue;
            }
            std::string holder;
            if (m.files().sole_reference(file.fd.get(), holder) != 0) {
                file.name.keep(); // in use elsewhere, or cannot tell: not ours to touch
                continue;
            }
            const file_pages held = m.files().pages_in(file.fd.get(), h.size);
            if (held.error != 0 || held.pages == 0 || !cut_to_shape(m.files(), file.fd.get(), h.size, held.size_pages)
                || slot.scrub_pages + held.size_pages > slot.target_pages)
                continue; // removed, with its pages
            file.pages = held.size_pages;
            slot.scrub_pages += file.pages;
            slot.counters->add(slot.counters->scrubbing_pages, file.pages);
            slot.scrub_queue.push_back({std::move(file), 0});
        }
        directories.emplace(h, std::move(dir));
    }
    /// A lease's file a previous pool left: looked at by the refill at once, then every retry
    /// period while something refers to it, and emptied once nothing does.
    void watch_orphan(reservoir_slot& slot, const hstate& h, pool_file file)
    {
        file.pages = m.files().pages_in(file.fd.get(), h.size).pages;
        slot.counters->add(slot.counters->returned_leases, 1);
        slot.counters->add(slot.counters->waiting_pages, file.pages);
        slot.returned.push_back({std::move(file), pool_clock::now(), true});
    }
    /// Has @p h's pages allocated by processes in @p cgroup (reservoir_options::cgroup).
    /// @throws std::invalid_argument on a simulated kernel (charging runs real processes);
    /// std::system_error naming @p cgroup if it cannot be used.
    void charge(const hstate& h, const std::filesystem::path& cgroup)
    {
        if (dynamic_cast<const kernel_hugetlb_files*>(&m.files()) == nullptr)
            throw std::invalid_argument("hugezero: reservoir " + to_string(h) + " names cgroup " + cgroup.string()
                                        + ", but charging to a cgroup needs the real kernel's hugetlb files");
        charged.emplace(h, std::make_shared<charged_files>(kernel_hugetlb_files::instance(), cgroup));
    }

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
