/// @file
/// @brief hugezero::pool_options and hugezero::reservoir_options: what a pool keeps ready, and how
/// it refills.
#ifndef HUGEZERO_POOL_OPTIONS_HPP
#define HUGEZERO_POOL_OPTIONS_HPP

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <vector>

#include <hugezero/hstate.hpp>
#include <hugezero/thread_settings.hpp>

namespace hugezero {

/// What one reservoir (one node and page size) keeps ready.
struct reservoir_options {
    /// The node and page size.
    hstate which{node_id(0), page_2mib};
    /// How much memory to keep allocated and zeroed, in bytes, rounded up to whole pages.
    std::uint64_t target_bytes = 0;
    /// The size of each reservoir file, rounded up to whole pages; 0 means: follow the leases
    /// (target_bytes until the first lease, then the size of the latest lease).
    ///
    /// A lease is one file, and pages cannot move between files: a lease is served warm only up
    /// to the size of the largest ready file, and a smaller one gives the file's excess pages
    /// back to the kernel. Set it to the size of the VMs you start (a lease of exactly a file's
    /// size is a hand-over of microseconds, and the other files stay for the next VMs). By
    /// default the first lease (of any size up to the target) is warm, and the refill then
    /// makes files of that lease's size, so the next VM of that size is warm too, and the
    /// reservoir holds as many of them as the target allows. docs/pool.md, "Sizing chunks".
    /// Either way every refill worker of the node helps fill the file being filled.
    std::uint64_t chunk_bytes = 0;
    /// Free huge pages of this size the pool always leaves on the node, for everyone else:
    /// neither the refill nor an acquire() takes the node below it.
    std::uint64_t floor_pages = 0;
    /// A cgroup v2 directory to charge the reservoir's pages to (its `hugetlb.<size>.current`);
    /// empty: the pool's own process's cgroup, as any allocation. The kernel charges a hugetlb
    /// page to the cgroup of the process that allocates it, and a process's threads all share
    /// its cgroup, so the pool allocates these pages (refill and cold pages of its leases) in
    /// helper processes it starts in that cgroup (`clone3(CLONE_INTO_CGROUP)`), one per
    /// allocating thread, which end with the pool. The directory must have the hugetlb
    /// controller enabled and no child cgroups with controllers (cgroup v2 places no process
    /// in such a one); the pool's constructor says otherwise, naming it. A charge stays with its
    /// page until the page goes back to the kernel, whoever holds the lease. Real kernel only.
    std::filesystem::path cgroup{};
    /// A directory on a hugetlbfs mount of this page size (`mount -t hugetlbfs -o pagesize=2M
    /// none /dev/hugepages-2M`) to keep the reservoir's files in, named; empty: memfds. A
    /// lease from it is then also a path (lease::path()) that QEMU (`mem-path=`), Cloud
    /// Hypervisor (`--memory-zone file=`) or libvirt's file memory backing can open, named as
    /// the caller asks (acquire_options::name). The reservoir outlives the pool: its ready
    /// files stay when the pool ends, and the next pool on the directory adopts them (and
    /// scrubs them before serving: their content is not trusted). One pool at a time holds a
    /// directory (an exclusive `flock()`); the constructor says, naming it, if another does or
    /// it is not a hugetlbfs of this page size. Real kernel only. docs/pool.md, "Named
    /// reservoirs".
    std::filesystem::path directory{};
    /// Whether pool::recycle() takes leases of this reservoir back for reuse (scrubbed, then
    /// served to the next tenant) rather than emptying them (their pages back to the kernel).
    /// Off by default: a tenant can keep a way back into a file it gave back that no search
    /// can see (a descriptor in flight in a socket it keeps, pages spliced into a pipe), so
    /// recycling is only for leases of tenants you trust; the refill makes new pages either
    /// way. docs/pool.md, "Recycling".
    bool recycle = false;
};

/// How a pool runs.
struct pool_options {
    /// The reservoirs to keep filled; each hstate at most once. Hstates not listed can still be
    /// leased: every page is then allocated on the spot (cold).
    std::vector<reservoir_options> reservoirs;
    /// Refill workers per node with a listed reservoir; 0 means one per CPU of the node. They
    /// share the file being filled, page range by page range, so two fill it about twice as
    /// fast as one where the machine's memory bandwidth allows.
    unsigned workers_per_node = 1;
    /// The most the whole pool refills per second, in bytes; 0 means no limit.
    std::uint64_t refill_bytes_per_second = 0;
    /// The most one refill step allocates, rounded down to whole pages (at least one page: a
    /// 1 GiB page is one step). The floor and the rate limit apply per step, and stop(),
    /// pause() and a lease that wants the file take effect between steps: a step runs to its
    /// end (about 0.7 ms for the default 16 MiB of 2 MiB pages here, one page's zeroing for
    /// 1 GiB pages). An acquire() waits at most 2 s for the steps in progress on the files it
    /// wants (then it takes what is ready): keep steps short. Default 16 MiB.
    std::uint64_t batch_bytes = std::uint64_t{16} << 20;
    /// Worker placement and charging. Without `cpus`, workers are pinned to their node's CPUs.
    /// Their memory is always bound to their node (that is what puts the pages there), so
    /// `memory_node` is ignored.
    thread_settings thread;
    /// How long a refill that was held (floor, no free pages, an error) waits before it looks
    /// again. Releasing a lease on the node ends the wait at once.
    std::chrono::nanoseconds retry_period = std::chrono::milliseconds(500);
    /// After each acquire(), the whole pool refills nothing for this long (steps in progress
    /// end first): the VM that took the lease is starting, and a refill running meanwhile slows
    /// its start down a lot, not only through memory bandwidth: while the kernel zeroes a page
    /// for the refill it holds one of its few global hugetlb fault mutexes, which the VM's own
    /// page faults and populate() need too (measured here: populating a 512 MiB lease took
    /// 0.3 ms with the pool quiet, 3-40 ms with a refill running). 0 disables it.
    std::chrono::nanoseconds quiet_after_lease = std::chrono::milliseconds(500);
};

} // namespace hugezero

#endif
