/// @file
/// @brief Internals of hugezero::pool: a reservoir file being filled, shared by the node's
/// refill workers step by step.
#ifndef HUGEZERO_DETAIL_FILL_JOB_HPP
#define HUGEZERO_DETAIL_FILL_JOB_HPP

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <utility>

#include <hugezero/detail/pool/reservoir.hpp>
#include <hugezero/detail/pool/reservoir_counters.hpp>
#include <hugezero/hugetlb_files.hpp>

namespace hugezero::detail {

/// Pages [first, first + count) of a file being filled.
struct fill_step {
    std::uint64_t first = 0;
    std::uint64_t count = 0;
};

/// A reservoir file being filled up to a goal. Workers take its steps in order, so the pages
/// done form a prefix of the file, but for steps still in progress and those past a failed
/// one: when the job ends, the file is cut back to that prefix (pages past it go back to the
/// kernel), and so joins the reservoir with every page in [0, pages) allocated. The file's
/// size is the goal while it fills. The worker that starts the job fallocate()s its steps;
/// where other workers may help, it first maps the file once (share()), and they fault their
/// steps in through that mapping. Under the pool's lock.
class fill_job {
public:
    /// Fills @p file, whose size is already @p goal pages, from its pages on.
    fill_job(pool_file file, std::uint64_t goal)
        : file_(std::move(file)), goal_(goal), initial_(file_.pages), next_(initial_), prefix_(initial_)
    {
    }

    /// Whether a worker of the job may take a step now.
    [[nodiscard]] bool takes_steps() const noexcept { return !closed() && next_ < goal_; }
    /// Whether another worker may join the job now: only once its starter shared a window on
    /// the file (mapping it later would wait for the starter's step in progress).
    [[nodiscard]] bool joinable() const noexcept { return window_ && takes_steps(); }
    /// Opens the job to other workers, who fault their steps in through @p window.
    void share(std::unique_ptr<populate_window> window) noexcept { window_ = std::move(window); }
    /// The window joiners use; null until share().
    [[nodiscard]] populate_window* window() const noexcept { return window_.get(); }
    /// Takes the window away (to unmap it outside the pool's lock), once no worker uses it.
    [[nodiscard]] std::unique_ptr<populate_window> take_window() noexcept { return std::move(window_); }
    /// Whether the job takes no more steps. Lock-free, for workers waiting elsewhere.
    [[nodiscard]] bool closed() const noexcept { return closed_.load(); }
    /// The next step, of at most @p most pages (at least one). Only when takes_steps().
    fill_step take(std::uint64_t most) noexcept
    {
        const fill_step step{next_, std::min(most, goal_ - next_)};
        next_ += step.count;
        return step;
    }
    /// @p step ended with @p error (0: every page of it is there).
    void done(const fill_step& step, int error)
    {
        if (error != 0) {
            fail(error);
            return;
        }
        done_beyond_prefix_.emplace(step.first, step.count);
        for (auto it = done_beyond_prefix_.begin(); it != done_beyond_prefix_.end() && it->first == prefix_;
             it = done_beyond_prefix_.erase(it))
            prefix_ += it->second;
    }
    /// No worker takes another step: a lease wants the file (or the pool goes quiet).
    void close() noexcept { closed_.store(true); }
    /// Something failed with @p error: no more steps, and the job ends with that error.
    void fail(int error) noexcept
    {
        closed_.store(true);
        if (error_ == 0)
            error_ = error;
    }

    /// A worker joins the job.
    void join() noexcept { ++workers_; }
    /// A worker leaves it, for @p why (none: the job gave it no more steps). Returns whether it
    /// was the last: then it finishes the job (finishing() is true from now on).
    bool leave(refill_hold why) noexcept
    {
        last_hold_ = why;
        if (--workers_ != 0)
            return false;
        closed_.store(true);
        finishing_ = true;
        return true;
    }
    /// Whether the last worker is finishing the job (it is still registered until then).
    [[nodiscard]] bool finishing() const noexcept { return finishing_; }

    /// The file (its pages field is the prefix once finishing).
    [[nodiscard]] pool_file& file() noexcept { return file_; }
    [[nodiscard]] std::uint64_t goal() const noexcept { return goal_; }
    /// The pages the job adds to the reservoir if it reaches its goal.
    [[nodiscard]] std::uint64_t growth() const noexcept { return goal_ - initial_; }
    /// Pages in [0, prefix) are all there.
    [[nodiscard]] std::uint64_t prefix() const noexcept { return prefix_; }
    /// Every page the file got: the prefix, and steps done past it.
    [[nodiscard]] std::uint64_t done_pages() const noexcept
    {
        std::uint64_t pages = prefix_;
        for (const auto& [first, count] : done_beyond_prefix_)
            pages += count;
        return pages;
    }
    /// The first failure's errno, or 0.
    [[nodiscard]] int error() const noexcept { return error_; }
    /// Why the last worker left.
    [[nodiscard]] refill_hold last_hold() const noexcept { return last_hold_; }

private:
    pool_file file_;
    std::unique_ptr<populate_window> window_; // after file_: unmapped before the file closes
    std::uint64_t goal_;
    std::uint64_t initial_;
    std::uint64_t next_;
    std::uint64_t prefix_;
    std::map<std::uint64_t, std::uint64_t> done_beyond_prefix_; // first page -> count
    unsigned workers_ = 0;
    std::atomic<bool> closed_{false};
    bool finishing_ = false;
    int error_ = 0;
    refill_hold last_hold_ = refill_hold::none;
};

} // namespace hugezero::detail

#endif
