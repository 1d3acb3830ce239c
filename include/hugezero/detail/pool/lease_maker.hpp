/// @file
/// @brief Internals of hugezero::pool: how acquire() makes a lease. Take the reservoir file
/// that fits best, decide whether the node can give what it lacks, trim it or grow it with
/// cold pages, and on any failure put everything back as it was.
#ifndef HUGEZERO_DETAIL_LEASE_MAKER_HPP
#define HUGEZERO_DETAIL_LEASE_MAKER_HPP

#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <hugezero/acquire_options.hpp>
#include <hugezero/acquire_result.hpp>
#include <hugezero/detail/deadline.hpp>
#include <hugezero/detail/pool/cold_fill.hpp>
#include <hugezero/detail/pool/pool_messages.hpp>
#include <hugezero/detail/pool/pool_state.hpp>
#include <hugezero/lease.hpp>

namespace hugezero::detail {

/// One acquire(): @p pages pages of @p h for the calling thread.
class lease_maker {
public:
    /// pool::acquire(): a lease of @p bytes of @p h, or why there is none.
    /// @throws std::invalid_argument if @p bytes is 0.
    static acquire_result acquire(pool_engine& e, const hstate& h, std::uint64_t bytes, const acquire_options& options)
    {
        if (bytes == 0)
            throw std::invalid_argument("hugezero: cannot lease 0 bytes of " + to_string(h) + " huge pages");
        try {
            (void)e.m.topology().info(h);
        } catch (const std::invalid_argument& error) {
            std::string reason = error.what();
            reason.erase(0, std::string_view("hugezero: ").size());
            return acquire_failure(ENODEV, cannot_lease(bytes, h) + reason);
        }
        const std::uint64_t pages = bytes / h.size.bytes() + (bytes % h.size.bytes() != 0 ? 1 : 0);
        return lease_maker(e, h, bytes, pages, options).make();
    }

    lease_maker(pool_engine& engine, const hstate& h, std::uint64_t bytes, std::uint64_t pages, acquire_options options)
        : e_(engine), which_(h), bytes_(bytes), pages_(pages), max_cold_(options.max_cold_pages), stop_(std::move(options.stop)),
          name_(checked_lease_name(options.name))
    {
    }

    /// The lease, or why there is none; on failure nothing is kept.
    acquire_result make()
    {
        if (auto refused = refuse_early()) {
            if (refused->error.value() == EAGAIN)
                reshape_for_unmet_lease();
            return std::move(*refused);
        }
        const bool short_of_pages = take_file();
        const cold_hold hold(*this, short_of_pages);
        ready_ = file_.pages;
        if (file_.pages < pages_) {
            if (auto refused = refuse_if_too_cold(pages_ - file_.pages))
                return std::move(*refused);
            if (auto refused = refuse_if_node_lacks(pages_ - file_.pages))
                return std::move(*refused);
        }
        if (file_.pages > pages_)
            if (auto failed = trim())
                return std::move(*failed);
        std::uint64_t cold = 0;
        if (file_.pages < pages_) {
            cold = pages_ - file_.pages;
            if (auto failed = grow())
                return std::move(*failed);
        }
        return hand_over(cold);
    }

private:
    // While an acquire allocates cold pages, its reservoir starts no refill: a VM waiting for
    // pages comes before the reservoir, for free pages and for bandwidth.
    class cold_hold {
    public:
        cold_hold(lease_maker& maker, bool held) : maker_(held ? &maker : nullptr) {}
        cold_hold(const cold_hold&) = delete;
        cold_hold& operator=(const cold_hold&) = delete;
        ~cold_hold()
        {
            if (maker_ != nullptr)
                maker_->end_cold();
        }

    private:
        lease_maker* maker_;
    };

    reservoir_slot& slot(pool_core& core) const { return core.slots.at(which_); }

    // Takes the best ready file (or none). The whole pool goes quiet and every file being
    // filled is closed to its workers, who leave it after their step. If the best file is short
    // of the lease, this waits for the reservoir's own file being filled (it may be the best),
    // and the reservoir starts no refill until the lease is made. Returns whether it was short.
    bool take_file()
    {
        auto g = e_.state->core.lock();
        reservoir_slot& mine = slot(*g);
        const bool quiet = e_.options.quiet_after_lease > std::chrono::nanoseconds::zero();
        bool filling = false;
        // A worker that went to sleep while the pool was quiet wakes when the quiet period ends
        // (and then sees that it was extended); one that went to sleep before has no deadline.
        const bool quiet_already = quiet && e_.state->quiet.active(pool_clock::now());
        if (quiet) {
            e_.state->quiet.extend(deadline_after(e_.options.quiet_after_lease));
            for (auto& [h, other] : g->slots) {
                filling = filling || !other.jobs.empty();
                other.close_jobs();
            }
        }
        // The default chunk follows this lease from now on, before a worker can start a file
        // for the room it leaves; undone if the lease is not made (forget_lease_size()).
        previous_lease_pages_ = std::exchange(mine.latest_lease_pages, pages_);
        mine.follow_leases();
        const bool short_of_pages = mine.files.best_for(pages_) < pages_;
        if (short_of_pages) {
            ++mine.cold_allocations;
            if (!mine.jobs.empty()) {
                mine.close_jobs();
                e_.wake_floor_waiters();
                g.announce();
                (void)g.wait_for(yield_timeout, [&] { return mine.jobs.empty(); });
            }
        }
        if (quiet)
            e_.wake_floor_waiters();
        // In a quiet period with nothing being filled, every worker sleeps until the period
        // ends (it only moved later), and nobody waits for a file to be taken: waking them
        // would only cost the caller (a VM waiting for its lease) their turns at the lock.
        if (quiet_already && !filling && !short_of_pages)
            g.leave_waiters_asleep();
        file_ = mine.files.take_best_for(pages_).value_or(pool_file{});
        return short_of_pages;
    }

    void end_cold()
    {
        auto g = e_.state->core.lock();
        --slot(*g).cold_allocations;
        if (e_.options.quiet_after_lease > std::chrono::nanoseconds::zero()) // counted from now
            e_.state->quiet.extend(deadline_after(e_.options.quiet_after_lease));
    }

    // Refusals that need no file, made before the pool goes quiet and its files being filled
    // are closed (take_file()): the name asked for is taken, the ready files leave more pages
    // missing than the caller allows cold, or more than the reservoir's cgroup may still be
    // charged or the node has free above the floor, even counting the pages being filled. A caller that asks again and again for what it cannot have (a daemon's
    // warm-only probe, a retrying launcher, a tenant asking for a terabyte every 200 ms) must
    // not keep the refill from its work. take_file() and the checks after it still decide
    // what they see then.
    std::optional<acquire_result> refuse_early() const
    {
        if (const reservoir_directory* dir = e_.directory_of(which_); dir != nullptr && !name_.empty())
            if (const std::string why = dir->name_in_use(name_); !why.empty())
                return acquire_failure(EEXIST, cannot_lease(bytes_, which_) + why);
        std::uint64_t best = 0;
        std::uint64_t filling = 0; // at most what the files being filled will hold (their pages are not free)
        {
            const auto g = e_.state->core.observe();
            const reservoir_slot& mine = g->slots.at(which_);
            best = mine.files.best_for(pages_);
            for (const auto& job : mine.jobs)
                filling += job->goal();
        }
        const std::uint64_t missing = pages_ - std::min(best, pages_);
        if (max_cold_ && missing > *max_cold_)
            return acquire_failure(EAGAIN, cannot_lease(bytes_, which_) + too_cold_reason(best, missing, *max_cold_));
        if (missing <= filling)
            return std::nullopt;
        if (const std::uint64_t room = e_.charge_room(which_, missing - filling); room < missing - filling)
            return acquire_failure(ENOSPC, cannot_lease(bytes_, which_) + over_charge_limit_reason(which_, best, missing, room,
                                                                                               e_.charged.at(which_)->cgroup()));
        const auto node = free_above_floor();
        if (!node || node->above() >= missing - filling)
            return std::nullopt; // unknown: the kernel decides
        return acquire_failure(ENOSPC,
                               cannot_lease(bytes_, which_) + short_of_pages_reason(which_, best, missing, node->available, node->floor));
    }

    // A lease refused as too cold while no ready file is large enough: with the default chunk,
    // the refill makes files of its size from now on, and the smallest ready files go back to
    // the kernel to leave room for one, so that the reservoir's fragmentation lasts one refill
    // of one file (otherwise files of a small lease given earlier would keep a larger one cold
    // for good, although the pages it needs are ready). Sheds at most the lease's pages, and
    // leaves the quiet period and the files being filled alone; an explicit chunk is the
    // operator's choice and is kept. At most once a second per reservoir: a peer asking for
    // sizes in turn cannot keep the refill zeroing again what it sheds.
    void reshape_for_unmet_lease()
    {
        std::vector<pool_file> surplus;
        auto g = e_.state->core.lock();
        reservoir_slot& mine = slot(*g);
        const auto now = pool_clock::now();
        if (!mine.chunk_follows_leases || pages_ > mine.target_pages || mine.files.best_for(pages_) >= pages_ || now < mine.next_reshape)
            return;
        mine.next_reshape = now + reshape_spacing;
        mine.latest_lease_pages = pages_;
        mine.follow_leases();
        surplus = mine.files.shed_to(mine.target_pages - pages_);
        g.unlock(); // `surplus` closes outside the lock: the refill wakes to make the new file
        std::uint64_t shed = 0;
        for (const pool_file& f : surplus)
            shed += f.pages;
        e_.state->counters.at(which_)->add(e_.state->counters.at(which_)->trimmed_pages, shed);
    }

    // The caller allows fewer cold pages than the @p missing ones: refuse before allocating.
    std::optional<acquire_result> refuse_if_too_cold(std::uint64_t missing)
    {
        if (!max_cold_ || missing <= *max_cold_)
            return std::nullopt;
        put_back();
        return acquire_failure(EAGAIN, cannot_lease(bytes_, which_) + too_cold_reason(ready_, missing, *max_cold_));
    }

    // The node's free pages of the lease's size and the reservoir's floor; empty if the
    // kernel's counters cannot be read.
    struct free_pages {
        std::uint64_t available = 0;
        std::uint64_t floor = 0;
        [[nodiscard]] std::uint64_t above() const noexcept { return available > floor ? available - floor : 0; }
    };
    std::optional<free_pages> free_above_floor() const
    {
        try {
            return free_pages{e_.m.available(which_), e_.state->counters.at(which_)->floor_pages.load()};
        } catch (const std::exception&) {
            return std::nullopt;
        }
    }

    // The node cannot give the @p missing pages above the floor: refuse before allocating
    // any (the kernel would zero every free page of the node in this thread, then fail).
    std::optional<acquire_result> refuse_if_node_lacks(std::uint64_t missing)
    {
        const auto node = free_above_floor();
        if (!node)
            return std::nullopt; // the counters cannot tell: let the kernel decide
        if (node->above() < missing) {
            put_back();
            return acquire_failure(ENOSPC, cannot_lease(bytes_, which_)
                                               + short_of_pages_reason(which_, ready_, missing, node->available, node->floor));
        }
        if (const std::uint64_t room = e_.charge_room(which_, missing); room < missing) {
            put_back();
            return acquire_failure(ENOSPC, cannot_lease(bytes_, which_) + over_charge_limit_reason(which_, ready_, missing, room,
                                                                                               e_.charged.at(which_)->cgroup()));
        }
        return std::nullopt;
    }

    std::optional<acquire_result> trim()
    {
        if (const int error = e_.m.files().resize(file_.fd.get(), which_.size, pages_); error != 0) {
            e_.state->counters.at(which_)->record_error(error);
            put_back(); // unchanged: still ready
            return acquire_failure(error, cannot_lease(bytes_, which_) + "trimming a reservoir file to the lease's size failed");
        }
        e_.state->counters.at(which_)->add(e_.state->counters.at(which_)->trimmed_pages, file_.pages - pages_);
        file_.pages = pages_;
        return std::nullopt;
    }

    // Allocates the pages [file.pages, pages) on the node, in parallel where QEMU's rule gives
    // more than one thread (see cold_fill), checking the stop token between steps.
    std::optional<acquire_result> grow()
    {
        hugetlb_files& files = e_.files_for(which_);
        const std::uint64_t had = file_.pages;
        const auto fail = [&](int error, const char* call) {
            const std::uint64_t got = pages_in_file_now() - had;
            roll_back(had);
            return acquire_failure(error, cannot_lease(bytes_, which_)
                                              + cold_failure_reason(error, call, ready_, pages_ - had, got, which_));
        };
        if (!file_.fd) {
            const std::string memfd_name = name_.empty() ? pool_file_name(which_) : name_;
            if (const int error = e_.create_file(which_, file_, memfd_name); error != 0)
                return acquire_failure(error, cannot_lease(bytes_, which_)
                                                  + (e_.directory_of(which_) ? "creating a file in " + e_.directory_of(which_)->path().string()
                                                                             : std::string("memfd_create"))
                                                  + " failed" + permission_hint(error));
        }
        int error = 0;
        const auto binding = files.bind_calling_thread(which_.node, error);
        if (!binding)
            return fail(error, "binding the thread's memory to the node (set_mempolicy)");
        if ((error = files.resize(file_.fd.get(), which_.size, pages_)) != 0)
            return fail(error, "ftruncate");
        cold_fill fill(files, e_.m.topology().node(which_.node).cpus, which_.node, which_.size, e_.step_pages(which_.size));
        if ((error = fill.run(file_.fd.get(), had, pages_, stop_)) != 0)
            return fail(error, error == ECANCELED ? "" : fill.threads() > 1 ? "MADV_POPULATE_WRITE" : "fallocate");
        file_.pages = pages_;
        return std::nullopt;
    }

    acquire_result hand_over(std::uint64_t cold)
    {
        if (auto failed = rename_for_lease(cold))
            return std::move(*failed);

        reservoir_counters& c = *e_.state->counters.at(which_);
        c.add(c.leases_served, 1);
        c.add(c.leases_out, 1);
        c.add(c.leased_pages, pages_);
        c.add(c.warm_pages_served, pages_ - cold);
        c.add(c.cold_pages_served, cold);
        acquire_result result;
        result.lease = with_own_description(cold);
        return result;
    }

    // A named reservoir's file takes the lease's name, so that the next pool on the directory
    // does not adopt it while it is leased. If the name is taken, the file goes back as it was.
    std::optional<acquire_result> rename_for_lease(std::uint64_t cold)
    {
        if (!file_.name)
            return std::nullopt;
        const std::string name = reservoir_directory::lease_name(name_);
        const int error = file_.name.rename_to(name);
        if (error == 0)
            return std::nullopt;
        const std::string where = file_.name.path().parent_path().string();
        if (cold > 0)
            roll_back(pages_ - cold); // the pages it had before it grew
        else
            put_back();
        if (const reservoir_directory* dir = e_.directory_of(which_); error == EEXIST && dir != nullptr)
            return acquire_failure(error, cannot_lease(bytes_, which_) + dir->name_in_use(name));
        return acquire_failure(error, cannot_lease(bytes_, which_) + "cannot name its file " + name + " in " + where + ": "
                                          + std::strerror(error));
    }

    // The lease gets a description of its own; the pool keeps the file's, to prove later that
    // the lease is gone for good (recycle()). Without one (no /proc), the lease gets the file's.
    lease with_own_description(std::uint64_t cold)
    {
        const int own = file_.lease_fd ? file_.lease_fd.release() : e_.m.files().reopen(file_.fd.get());
        if (own < 0)
            return lease_access::make(std::move(file_.fd), which_, pages_, cold, e_.state, 0, std::move(file_.name));
        const std::uint64_t ticket = e_.state->descriptions.add(std::move(file_.fd));
        return lease_access::make(unique_fd(own), which_, pages_, cold, e_.state, ticket, std::move(file_.name));
    }

    std::uint64_t pages_in_file_now() const
    {
        if (!file_.fd)
            return file_.pages;
        const file_pages counted = e_.m.files().pages_in(file_.fd.get(), which_.size);
        return counted.error == 0 ? std::max(counted.pages, file_.pages) : file_.pages;
    }

    // After a failed grow: pages allocated for the lease go back to the kernel; a reservoir
    // file goes back to the reservoir cut to its ready pages (every one zero and never mapped),
    // or is dropped, counted as an error, if it cannot be cut.
    void roll_back(std::uint64_t had)
    {
        if (had == 0) {
            file_ = {}; // closing a file of its own frees it
            auto g = e_.state->core.lock();
            forget_lease_size(slot(*g));
            return;
        }
        if (const int error = e_.m.files().resize(file_.fd.get(), which_.size, had); error != 0) {
            e_.state->counters.at(which_)->record_error(error);
            file_ = {};
            return;
        }
        file_.pages = had;
        put_back();
    }

    // Gives the taken file back to the reservoir (whole files above target go to the kernel).
    void put_back()
    {
        std::vector<pool_file> surplus;
        auto g = e_.state->core.lock();
        reservoir_slot& mine = slot(*g);
        forget_lease_size(mine);
        mine.files.add(std::move(file_));
        surplus = mine.files.shed_to(mine.target_pages);
        g.unlock(); // `surplus` closes outside the lock
    }

    // A lease not made is not the latest lease (unless another came since).
    void forget_lease_size(reservoir_slot& mine) const noexcept
    {
        if (mine.latest_lease_pages == pages_)
            mine.latest_lease_pages = previous_lease_pages_;
        mine.follow_leases();
    }

    // How long an acquire waits for workers to leave the files it wants: they do after their
    // step (at most one page's zeroing for 1 GiB pages, ~35-250 ms); this is a safety net.
    static constexpr std::chrono::seconds yield_timeout{2};
    // The least time between two reshapes of a reservoir (reshape_for_unmet_lease()).
    static constexpr std::chrono::seconds reshape_spacing{1};

    pool_engine& e_;
    hstate which_;
    std::uint64_t bytes_;
    std::uint64_t pages_;
    std::optional<std::uint64_t> max_cold_;
    std::stop_token stop_;
    std::string name_; // acquire_options::name
    pool_file file_;
    std::uint64_t ready_ = 0; // pages the taken file had
    std::uint64_t previous_lease_pages_ = 0;
};

} // namespace hugezero::detail

#endif
