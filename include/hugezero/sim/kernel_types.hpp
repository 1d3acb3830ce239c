/// @file
/// @brief The simulated kernel's switches, operations and what it reports: the types of
/// sim::kernel's interface.
#ifndef HUGEZERO_SIM_KERNEL_TYPES_HPP
#define HUGEZERO_SIM_KERNEL_TYPES_HPP

#include <chrono>
#include <cstdint>
#include <map>
#include <string>

#include <hugezero/hstate.hpp>
#include <hugezero/node_id.hpp>

namespace hugezero::sim {

/// What a write of `x` larger than the zeroable count does (ABI.md §3 leaves it open).
enum class out_of_range_policy {
    einval, ///< The write fails with `EINVAL` and zeroes nothing (the sibling stores' convention).
    clamp,  ///< The write zeroes what there is and succeeds.
};

/// What a signal does to a zeroing write in progress (ABI.md §3 leaves it open). In every case
/// the kernel notices the signal only between pages.
enum class signal_policy {
    eintr,           ///< The write stops and fails with `EINTR`.
    restart,         ///< The write restarts from the beginning (`-ERESTARTSYS` with `SA_RESTART`).
    partial_success, ///< The write stops and returns the full count, like `nr_hugepages` does.
};

/// How the simulated kernel spends a page's zeroing time.
enum class work_mode {
    wait,   ///< Sleep for the page's cost: cheap on CPU, exact in time.
    memset, ///< memset() the page's bytes (over a capped buffer), then sleep out any remaining cost.
};

/// A fault-injection target: which operation on an attribute fails.
enum class operation {
    open,  ///< Opening the attribute (for reading, writing or watching).
    read,  ///< Reading it.
    write, ///< Writing a request to it.
};

/// A hugetlb file operation, for fault injection (kernel::fail_next(file_operation, ...)).
enum class file_operation {
    create,   ///< Creating a file (memfd_create).
    allocate, ///< Allocating pages (fallocate).
    map,      ///< Mapping a file to fault its pages in (mmap).
    populate, ///< Faulting pages in (`MADV_POPULATE_WRITE`).
    resize,   ///< Setting a file's size (ftruncate).
    stat,     ///< Counting a file's pages (fstat).
    bind,     ///< Binding a thread's memory to a node (set_mempolicy).
    scrub,    ///< Writing zeros to a file's pages from user space (a recycled file's scrub).
    reopen,   ///< Opening a file anew (a lease's own description, through /proc/self/fd).
    lease,    ///< Asking whether a description is a file's last reference (F_SETLEASE).
};

/// Where a simulated hugetlb file's pages are (kernel::file_layout()).
struct page_layout {
    std::uint64_t size_pages = 0;                    ///< The file's size, in pages.
    std::map<node_id, std::uint64_t> pages_per_node; ///< The pages it holds, per node (a hole holds none).
};

/// What the simulated kernel did with hugetlb files since it was built: the ground truth pool
/// tests compare the pool's statistics with.
struct file_statistics {
    std::uint64_t files_created = 0;   ///< Files created.
    std::uint64_t files_open = 0;      ///< Files still referred to by some descriptor.
    std::uint64_t pages_in_files = 0;  ///< Pages those files hold now.
    std::uint64_t pages_allocated = 0; ///< Pages ever added to files (allocate and populate).
    std::uint64_t pages_scrubbed = 0;  ///< File pages zeroed from user space (scrub).
    std::uint64_t pages_returned = 0;  ///< Pages given back (resize down, last close).
    std::uint64_t calls = 0;           ///< File operations so far, also those that failed.
    std::uint64_t calls_failed = 0;    ///< Of those, failed by fault injection.
    /// The most pages of one file the kernel was zeroing at the same moment: 1 when its
    /// allocations were serialised (fallocate()s hold the inode lock), more when populates ran
    /// beside them.
    unsigned most_pages_zeroing_in_one_file = 0;
    /// The most file pages the kernel was zeroing at the same moment, in any files.
    unsigned most_pages_zeroing = 0;
    /// File pages the kernel is zeroing right now.
    unsigned pages_zeroing_now = 0;
};

/// Pages of one hstate by state. Every page is in exactly one state.
struct page_counts {
    std::uint64_t dirty = 0;   ///< Free and not zeroed: what `zeroable_hugepages` reports.
    std::uint64_t zeroed = 0;  ///< Free and already zeroed.
    std::uint64_t zeroing = 0; ///< Free and being zeroed by a writer right now.
    std::uint64_t in_use = 0;  ///< Allocated to a consumer.
    std::uint64_t surplus = 0; ///< Reported as `surplus_hugepages` (not otherwise modelled).

    /// `free_hugepages`: every free page, zeroed or not.
    [[nodiscard]] std::uint64_t free() const noexcept { return dirty + zeroed + zeroing; }
    /// `nr_hugepages`: every page.
    [[nodiscard]] std::uint64_t total() const noexcept { return free() + in_use; }
};

/// What the simulated kernel did for one hstate since it was built: the ground truth tests
/// compare hugezero's own statistics with.
struct zeroing_statistics {
    std::uint64_t pages_zeroed_by_writes = 0;     ///< Pages zeroed through `zeroable_hugepages`.
    std::uint64_t pages_zeroed_on_allocation = 0; ///< Dirty pages a consumer had to zero itself.
    std::uint64_t writes = 0;                     ///< Writes that passed the range check (restarts included).
    std::uint64_t writes_rejected = 0;            ///< Writes above the zeroable count (`EINVAL`); malformed ones are not counted.
    std::uint64_t writes_interrupted = 0;         ///< Writes cut short by a signal.
    std::uint64_t writes_restarted = 0;           ///< Writes restarted after a signal.
    /// Pages that writes were asked for but found taken, by consumers allocating dirty pages or
    /// by other writers, before they got to them: such a write ends early and still succeeds.
    std::uint64_t pages_short_in_writes = 0;
    std::uint64_t notifications = 0;              ///< Notifications sent.
    std::uint64_t notifications_suppressed = 0;   ///< Notifications dropped by the rate limit.
};

/// What allocate() handed out.
struct allocation {
    std::uint64_t pages = 0;              ///< Pages now in use by the consumer.
    std::uint64_t zeroed_on_the_spot = 0; ///< Of those, pages that were dirty and zeroed in the caller.
};

/// Asks, between pages, whether the writer has a signal pending (consuming it). The in-process
/// backend answers from hugezero's signal handler; the FUSE emulator from FUSE_INTERRUPT.
using interrupt_probe = std::function<bool()>;

} // namespace hugezero::sim

#endif
