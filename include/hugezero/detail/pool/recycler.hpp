/// @file
/// @brief Internals of hugezero::pool: taking a lease back for reuse, once the pool's own
/// description of its file is provably the last reference to it.
#ifndef HUGEZERO_DETAIL_RECYCLER_HPP
#define HUGEZERO_DETAIL_RECYCLER_HPP

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>

#include <hugezero/detail/pool/pool_state.hpp>
#include <hugezero/error.hpp>
#include <hugezero/lease.hpp>
#include <hugezero/recycle_result.hpp>

namespace hugezero::detail {

/// Decides what becomes of a file given back (pool::recycle(), pool::retire(), and later the
/// refill for a file that was still referred to). A file is recycled only where its reservoir
/// recycles (reservoir_options::recycle), the caller did not retire it, and the pool's own
/// description of it is the last reference (hugetlb_files::sole_reference()); while it is not,
/// the file waits, and is looked at again every retry period. Every other file is emptied at
/// once (cut to 0 pages: its pages go back to the kernel, which zeroes them before anyone gets
/// them, and whoever still maps it gets SIGBUS) and its name removed, so nothing a tenant kept
/// can reach a page after it was given back. Room in the reservoir is reserved under the pool's
/// lock, so that recycles racing each other and the refill never overfill it.
class recycler {
public:
    recycler(pool_engine& engine, const hstate& h) : e_(engine), h_(h), c_(*engine.state->counters.at(h)) {}

    /// Takes @p l back (it is left closed): recycled if @p may_recycle and its reservoir
    /// recycles, else emptied. @throws hugezero::closed_handle_error if @p l is closed;
    /// std::invalid_argument if the pool did not make it.
    static recycle_result take_back(pool_engine& e, lease& l, bool may_recycle)
    {
        if (!l)
            throw closed_handle_error("pool::recycle() of a closed lease");
        if (lease_access::owner_of(l) != e.state.get())
            throw std::invalid_argument("hugezero: pool::recycle() of a lease this pool did not make (" + to_string(l.which()) + ")");
        const hstate h = l.which();
        pool_file file;
        file.pages = l.pages();
        file.name = lease_access::take_name(l); // removed at the end unless the pool keeps the file
        unique_fd own = e.state->descriptions.take(lease_access::ticket_of(l));
        unique_fd lease_fd = lease_access::take_fd(l); // counted as a lease returned
        recycler r(e, h);
        const bool own_description = static_cast<bool>(own);
        file.fd = own_description ? std::move(own) : std::move(lease_fd);
        lease_fd.reset();
        if (!may_recycle)
            return r.refuse(std::move(file), recycle_status::emptied, "it was retired (pool::retire())");
        if (!r.c_.listed)
            return r.refuse(std::move(file), recycle_status::no_reservoir, "the pool has no reservoir for " + to_string(h));
        if (!r.c_.recycle)
            return r.refuse(std::move(file), recycle_status::emptied, "recycling is off for this reservoir (reservoir_options::recycle)");
        if (!own_description)
            return r.refuse(std::move(file), recycle_status::unverifiable,
                            "the pool has no description of its own of the file to tell when the lease is gone "
                            "(/proc/self/fd could not be opened when it was made)");
        return r.settle(std::move(file), true, true);
    }

    /// Looks again at @p r, a file of @p h given back while still referred to: it is
    /// recycled (unless it is only to be reclaimed), waits again, or is emptied.
    static void look_again(pool_engine& e, const hstate& h, returned_file r)
    {
        (void)recycler(e, h).settle(std::move(r.file), false, !r.reclaim_only);
    }

private:
    recycle_result settle(pool_file file, bool first_time, bool may_recycle)
    {
        std::string holder;
        const int sole = e_.m.files().sole_reference(file.fd.get(), holder);
        if (sole == EBUSY)
            return wait(std::move(file), holder, first_time, may_recycle);
        if (first_time == false)
            c_.waiting_pages.fetch_sub(file.pages, std::memory_order_relaxed);
        if (sole != 0) // fails closed: a file not proven unused is never served again
            return refuse(std::move(file), recycle_status::unverifiable,
                          std::string("cannot tell whether the lease is gone: ") + std::strerror(sole)
                              + (holder.empty() ? permission_note(sole) : " (" + holder + ")"));
        if (!may_recycle)
            return refuse(std::move(file), recycle_status::emptied, "a lease the pool before this one served, unused now");
        if (!in_shape(file))
            return refuse(std::move(file), recycle_status::unusable,
                          "the file is no longer exactly its " + std::to_string(file.pages)
                              + " pages with one name (resized, holed, or linked elsewhere)");
        const std::uint64_t keep = reserve(file.pages);
        if (keep == 0)
            return refuse(std::move(file), recycle_status::reservoir_full, "the reservoir of " + to_string(h_) + " is at its target");
        return scrub(std::move(file), keep);
    }

    // Whether @p file is still exactly the lease's pages (cut_to_shape()).
    bool in_shape(const pool_file& file) { return cut_to_shape(e_.m.files(), file.fd.get(), h_.size, file.pages); }

    static std::string permission_note(int error)
    {
        return error == EACCES || error == EPERM ? " (a write lease needs the file's owner or CAP_LEASE)" : "";
    }

    recycle_result wait(pool_file file, const std::string& holder, bool first_time, bool may_recycle)
    {
        const std::uint64_t pages = file.pages;
        {
            auto g = e_.state->core.lock();
            g->slots.at(h_).returned.push_back({std::move(file), deadline_after(e_.options.retry_period), !may_recycle});
        }
        if (first_time) {
            c_.add(c_.returned_leases, 1);
            c_.add(c_.waiting_pages, pages);
        }
        return {recycle_status::deferred, 0,
                "hugezero: " + to_string(h_) + " lease not recycled yet: the file is still in use"
                    + (holder.empty() ? std::string() : " (" + holder + ")") + "; it will be once nothing else refers to it"};
    }

    // Reserves room for up to @p pages in the reservoir (they count as planned from now on, so
    // the refill does not allocate them meanwhile). Returns the pages reserved. A refill in
    // progress gives way to a file that is already there: its workers leave it after their
    // step, and if the reservoir then holds more than its target, its smallest files go (the
    // refill's, cut short) once the scrub is done.
    std::uint64_t reserve(std::uint64_t pages)
    {
        auto g = e_.state->core.lock();
        reservoir_slot& slot = g->slots.at(h_);
        const std::uint64_t there = slot.files.ready_pages() + slot.scrub_pages;
        const std::uint64_t keep = std::min(pages, slot.target_pages > there ? slot.target_pages - there : 0);
        if (keep > 0 && slot.planned_pages() + keep > slot.target_pages) {
            slot.close_jobs();
            e_.wake_floor_waiters();
        }
        slot.scrub_pages += keep;
        return keep;
    }

    recycle_result scrub(pool_file file, std::uint64_t keep)
    {
        const std::uint64_t pages = file.pages;
        if (keep < pages) {
            if (const int error = e_.m.files().resize(file.fd.get(), h_.size, keep); error != 0) {
                auto g = e_.state->core.lock();
                g->slots.at(h_).scrub_pages -= keep;
                g.unlock();
                c_.record_error(error);
                return refuse(std::move(file), recycle_status::unusable, std::string("the file could not be cut to the room left in the reservoir: ")
                                                            + std::strerror(error));
            }
            c_.add(c_.trimmed_pages, pages - keep);
            file.pages = keep;
        }
        if (reservoir_directory* dir = e_.directory_of(h_); dir != nullptr && file.name)
            (void)dir->make_ready(file.name); // if not, it keeps the lease's name: served all the same
        {
            auto g = e_.state->core.lock(); // announced on unlock: a worker takes it
            g->slots.at(h_).scrub_queue.push_back({std::move(file), 0});
        }
        c_.add(c_.recycled_leases, 1);
        c_.add(c_.recycled_pages, keep);
        c_.add(c_.scrubbing_pages, keep);
        return {recycle_status::recycled, keep,
                "hugezero: " + to_string(h_) + " lease recycled: " + std::to_string(keep) + " of its " + std::to_string(pages)
                    + " pages are scrubbed, then served again"};
    }

    // Empties @p file (its pages go back to the kernel now, whatever still refers to it: a
    // mapping left gets SIGBUS, a descriptor kept sees an empty file), removes its name, and
    // counts it.
    recycle_result refuse(pool_file file, recycle_status why, std::string reason)
    {
        if (const int error = e_.m.files().resize(file.fd.get(), h_.size, 0); error != 0)
            c_.record_error(error); // the pages go back once nothing refers to the file
        file = {};
        e_.state->pages_went_back(h_.node);
        c_.add(c_.recycles_refused, 1);
        return {why, 0, "hugezero: " + to_string(h_) + " lease not recycled: " + std::move(reason)
                            + "; its file was emptied, its pages back to the kernel"};
    }

    pool_engine& e_;
    hstate h_;
    reservoir_counters& c_;
};

} // namespace hugezero::detail

#endif
