/// @file
/// @brief hugezero::sim::kernel, an in-process simulation of the kernel's hugetlb pages and of
/// the proposed `zeroable_hugepages` pre-zeroing ABI.
#ifndef HUGEZERO_SIM_KERNEL_HPP
#define HUGEZERO_SIM_KERNEL_HPP

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <ctime>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <shared_mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hugezero/backend.hpp>
#include <hugezero/cpu_set.hpp>
#include <hugezero/detail/deadline.hpp>
#include <hugezero/detail/file_holders.hpp>
#include <hugezero/detail/hugetlb_file.hpp>
#include <hugezero/detail/lock_rank.hpp>
#include <hugezero/detail/parse.hpp>
#include <hugezero/error.hpp>
#include <hugezero/hstate.hpp>
#include <hugezero/sim/kernel_types.hpp>
#include <hugezero/unique_fd.hpp>

/// The simulated kernel: test VMM code against the pre-zeroing ABI without a patched kernel.
namespace hugezero::sim {

/// The simulated kernel: N nodes by page sizes, each hstate with free-dirty, free-zeroed,
/// being-zeroed and in-use pages, behaving as ABI.md §3 describes the pre-zeroing ABI.
///
/// - Reading `zeroable_hugepages` gives the free pages that are neither zeroed nor being zeroed.
/// - Writing `x` or `max` zeroes pages one at a time in the writer's thread, each costing the
///   page size's configured time; concurrent writers take the next dirty page, so they share
///   the work and never zero a page twice. A write that finds no dirty page left before it has
///   done `x` (consumers or other writers took them) ends there and succeeds, as the kernel's
///   sibling stores do; zeroing_statistics::pages_short_in_writes counts the difference.
/// - Consumers allocate zeroed pages first and zero dirty ones on the spot; released pages
///   come back dirty and raise a (rate-limited) notification.
///
/// Build one with hugezero::sim::machine_builder; see it through sim::backend or sysfs_view.
///
/// @par Thread safety
/// Every member function may be called from any thread.
class kernel : public std::enable_shared_from_this<kernel> {
public:
    /// One hstate's initial pages.
    struct hstate_config {
        page_size size;                 ///< The page size.
        std::uint64_t dirty = 0;        ///< Free pages that need zeroing.
        std::uint64_t zeroed = 0;       ///< Free pages already zeroed.
        std::uint64_t in_use = 0;       ///< Pages allocated to consumers.
        std::uint64_t surplus = 0;      ///< The surplus count to report.
        bool zeroable_interface = true; ///< False models a stock kernel: no `zeroable_hugepages`.
    };
    /// One node.
    struct node_config {
        node_id id;                          ///< Its number (numbers may be sparse).
        cpu_set cpus;                        ///< Its CPUs.
        bool has_memory = true;              ///< False for a memoryless node (it then has no hstates).
        std::vector<hstate_config> hstates;  ///< Its page sizes.
    };
    /// The whole machine.
    struct config {
        std::vector<node_config> nodes;                                           ///< The nodes.
        std::map<page_size, std::chrono::nanoseconds> page_costs;                 ///< Zeroing time per page.
        std::map<page_size, std::uint64_t> reserved;                              ///< Global `resv_hugepages`.
        std::map<page_size, std::uint64_t> overcommit;                            ///< Global `nr_overcommit_hugepages`.
        work_mode work = work_mode::wait;                                         ///< How page time is spent.
        std::uint64_t memset_buffer_limit = std::uint64_t{64} << 20;              ///< Largest memset buffer.
        out_of_range_policy out_of_range = out_of_range_policy::einval;           ///< See the enum.
        signal_policy on_signal = signal_policy::eintr;                           ///< See the enum.
        std::chrono::nanoseconds notify_min_period{0};                            ///< Notification rate limit.
        bool numa = true; ///< False models a kernel without NUMA: no `devices/system/node`.
    };

    /// A registration for change notifications of one hstate's `zeroable_hugepages`;
    /// unregisters when destroyed. Move-only.
    class subscription {
    public:
        subscription() = default;
        subscription(const subscription&) = delete;
        subscription& operator=(const subscription&) = delete;
        /// Takes over @p other's registration.
        subscription(subscription&& other) noexcept
            : kernel_(std::move(other.kernel_)), which_(other.which_), id_(std::exchange(other.id_, 0))
        {
        }
        /// Drops the current registration and takes over @p other's.
        subscription& operator=(subscription&& other) noexcept
        {
            if (this != &other) {
                reset();
                kernel_ = std::move(other.kernel_);
                which_ = other.which_;
                id_ = std::exchange(other.id_, 0);
            }
            return *this;
        }
        ~subscription() { reset(); }
        /// Unregisters now; the callback is not called after this returns.
        void reset() noexcept
        {
            if (id_ != 0)
                if (const auto k = kernel_.lock())
                    k->unsubscribe(which_, id_);
            id_ = 0;
            kernel_.reset();
        }

    private:
        friend class kernel;
        subscription(std::weak_ptr<kernel> k, hstate which, std::uint64_t id) : kernel_(std::move(k)), which_(which), id_(id) {}
        std::weak_ptr<kernel> kernel_;
        hstate which_{node_id(0), page_size(4096)};
        std::uint64_t id_ = 0;
    };

    /// Builds a kernel from @p cfg.
    /// @throws std::invalid_argument for an inconsistent configuration (duplicate nodes or
    /// sizes, hstates on a memoryless node, a kernel without NUMA that is not one node 0).
    static std::shared_ptr<kernel> create(config cfg)
    {
        validate(cfg);
        return std::shared_ptr<kernel>(new kernel(std::move(cfg)));
    }

    kernel(const kernel&) = delete;
    kernel& operator=(const kernel&) = delete;
    ~kernel() = default;

    // ----- topology -----

    /// Whether the kernel has NUMA (a `devices/system/node` directory).
    [[nodiscard]] bool numa() const noexcept { return config_.numa; }
    /// Every node, online or not, in increasing order.
    [[nodiscard]] std::vector<node_id> nodes() const
    {
        std::vector<node_id> out;
        for (const auto& n : config_.nodes)
            out.push_back(n.id);
        return out;
    }
    /// The configuration of node @p node. @throws std::invalid_argument if there is no such node.
    [[nodiscard]] const node_config& node(node_id node) const
    {
        for (const auto& n : config_.nodes)
            if (n.id == node)
                return n;
        throw std::invalid_argument("hugezero::sim: no node " + std::to_string(node.value()));
    }
    /// Whether @p node is online (nodes start online).
    [[nodiscard]] bool online(node_id node) const
    {
        const std::lock_guard lock(mutex_);
        return offline_.count(node) == 0;
    }
    /// Takes @p node offline or back online. An offline node disappears from the tree, as when
    /// memory is hot-unplugged; its pages keep their states.
    void set_online(node_id node, bool online)
    {
        (void)this->node(node);
        const std::lock_guard lock(mutex_);
        if (online)
            offline_.erase(node);
        else
            offline_.insert(node);
    }
    /// Every hstate, ordered by node then size.
    [[nodiscard]] std::vector<hstate> hstates() const
    {
        std::vector<hstate> out;
        for (const auto& [h, state] : hstates_)
            out.push_back(h);
        return out;
    }
    /// Whether @p h exists.
    [[nodiscard]] bool has(const hstate& h) const { return hstates_.count(h) != 0; }
    /// Whether @p h has the `zeroable_hugepages` interface.
    [[nodiscard]] bool has_zeroable_interface(const hstate& h) const { return state(h).zeroable_interface; }
    /// The page sizes present on any node, in increasing order.
    [[nodiscard]] std::vector<page_size> page_sizes() const
    {
        std::set<page_size> sizes;
        for (const auto& [h, state] : hstates_)
            sizes.insert(h.size);
        return {sizes.begin(), sizes.end()};
    }

    // ----- counters -----

    /// The pages of @p h by state. @throws std::invalid_argument for an unknown hstate.
    [[nodiscard]] page_counts counts(const hstate& h) const
    {
        const auto& s = state(h);
        const std::lock_guard lock(mutex_);
        const_cast<kernel*>(this)->reap_locked(); // a file's last close changes what every reading sees
        return s.pages;
    }
    /// What reading `zeroable_hugepages` returns: free pages neither zeroed nor being zeroed.
    [[nodiscard]] std::uint64_t zeroable(const hstate& h) const { return counts(h).dirty; }
    /// What the kernel did for @p h so far.
    [[nodiscard]] zeroing_statistics statistics(const hstate& h) const
    {
        const auto& s = state(h);
        const std::lock_guard lock(mutex_);
        return s.stats;
    }
    /// Global `resv_hugepages` for @p size.
    [[nodiscard]] std::uint64_t reserved(page_size size) const { return lookup(config_.reserved, size); }
    /// Global `nr_overcommit_hugepages` for @p size.
    [[nodiscard]] std::uint64_t overcommit(page_size size) const { return lookup(config_.overcommit, size); }

    // ----- the pre-zeroing ABI -----

    /// A write of @p request (`x` or `max`, optionally newline-terminated) to @p h's
    /// `zeroable_hugepages`, executed in the calling thread. @p interrupted is asked between
    /// pages whether a signal is pending.
    write_outcome write_zeroable(const hstate& h, std::string_view request, const interrupt_probe& interrupted)
    {
        auto& s = state(h);
        if (!s.zeroable_interface)
            return {0, ENOENT};
        std::string_view text = request;
        if (!text.empty() && text.back() == '\n')
            text.remove_suffix(1);
        const bool max = text == "max";
        const auto asked = max ? std::optional<std::uint64_t>(0) : detail::parse_decimal(text);
        if (!asked)
            return {0, EINVAL};
        for (;;) { // each iteration is one execution of the store; a restart begins again
            std::uint64_t target = 0;
            {
                std::unique_lock lock(mutex_);
                const std::uint64_t zeroable_now = s.pages.dirty;
                target = max ? zeroable_now : *asked;
                if (target > zeroable_now) {
                    if (out_of_range_.load() == out_of_range_policy::einval) {
                        ++s.stats.writes_rejected;
                        return {0, EINVAL};
                    }
                    target = zeroable_now;
                }
                ++s.stats.writes;
            }
            bool restart = false;
            for (std::uint64_t done = 0; done < target; ++done) {
                if (done > 0 && interrupted && interrupted()) { // the kernel checks between pages
                    const signal_policy policy = on_signal_.load();
                    const std::lock_guard lock(mutex_);
                    if (policy == signal_policy::restart) {
                        ++s.stats.writes_restarted;
                        restart = true;
                        break;
                    }
                    ++s.stats.writes_interrupted;
                    return policy == signal_policy::eintr ? write_outcome{0, EINTR} : write_outcome{request.size(), 0};
                }
                {
                    const std::lock_guard lock(mutex_);
                    if (s.pages.dirty == 0) { // other writers or consumers took the rest
                        s.stats.pages_short_in_writes += target - done;
                        break;
                    }
                    --s.pages.dirty;
                    ++s.pages.zeroing;
                }
                spend(h.size, 1);
                {
                    const std::lock_guard lock(mutex_);
                    --s.pages.zeroing;
                    ++s.pages.zeroed;
                    ++s.stats.pages_zeroed_by_writes;
                }
                zeroing_done_.notify_all();
            }
            if (!restart)
                return {request.size(), 0};
        }
    }

    // ----- consumers -----

    /// A consumer (a VM faulting its memory in) takes @p pages pages of @p h: zeroed pages
    /// first, then dirty ones, which it zeroes itself on the spot (spending their cost in the
    /// calling thread), then pages being zeroed, which it waits for.
    /// @throws std::system_error with `ENOSPC` if fewer than @p pages pages are free; nothing is
    /// taken then.
    allocation allocate(const hstate& h, std::uint64_t pages)
    {
        auto& s = state(h);
        allocation got;
        std::uint64_t dirty_taken = 0;
        {
            std::unique_lock lock(mutex_);
            for (;;) {
                const std::uint64_t wanted = pages - got.pages;
                if (s.pages.free() < wanted) {
                    // Give back what this call took; dirty pages it took are still dirty.
                    s.pages.zeroed += got.pages - dirty_taken;
                    s.pages.dirty += dirty_taken;
                    s.pages.in_use -= got.pages;
                    throw detail::system_error(ENOSPC, "simulated allocation of " + std::to_string(pages) + " pages of "
                                                           + to_string(h) + ": only "
                                                           + std::to_string(s.pages.free() ) + " free");
                }
                const std::uint64_t from_zeroed = std::min(wanted, s.pages.zeroed);
                s.pages.zeroed -= from_zeroed;
                const std::uint64_t from_dirty = std::min(wanted - from_zeroed, s.pages.dirty);
                s.pages.dirty -= from_dirty;
                s.pages.in_use += from_zeroed + from_dirty;
                got.pages += from_zeroed + from_dirty;
                dirty_taken += from_dirty;
                if (got.pages == pages)
                    break;
                // The rest are being zeroed by writers: wait for them, as the kernel does.
                zeroing_done_.wait(lock);
            }
            s.stats.pages_zeroed_on_allocation += dirty_taken;
        }
        got.zeroed_on_the_spot = dirty_taken;
        spend(h.size, dirty_taken);
        return got;
    }

    /// A consumer gives back @p pages pages of @p h. They come back dirty, so they become
    /// zeroable and a notification is raised (subject to the rate limit).
    /// @throws std::invalid_argument if fewer than @p pages pages are in use.
    void release(const hstate& h, std::uint64_t pages)
    {
        auto& s = state(h);
        const std::lock_guard lock(mutex_);
        if (pages > s.pages.in_use)
            throw std::invalid_argument("hugezero::sim: release of " + std::to_string(pages) + " pages of " + to_string(h)
                                        + " but only " + std::to_string(s.pages.in_use) + " are in use");
        s.pages.in_use -= pages;
        s.pages.dirty += pages;
        if (pages > 0)
            notify_locked(s);
    }

    /// Adds @p pages dirty free pages to @p h (as growing `nr_hugepages` would) and notifies.
    void add_pages(const hstate& h, std::uint64_t pages)
    {
        auto& s = state(h);
        const std::lock_guard lock(mutex_);
        s.pages.dirty += pages;
        if (pages > 0)
            notify_locked(s);
    }

    // ----- hugetlb files (the pool's seam; see sim::hugetlb_files) -----

    /// A new, empty hugetlb file for pages of @p size: a descriptor standing for it, or -errno.
    /// The descriptor is the write end of a pipe whose read end the kernel keeps, so the kernel
    /// sees when the last copy of it is closed (also one sent to another process): the file
    /// then goes and its pages come back dirty, as the real kernel does when the last reference
    /// to a file goes. Such a descriptor cannot be mapped: a simulated lease is never mapped.
    int create_file(page_size size);

    /// fallocate() of pages [@p first, @p first + @p count) of the file behind @p fd: each
    /// missing page is taken from @p node (none: the first node with a free page), zeroed pages
    /// first, dirty ones zeroed in the calling thread. One call per file at a time (the inode
    /// lock); @p interrupted is asked before each page. 0, `ENOSPC`, `EINTR` (the pages done
    /// stay, past the end), `EBADF` for a descriptor that is not a file of this kernel.
    int allocate_file_pages(int fd, std::optional<node_id> node, std::uint64_t first, std::uint64_t count,
                            const interrupt_probe& interrupted);

    /// Mapping @p pages pages of the file behind @p fd, to fault them in (mmap): 0, `EBADF`, or
    /// a planned `map` fault. As in the kernel, it takes the file's inode lock (so it waits for
    /// an allocate_file_pages() in progress) and the memory-map lock exclusively (so it waits
    /// for every populate_file_pages() in progress).
    int map_file(int fd, std::uint64_t pages);
    /// Unmapping a file (munmap): the memory-map lock, exclusively.
    void unmap_file() { const std::unique_lock map(mmap_lock_); }

    /// Faulting pages [@p first, @p first + @p count) of the file behind @p fd in, through a
    /// mapping (`MADV_POPULATE_WRITE`): as allocate_file_pages(), but it holds the memory-map
    /// lock shared instead of the inode lock, so calls on one file run in parallel with each
    /// other and with an allocate_file_pages(); signals do not interrupt them. 0, `ENOSPC`,
    /// `EFAULT` for a range past the file's size, `EBADF`.
    int populate_file_pages(int fd, std::optional<node_id> node, std::uint64_t first, std::uint64_t count);

    /// ftruncate() of the file behind @p fd to @p pages: pages at or past it come back dirty.
    int resize_file(int fd, std::uint64_t pages);

    /// Writing zeros to pages [@p first, @p first + @p count) of the file behind @p fd from user
    /// space, through a mapping: the pages' zeroing time in the calling thread, after which they
    /// hold no tenant's data. 0, `EFAULT` for a page the file does not hold, `EBADF`, or a
    /// planned `scrub` fault.
    int scrub_file_pages(int fd, std::uint64_t first, std::uint64_t count);

    /// Another description of the file behind @p fd (a pipe's write end opened anew through
    /// /proc/self/fd): a descriptor, or -errno (`EBADF`, a planned `reopen` fault).
    int reopen_file(int fd);

    /// Whether @p fd is the last reference to its file, as a write lease would tell: 0, or
    /// `EBUSY` with @p holder naming another descriptor (a search of /proc: no process but this
    /// one and its children can reach the kernel's pipes), `EBADF`, or a planned `lease` fault.
    int sole_file_reference(int fd, std::string& holder);

    /// The descriptor the kernel keeps for the file behind @p fd (the read end of its pipe), or
    /// -1 if @p fd is not a file of this kernel. Not a file operation.
    [[nodiscard]] int file_reader(int fd);

    /// A tenant writes to every page the file behind @p fd holds: they are no longer zero
    /// until scrubbed (or freed and zeroed again). Not a file operation (no fault injection):
    /// for tests of recycling. @throws std::invalid_argument if @p fd is not a file of this kernel.
    void write_file_pages(int fd);

    /// How many pages of the file behind @p fd hold a tenant's data (written since they were
    /// allocated or last scrubbed). @throws std::invalid_argument if @p fd is not a file of this
    /// kernel.
    [[nodiscard]] std::uint64_t written_file_pages(int fd);

    /// The pages the file behind @p fd holds (also past its end) and its size in pages (a
    /// simulated file has no name: no link), or the errno.
    file_pages file_page_count(int fd);

    /// The file behind @p fd: its size in pages and, per node, the pages it holds there. Not a
    /// file operation (no fault injection): for tests that check placement.
    /// @throws std::invalid_argument if @p fd is not a file of this kernel.
    [[nodiscard]] page_layout file_layout(int fd);

    /// Whether binding a thread to @p node may succeed now: consumes a planned `bind` fault.
    /// 0, the planned errno, or `EINVAL` for a node without memory.
    int check_binding(node_id node);

    /// What the kernel did with hugetlb files so far (files whose last descriptor was closed
    /// are noticed first).
    [[nodiscard]] file_statistics file_stats();

    /// The next @p times file operations @p op fail with @p error.
    void fail_next(file_operation op, int error, unsigned times = 1);
    /// The file operation number @p nth from now (0: the next one), whatever it is, fails with
    /// @p error: walk @p nth from 0 up to make every call of a scenario fail in turn.
    void fail_file_call(std::uint64_t nth, int error);

    // ----- notifications -----

    /// Registers @p notify to be called when pages of @p h become zeroable. It is called with
    /// the kernel's lock held: it must be quick and must not call back into the kernel.
    [[nodiscard]] subscription subscribe(const hstate& h, std::function<void()> notify)
    {
        auto& s = state(h);
        const std::lock_guard lock(mutex_);
        const std::uint64_t id = ++next_subscription_;
        s.subscribers.emplace(id, std::move(notify));
        return subscription(weak_from_this(), h, id);
    }

    // ----- fault injection -----

    /// The next @p times operations @p op on the attribute at @p path (relative to the tree's
    /// root, e.g. `devices/system/node/node0/hugepages/hugepages-2048kB/zeroable_hugepages`)
    /// fail with @p error.
    void fail_next(std::string path, operation op, int error, unsigned times = 1)
    {
        const std::lock_guard lock(mutex_);
        faults_[{std::move(path), op}] = {error, times};
    }
    /// Consumes a fault planned for @p op on @p path, if any, and returns its errno.
    std::optional<int> take_fault(std::string_view path, operation op)
    {
        const std::lock_guard lock(mutex_);
        const auto it = faults_.find({std::string(path), op});
        if (it == faults_.end())
            return std::nullopt;
        const int error = it->second.error;
        if (--it->second.remaining == 0)
            faults_.erase(it);
        return error;
    }

    // ----- switches -----

    /// Changes what an out-of-range write does.
    void set_out_of_range_policy(out_of_range_policy policy) noexcept { out_of_range_.store(policy); }
    /// Changes what a signal does to a write in progress.
    void set_signal_policy(signal_policy policy) noexcept { on_signal_.store(policy); }
    /// Changes the minimum time between two notifications of one hstate.
    void set_notify_min_period(std::chrono::nanoseconds period) noexcept { notify_min_period_.store(period.count()); }
    /// Changes the zeroing time of a page of @p size.
    void set_page_cost(page_size size, std::chrono::nanoseconds cost)
    {
        const std::lock_guard lock(mutex_);
        costs_[size] = cost;
    }
    /// The zeroing time of a page of @p size.
    [[nodiscard]] std::chrono::nanoseconds page_cost(page_size size) const
    {
        const std::lock_guard lock(mutex_);
        const auto it = costs_.find(size);
        return it == costs_.end() ? std::chrono::nanoseconds{0} : it->second;
    }

private:
    struct hstate_state {
        node_id node{0};
        page_counts pages;
        bool zeroable_interface = true;
        zeroing_statistics stats;
        std::map<std::uint64_t, std::function<void()>> subscribers;
        std::chrono::steady_clock::time_point last_notify{};
    };
    struct fault {
        int error = 0;
        unsigned remaining = 0;
    };

    struct file {
        explicit file(page_size s) : size(s) {}
        page_size size;
        unique_fd reader;            // POLLHUP once every copy of the write end is closed
        std::uint64_t size_pages = 0;        // st_size in pages; under mutex_
        std::map<std::uint64_t, node_id> pages; // allocated pages by index; under mutex_
        std::set<std::uint64_t> written;     // pages holding a tenant's data; under mutex_
        std::set<std::uint64_t> adding;      // indices being allocated right now; under mutex_
        unsigned zeroing = 0;                // pages being zeroed right now; under mutex_
        detail::ranked_mutex<> inode_lock{detail::lock_rank::sim_inode, "a simulated file's inode lock"}; // held by allocate_file_pages() for its whole call
    };
    using file_key = std::pair<dev_t, ino_t>;

    // Finds the file, counts the call, and consumes a planned fault; 0 or the errno.
    int begin_file_call(int fd, file_operation op, file*& f);

    file* find_file_locked(int fd);

    file& file_for_test_locked(int fd);

    std::optional<int> take_file_fault_locked(file_operation op);

    // Adds page @p index to @p f unless it is there: a free page of @p node (or of the first node
    // that has one), zeroed first; a dirty one is zeroed here, outside the kernel's lock.
    int add_page(file& f, std::uint64_t index, std::optional<node_id> node);

    // The hstate a new page of @p size comes from: @p node's, or the first node's with a free
    // page; null if none has one (@p busy: some have pages being zeroed by writers).
    hstate_state* pick_free_locked(page_size size, std::optional<node_id> node, bool& busy);

    void release_pages_locked(file& f, std::map<std::uint64_t, node_id>::iterator from,
                              std::map<std::uint64_t, node_id>::iterator to);

    // Files whose every descriptor was closed are gone: their pages come back dirty.
    void reap_locked();

    explicit kernel(config cfg) : config_(std::move(cfg)), costs_(config_.page_costs)
    {
        out_of_range_.store(config_.out_of_range);
        on_signal_.store(config_.on_signal);
        notify_min_period_.store(config_.notify_min_period.count());
        for (const auto& n : config_.nodes)
            for (const auto& hc : n.hstates) {
                hstate_state s;
                s.node = n.id;
                s.pages = {hc.dirty, hc.zeroed, 0, hc.in_use, hc.surplus};
                s.zeroable_interface = hc.zeroable_interface;
                hstates_.emplace(hstate{n.id, hc.size}, std::move(s));
            }
    }

    static void validate(const config& cfg)
    {
        std::set<node_id> ids;
        for (const auto& n : cfg.nodes) {
            if (!ids.insert(n.id).second)
                throw std::invalid_argument("hugezero::sim: node " + std::to_string(n.id.value()) + " is configured twice");
            std::set<page_size> sizes;
            for (const auto& h : n.hstates)
                if (!sizes.insert(h.size).second)
                    throw std::invalid_argument("hugezero::sim: page size " + to_string(h.size) + " is configured twice on node "
                                                + std::to_string(n.id.value()));
            if (!n.has_memory && !n.hstates.empty())
                throw std::invalid_argument("hugezero::sim: memoryless node " + std::to_string(n.id.value())
                                            + " cannot have huge pages");
        }
        if (!cfg.numa && (cfg.nodes.size() != 1 || cfg.nodes.front().id != node_id(0)))
            throw std::invalid_argument("hugezero::sim: a kernel without NUMA has exactly one node, node 0");
    }

    static std::uint64_t lookup(const std::map<page_size, std::uint64_t>& map, page_size size)
    {
        const auto it = map.find(size);
        return it == map.end() ? 0 : it->second;
    }

    hstate_state& state(const hstate& h)
    {
        const auto it = hstates_.find(h);
        if (it == hstates_.end())
            throw std::invalid_argument("hugezero::sim: no hstate " + to_string(h));
        return it->second;
    }
    const hstate_state& state(const hstate& h) const { return const_cast<kernel*>(this)->state(h); }

    void unsubscribe(const hstate& h, std::uint64_t id) noexcept
    {
        const std::lock_guard lock(mutex_);
        const auto it = hstates_.find(h);
        if (it != hstates_.end())
            it->second.subscribers.erase(id);
    }

    // Like the kernel's rate-limited do_zero_free_notify(): a notification within the minimum
    // period of the previous one is dropped, so watchers must re-read on a timer too.
    void notify_locked(hstate_state& s)
    {
        const auto now = std::chrono::steady_clock::now();
        const std::chrono::nanoseconds period{notify_min_period_.load()};
        if (s.stats.notifications > 0 && now - s.last_notify < period) {
            ++s.stats.notifications_suppressed;
            return;
        }
        s.last_notify = now;
        ++s.stats.notifications;
        for (const auto& [id, notify] : s.subscribers)
            notify();
    }

    // Spends the zeroing time of @p pages pages of @p size in the calling thread.
    void spend(page_size size, std::uint64_t pages) const
    {
        const std::chrono::nanoseconds cost = page_cost(size);
        for (std::uint64_t i = 0; i < pages; ++i) {
            const auto deadline = detail::deadline_after(cost);
            if (config_.work == work_mode::memset)
                memset_bytes(size.bytes());
            sleep_until(deadline);
        }
    }

    void memset_bytes(std::uint64_t bytes) const
    {
        // One buffer per thread, as large as a page up to the limit: writers never share one.
        thread_local std::unique_ptr<unsigned char[]> buffer;
        thread_local std::uint64_t buffer_size = 0;
        const std::uint64_t chunk = std::min(bytes, config_.memset_buffer_limit);
        if (buffer_size < chunk) {
            buffer.reset(new unsigned char[chunk]);
            buffer_size = chunk;
        }
        for (std::uint64_t done = 0; done < bytes; done += chunk)
            std::memset(buffer.get(), 0, static_cast<std::size_t>(std::min(chunk, bytes - done)));
    }

    // Absolute-deadline sleep: signals (EINTR) do not shorten a page, as the kernel notices a
    // signal only between pages.
    static void sleep_until(std::chrono::steady_clock::time_point deadline)
    {
        const auto since_epoch = deadline.time_since_epoch();
        if (since_epoch <= std::chrono::steady_clock::now().time_since_epoch())
            return;
        const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(since_epoch);
        timespec ts{};
        ts.tv_sec = static_cast<time_t>(seconds.count());
        ts.tv_nsec = static_cast<long>((since_epoch - seconds).count());
        while (::clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) == EINTR) {
        }
    }

    const config config_;
    mutable detail::ranked_mutex<> mutex_{detail::lock_rank::sim_kernel, "the simulated kernel"};
    std::condition_variable_any zeroing_done_;
    std::map<hstate, hstate_state> hstates_; // structure fixed at construction; contents under mutex_
    std::map<page_size, std::chrono::nanoseconds> costs_;
    std::set<node_id> offline_;
    std::map<std::pair<std::string, operation>, fault> faults_;
    std::map<file_key, std::unique_ptr<file>> files_;          // under mutex_
    std::map<file_operation, fault> file_faults_;              // under mutex_
    std::optional<std::pair<std::uint64_t, int>> nth_file_fault_; // under mutex_: call number, errno
    file_statistics file_stats_;                               // under mutex_
    unsigned file_pages_zeroing_ = 0;                          // under mutex_
    detail::ranked_mutex<std::shared_mutex> mmap_lock_{detail::lock_rank::sim_mmap, "the simulated mmap_lock"};
    std::uint64_t next_subscription_ = 0;
    std::atomic<out_of_range_policy> out_of_range_{out_of_range_policy::einval};
    std::atomic<signal_policy> on_signal_{signal_policy::eintr};
    std::atomic<std::int64_t> notify_min_period_{0};
};

} // namespace hugezero::sim

// The file operations' definitions (they need the whole class).
#include <hugezero/sim/kernel_files.hpp>

#endif
