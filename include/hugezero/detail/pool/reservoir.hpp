/// @file
/// @brief Internals of hugezero::pool: a reservoir's ready files, which keep their own
/// invariants (best fit for a lease, which file the refill grows, what goes when the target
/// falls).
#ifndef HUGEZERO_DETAIL_RESERVOIR_HPP
#define HUGEZERO_DETAIL_RESERVOIR_HPP

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include <hugezero/detail/pool/reservoir_counters.hpp>
#include <hugezero/detail/pool/reservoir_directory.hpp>
#include <hugezero/unique_fd.hpp>

namespace hugezero::detail {

/// A hugetlb file of the pool and how many pages it holds: every page in [0, pages) is
/// allocated and zero, and the file's size is exactly that.
struct pool_file {
    unique_fd fd;
    std::uint64_t pages = 0;
    /// Another description of the file, made ahead (off the VM's start path) for the lease that
    /// takes it (see lease_maker); empty until then.
    unique_fd lease_fd = {};
    /// Its name in a named reservoir's directory (removed with the file); none for a memfd.
    file_name name = {};
};

/// A recycled file waiting for (or in) its scrub: pages [0, done) are zero again.
struct scrub_item {
    pool_file file;
    std::uint64_t done = 0;
};

/// A file given back by pool::recycle() that something else still referred to: looked at
/// again at check_at, recycled once the pool's description is the last reference.
struct returned_file {
    pool_file file;
    std::chrono::steady_clock::time_point check_at;
    /// A file to empty once unused, never to recycle: a lease a previous pool served in a
    /// named reservoir, found by this one.
    bool reclaim_only = false;
};

/// The ready files of one reservoir: none is being filled or leased. ready_pages() is always
/// their sum, and the counters always show it. Under the pool's lock.
class reservoir {
public:
    /// An empty reservoir that publishes its level to @p counters.
    explicit reservoir(reservoir_counters& counters) : counters_(&counters) {}

    /// Pages in ready files.
    [[nodiscard]] std::uint64_t ready_pages() const noexcept { return ready_; }
    /// Ready files.
    [[nodiscard]] std::size_t files() const noexcept { return files_.size(); }

    /// Adds @p file (a file of no pages is closed instead).
    void add(pool_file file)
    {
        if (file.pages == 0)
            return;
        ready_ += file.pages;
        files_.push_back(std::move(file));
        publish();
    }

    /// The pages of the file that best serves a lease of @p pages: one of exactly that size,
    /// else the smallest larger one (trimmed, nothing cold), else the largest smaller one (the
    /// rest allocated cold); 0 if there is no file.
    [[nodiscard]] std::uint64_t best_for(std::uint64_t pages) const
    {
        const auto best = pick_best_for(pages);
        return best ? files_[*best].pages : 0;
    }
    /// Takes that file. Empty if there is none.
    std::optional<pool_file> take_best_for(std::uint64_t pages) { return take(pick_best_for(pages)); }

    /// Takes the largest file smaller than @p chunk_pages, for the refill to grow (a file that
    /// a lease, a stop or a pause cut short). Empty if there is none.
    std::optional<pool_file> take_largest_below(std::uint64_t chunk_pages)
    {
        const auto index = pick([](const pool_file& candidate, const pool_file& best) { return candidate.pages > best.pages; },
                                [chunk_pages](const pool_file& f) { return f.pages < chunk_pages; });
        return take(index);
    }

    /// Whole files, smallest first (large files serve large leases), taken out while the rest
    /// still meets @p target_pages: the target fell, or a file came back above it.
    std::vector<pool_file> shed_to(std::uint64_t target_pages)
    {
        std::vector<pool_file> surplus;
        while (ready_ > target_pages) {
            const auto smallest = pick([](const pool_file& candidate, const pool_file& best) { return candidate.pages < best.pages; });
            if (!smallest || ready_ - files_[*smallest].pages < target_pages)
                break;
            surplus.push_back(*take(smallest));
        }
        return surplus;
    }

    /// After shed_to(): the smallest file, and the size it must be cut to so that the
    /// reservoir holds @p target_pages. Empty when the reservoir holds no more than that.
    std::optional<std::pair<pool_file, std::uint64_t>> take_excess(std::uint64_t target_pages)
    {
        if (ready_ <= target_pages)
            return std::nullopt;
        const auto smallest = pick([](const pool_file& candidate, const pool_file& best) { return candidate.pages < best.pages; });
        const std::uint64_t cut_to = files_[*smallest].pages - (ready_ - target_pages);
        return std::pair{*take(smallest), cut_to};
    }

    /// Every file.
    std::vector<pool_file> take_all()
    {
        std::vector<pool_file> all = std::move(files_);
        files_.clear();
        ready_ = 0;
        publish();
        return all;
    }

private:
    std::optional<std::size_t> pick_best_for(std::uint64_t pages) const
    {
        return pick([pages](const pool_file& candidate, const pool_file& best) {
            const bool candidate_fits = candidate.pages >= pages;
            const bool best_fits = best.pages >= pages;
            if (candidate_fits != best_fits)
                return candidate_fits;
            return candidate_fits ? candidate.pages < best.pages : candidate.pages > best.pages;
        });
    }

    // The index of the file that `better` prefers among those `eligible` allows.
    template <class Better, class Eligible = bool (*)(const pool_file&)>
    std::optional<std::size_t> pick(Better better, Eligible eligible = [](const pool_file&) { return true; }) const
    {
        std::optional<std::size_t> best;
        for (std::size_t i = 0; i < files_.size(); ++i)
            if (eligible(files_[i]) && (!best || better(files_[i], files_[*best])))
                best = i;
        return best;
    }

    std::optional<pool_file> take(std::optional<std::size_t> index)
    {
        if (!index)
            return std::nullopt;
        pool_file file = std::move(files_[*index]);
        files_.erase(files_.begin() + static_cast<std::ptrdiff_t>(*index));
        ready_ -= file.pages;
        publish();
        return file;
    }

    void publish() noexcept
    {
        counters_->ready_pages.store(ready_, std::memory_order_relaxed);
        counters_->ready_files.store(files_.size(), std::memory_order_relaxed);
    }

    reservoir_counters* counters_;
    std::vector<pool_file> files_;
    std::uint64_t ready_ = 0;
};

} // namespace hugezero::detail

#endif
