/// @file
/// @brief Internals of hugezero::pool: one refill worker, in phases: wait for work and join a
/// file being filled (or start one), take steps of it, leave it (the last worker out finishes
/// it).
#ifndef HUGEZERO_DETAIL_REFILL_WORKER_HPP
#define HUGEZERO_DETAIL_REFILL_WORKER_HPP

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <optional>
#include <stop_token>
#include <utility>
#include <vector>

#include <hugezero/detail/call_gate.hpp>
#include <hugezero/detail/pool/pool_messages.hpp>
#include <hugezero/detail/pool/pool_state.hpp>
#include <hugezero/detail/pool/recycler.hpp>
#include <hugezero/detail/pool/scrubber.hpp>
#include <hugezero/detail/worker_group.hpp>

namespace hugezero::detail {

/// A refill worker of one node. It scrubs the recycled files of the node's reservoirs first
/// (see scrubber), then fills the reservoirs, largest pages first: it joins
/// a file being filled that has a step left (or starts one: the largest ready file short of a
/// chunk, grown, or a new one) and takes its steps in turn with the node's other workers, each
/// step paced by the rate limit, granted by the floor gate, and allocated with no lock held: by
/// fallocate() for the worker that started the file, through the window it shared for the
/// others. It leaves the file when the file has no step left for it, or for a stop, a pause,
/// a hold (floor, no pages, an error: the file is then closed to every worker), or a lease that
/// wants the file; the last worker out cuts the file back to the pages done in order and gives
/// it to the reservoir.
///
/// Its thread is bound to the node's memory, so the kernel takes the pages from the node.
class refill_worker {
public:
    /// A worker of @p context's node filling @p mine (the node's reservoirs, largest pages
    /// first); @p gate is the pausable its steps pass.
    refill_worker(pool_engine& engine, const worker_context& context, std::vector<hstate> mine, call_gate& gate)
        : e_(engine), stop_(context.stop()), mine_(std::move(mine)), gate_(gate)
    {
    }

    /// Refills until stopped. @p helped: the node has other workers, who may join the files
    /// this one starts.
    void run(bool helped)
    {
        while (auto joined = join_work()) {
            if (joined->returned) {
                recycler::look_again(e_, joined->slot->counters->which, std::move(*joined->returned));
                continue;
            }
            if (joined->scrub) {
                scrubber(e_, *joined->slot, stop_, gate_).run(std::move(*joined->scrub));
                continue;
            }
            // A job of one step has nothing to share: a worker that joined it would take that
            // step through the window (holding the memory-map lock shared), and the starter's
            // mapping of its next file would wait for it (the lock, exclusively).
            if (joined->started && helped && joined->job->growth() > e_.step_pages(joined->slot->counters->which.size))
                share(*joined->slot, *joined->job);
            const filler fill{e_.files_for(joined->slot->counters->which), joined->job->file().fd.get(), joined->slot->counters->which.size,
                              joined->started ? nullptr : joined->job->window()};
            try {
                while (step(*joined->slot, *joined->job, fill)) {
                }
            } catch (...) { // never expected (bad_alloc): leave the job, so the file is not lost
                leave(*joined->slot, *joined->job, refill_hold::error, EIO);
            }
        }
    }

private:
    struct work {
        reservoir_slot* slot;
        fill_job* job = nullptr;
        bool started = false;             // this worker started the job
        std::optional<scrub_item> scrub; // or a recycled file to scrub instead
        std::optional<returned_file> returned; // or a file given back to look at again
    };

    // How this worker allocates its steps of one file. The worker that started the file uses
    // fallocate(): it needs no mapping, so it never takes the process's memory-map lock. The
    // others fault pages in through the window the starter shared: fallocate()s on one file
    // would run one after the other (the inode lock), page faults run beside them.
    struct filler {
        hugetlb_files& files;
        int fd;
        page_size page;
        populate_window* window; // null for the starter

        int operator()(const fill_step& s) const noexcept
        {
            for (;;) {
                const int rc = window != nullptr ? window->populate(s.first, s.count) : files.allocate(fd, page, s.first, s.count);
                if (rc != EINTR)
                    return rc;
                // A stray signal (the pool sends none): the pages done stay, ask for the rest.
            }
        }
    };

    // The starter maps the file before its first step, while nothing zeroes in it (a mapping
    // takes the file's inode lock, which a fallocate() in progress holds for its whole call),
    // and opens the job to the other workers. If it cannot, it fills the file alone.
    void share(const reservoir_slot& slot, fill_job& job)
    {
        int error = 0;
        auto window = e_.files_for(slot.counters->which).window(job.file().fd.get(), slot.counters->which.size, job.goal(), error);
        if (!window)
            return;
        auto g = e_.state->core.lock();
        job.share(std::move(window));
    }

    // Phase 1: waits until a reservoir of this node needs work, and joins a file being filled
    // there (starting one if none has a step left). Empty once stopped.
    std::optional<work> join_work()
    {
        auto g = e_.state->core.lock();
        for (;;) {
            if (stop_.stop_requested())
                return std::nullopt;
            const auto now = pool_clock::now();
            std::optional<pool_clock::time_point> wake;
            bool changed = false; // a start that failed held its reservoir: others must see it
            for (const hstate& h : mine_) { // even when paused or quiet: a look takes no time
                reservoir_slot& slot = g->slots.at(h);
                if (auto due = slot.take_due_return(now, e_.options.retry_period))
                    return work{&slot, nullptr, false, std::nullopt, std::move(*due)};
                if (const auto check = slot.next_return_check())
                    wake = std::min(wake.value_or(*check), *check);
            }
            if (e_.state->quiet.active(now))
                wake = std::min(wake.value_or(e_.state->quiet.until()), e_.state->quiet.until());
            else if (!g->paused)
                for (const hstate& h : mine_) {
                    reservoir_slot& slot = g->slots.at(h);
                    if (!slot.scrub_queue.empty()) { // cheaper than a refill: the pages are there
                        work scrub{&slot, nullptr, false, std::move(slot.scrub_queue.front()), std::nullopt};
                        slot.scrub_queue.pop_front();
                        return scrub;
                    }
                    fill_job* job = slot.joinable_job();
                    const bool started = job == nullptr && !slot.job_with_steps_left() && slot.wants_refill(now);
                    if (started) {
                        job = start_job(slot);
                        changed = changed || job == nullptr;
                    }
                    if (job != nullptr) {
                        job->join();
                        return work{&slot, job, started, std::nullopt, std::nullopt};
                    }
                    if (slot.retry_at && now < *slot.retry_at)
                        wake = std::min(wake.value_or(*slot.retry_at), *slot.retry_at);
                }
            if (changed)
                g.announce();
            g.wait_for_change(stop_, wake);
        }
    }

    // Under the pool's lock: a new job for @p slot, on the largest ready file short of a chunk
    // (grown) or a new file, sized to its goal. Null, with the reservoir held, if the file
    // cannot be made or sized (two quick calls: neither zeroes anything).
    fill_job* start_job(reservoir_slot& slot)
    {
        const hstate& h = slot.counters->which;
        hugetlb_files& files = e_.files_for(h);
        const std::uint64_t deficit = slot.target_pages - slot.planned_pages();
        pool_file file = slot.files.take_largest_below(slot.chunk_pages).value_or(pool_file{});
        const std::uint64_t goal = std::min(slot.chunk_pages, file.pages + deficit);
        if (!file.fd) {
            if (const int error = e_.create_file(h, file, pool_file_name(h)); error != 0) {
                slot.hold(refill_hold::error, error, e_.options.retry_period);
                return nullptr;
            }
        }
        if (const int error = files.resize(file.fd.get(), h.size, goal); error != 0) {
            slot.files.add(std::move(file)); // unchanged, so still ready
            slot.hold(refill_hold::error, error, e_.options.retry_period);
            return nullptr;
        }
        slot.retry_at.reset();
        slot.counters->hold.store(static_cast<int>(refill_hold::none));
        slot.counters->add(slot.counters->filling_pages, file.pages);
        slot.jobs.push_back(std::make_unique<fill_job>(std::move(file), goal));
        return slot.jobs.back().get();
    }

    // Phase 2: one step of @p job. Returns whether this worker goes on with it; when not, it
    // has left it.
    bool step(reservoir_slot& slot, fill_job& job, const filler& fill)
    {
        const hstate& h = slot.counters->which;
        const std::uint64_t want = e_.step_pages(h.size);
        if (!wait_turn(job, want * h.size.bytes()))
            return leave(slot, job, refill_hold::none, 0);
        floor_gate::claim claim = e_.floors.at(h)->acquire(
            want, [&] { return e_.m.available(h); }, stop_, [&] { return should_leave(job); });
        if (claim.pages() == 0)
            return leave(slot, job, claim.hold(), claim.error());
        // A charged reservoir stops at its cgroup's hugetlb limit as at the node's last free
        // page: a step past it would fail, and give back the pages it got.
        claim.shrink_to(e_.charge_room(h, claim.pages()));
        if (claim.pages() == 0)
            return leave(slot, job, refill_hold::no_pages, ENOSPC);
        if (!gate_.enter()) // paused
            return leave(slot, job, refill_hold::none, 0);
        const std::optional<fill_step> s = take_step(job, claim.pages());
        if (!s) {
            gate_.leave();
            return leave(slot, job, refill_hold::none, 0);
        }
        claim.shrink_to(s->count);
        const auto start = pool_clock::now();
        const int error = fill(*s);
        const auto elapsed = pool_clock::now() - start;
        claim.shrink_to(0); // its pages now show in the counters as taken
        const bool go_on = record(slot, job, *s, error, elapsed);
        gate_.leave(); // a pause returns once the step is in the statistics
        return go_on;
    }

    // Whether the worker should stop working on @p job. Lock-free: also asked from the floor
    // gate, under its own lock.
    bool should_leave(const fill_job& job) const noexcept
    {
        return stop_.stop_requested() || e_.state->paused.load() || job.closed();
    }

    // Waits for this step's turn under the rate limit. False if the worker should leave.
    bool wait_turn(const fill_job& job, std::uint64_t bytes)
    {
        return e_.wait_turn(bytes, stop_, [&] { return should_leave(job); });
    }

    std::optional<fill_step> take_step(fill_job& job, std::uint64_t most)
    {
        auto g = e_.state->core.lock();
        if (g->paused || !job.takes_steps())
            return std::nullopt;
        return job.take(most);
    }

    // Records a step; leaves the job if it has no step left for this worker.
    bool record(reservoir_slot& slot, fill_job& job, const fill_step& s, int error, pool_clock::duration elapsed)
    {
        reservoir_counters& c = *slot.counters;
        bool last = false;
        {
            auto g = e_.state->core.lock();
            job.done(s, error);
            c.refill_ns.fetch_add(std::chrono::duration_cast<std::chrono::nanoseconds>(elapsed).count(),
                                  std::memory_order_relaxed);
            if (error == 0) {
                c.add(c.refill_pages, s.count);
                c.add(c.filling_pages, s.count);
            }
            if (error == 0 && job.takes_steps() && !g->paused && !stop_.stop_requested())
                return true;
            last = job.leave(refill_hold::none);
        }
        if (last)
            finish(slot, job);
        return false;
    }

    // Phase 3: leaves @p job for @p why (and @p error); the last worker out finishes it.
    // Returns false.
    bool leave(reservoir_slot& slot, fill_job& job, refill_hold why, int error)
    {
        bool last = false;
        {
            auto g = e_.state->core.lock();
            if (error != 0)
                job.fail(error);
            if (why != refill_hold::none) // the floor, the free pages, an error hold every worker
                job.close();
            last = job.leave(why);
        }
        if (last)
            finish(slot, job);
        return false;
    }

    // The last worker out: cuts the file back to the pages done in order (nobody else uses the
    // job now) and gives it to the reservoir.
    void finish(reservoir_slot& slot, fill_job& job)
    {
        const hstate& h = slot.counters->which;
        {
            auto window = [&] {
                auto g = e_.state->core.lock();
                return job.take_window();
            }();
        } // unmapped here, outside the lock, before the file can be leased
        pool_file& file = job.file();
        int resize_error = 0;
        if (job.prefix() != job.goal())
            resize_error = e_.m.files().resize(file.fd.get(), h.size, job.prefix());
        file.pages = job.prefix();
        if (resize_error == 0 && !file.lease_fd && file.pages > 0)
            if (const int own = e_.m.files().reopen(file.fd.get()); own >= 0)
                file.lease_fd.reset(own); // made here, so that acquire() need not
        pool_file dropped;
        std::vector<pool_file> surplus;
        std::unique_ptr<fill_job> ended;
        {
            auto g = e_.state->core.lock();
            reservoir_counters& c = *slot.counters;
            c.filling_pages.fetch_sub(job.done_pages(), std::memory_order_relaxed);
            if (resize_error != 0) // its size and pages may disagree: it cannot be leased
                dropped = std::move(file);
            else
                slot.files.add(std::move(file));
            surplus = slot.files.shed_to(slot.target_pages); // the target fell meanwhile
            const int error = job.error() != 0 ? job.error() : resize_error;
            if (job.prefix() < job.goal() && error == 0 && job.last_hold() == refill_hold::none)
                c.add(c.refills_interrupted, 1); // a stop, a pause or a lease ended it
            const refill_hold why = error == 0 ? job.last_hold() : error == ENOSPC ? refill_hold::no_pages : refill_hold::error;
            slot.hold(why, error, e_.options.retry_period);
            const auto it = std::find_if(slot.jobs.begin(), slot.jobs.end(), [&](const auto& j) { return j.get() == &job; });
            ended = std::move(*it);
            slot.jobs.erase(it);
        }
        // `dropped`, `surplus` and the job close here, outside the lock: their pages go back.
    }

    pool_engine& e_;
    std::stop_token stop_;
    std::vector<hstate> mine_;
    call_gate& gate_;
};

/// The body of a refill worker thread of @p context's node: binds its memory to the node and
/// refills @p mine until stopped. A worker that cannot bind does not refill (its pages could
/// land elsewhere): it reports the failure and holds its reservoirs as failing.
inline void run_refill_worker(pool_engine& e, worker_group& group, worker_context& context, std::vector<hstate> mine)
{
    const bool helped = workers_for_node(e.m, context.node(), e.options.workers_per_node) > 1;
    int error = 0;
    const auto binding = e.m.files().bind_calling_thread(context.node(), error);
    if (!binding) {
        context.report(binding_failure(context.node(), error));
        {
            auto g = e.state->core.lock();
            for (const hstate& h : mine)
                g->slots.at(h).counters->record_hold(refill_hold::error, error);
        }
        context.started();
        auto g = e.state->core.observe();
        (void)g.wait(context.stop(), [] { return false; });
        return;
    }
    call_gate gate;
    const auto enrolment = group.enrol(gate);
    context.started();
    refill_worker(e, context, std::move(mine), gate).run(helped);
}

} // namespace hugezero::detail

#endif
