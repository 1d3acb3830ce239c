/// @file
/// @brief The simulated kernel's hugetlb files (the stock-kernel pool's seam, sim::hugetlb_files):
/// the definitions of sim::kernel's file operations, declared in kernel.hpp.
#ifndef HUGEZERO_SIM_KERNEL_FILES_HPP
#define HUGEZERO_SIM_KERNEL_FILES_HPP

#include <hugezero/sim/kernel.hpp>

namespace hugezero::sim {

inline int kernel::create_file(page_size size)
{
    const std::lock_guard lock(mutex_);
    reap_locked();
    if (const auto error = take_file_fault_locked(file_operation::create))
        return -*error;
    int ends[2];
    if (::pipe2(ends, O_CLOEXEC) != 0)
        return -errno;
    unique_fd reader(ends[0]);
    struct stat st {};
    if (::fstat(ends[1], &st) != 0) {
        const int error = errno;
        ::close(ends[1]);
        return -error;
    }
    auto f = std::make_unique<file>(size);
    f->reader = std::move(reader);
    files_.emplace(file_key{st.st_dev, st.st_ino}, std::move(f));
    ++file_stats_.files_created;
    return ends[1];
}

inline int kernel::allocate_file_pages(int fd, std::optional<node_id> node, std::uint64_t first, std::uint64_t count, const interrupt_probe& interrupted)
{
    file* f = nullptr;
    if (const int error = begin_file_call(fd, file_operation::allocate, f))
        return error;
    const std::lock_guard inode(f->inode_lock);
    for (std::uint64_t index = first; index < first + count; ++index) {
        if (interrupted && interrupted())
            return EINTR;
        if (const int error = add_page(*f, index, node))
            return error;
    }
    const std::lock_guard lock(mutex_);
    f->size_pages = std::max(f->size_pages, first + count);
    return 0;
}

inline int kernel::map_file(int fd, std::uint64_t pages)
{
    (void)pages;
    file* f = nullptr;
    if (const int error = begin_file_call(fd, file_operation::map, f))
        return error;
    const std::lock_guard inode(f->inode_lock);
    const std::unique_lock map(mmap_lock_);
    return 0;
}

inline int kernel::populate_file_pages(int fd, std::optional<node_id> node, std::uint64_t first, std::uint64_t count)
{
    file* f = nullptr;
    if (const int error = begin_file_call(fd, file_operation::populate, f))
        return error;
    const std::shared_lock map(mmap_lock_);
    {
        const std::lock_guard lock(mutex_);
        if (first + count > f->size_pages)
            return EFAULT;
    }
    for (std::uint64_t index = first; index < first + count; ++index)
        if (const int error = add_page(*f, index, node))
            return error;
    return 0;
}

inline int kernel::resize_file(int fd, std::uint64_t pages)
{
    file* f = nullptr;
    if (const int error = begin_file_call(fd, file_operation::resize, f))
        return error;
    const std::lock_guard lock(mutex_);
    f->size_pages = pages;
    release_pages_locked(*f, f->pages.lower_bound(pages), f->pages.end());
    return 0;
}

inline int kernel::scrub_file_pages(int fd, std::uint64_t first, std::uint64_t count)
{
    file* f = nullptr;
    if (const int error = begin_file_call(fd, file_operation::scrub, f))
        return error;
    {
        const std::lock_guard lock(mutex_);
        for (std::uint64_t index = first; index < first + count; ++index)
            if (f->pages.count(index) == 0)
                return EFAULT;
    }
    spend(f->size, count);
    const std::lock_guard lock(mutex_);
    f->written.erase(f->written.lower_bound(first), f->written.lower_bound(first + count));
    file_stats_.pages_scrubbed += count;
    return 0;
}

inline int kernel::reopen_file(int fd)
{
    file* f = nullptr;
    if (const int error = begin_file_call(fd, file_operation::reopen, f))
        return -error;
    return detail::reopen_file(fd, O_WRONLY);
}

inline int kernel::sole_file_reference(int fd, std::string& holder)
{
    file* f = nullptr;
    if (const int error = begin_file_call(fd, file_operation::lease, f))
        return error;
    holder = detail::find_other_holders(fd, {file_reader(fd)}).holder;
    return holder.empty() ? 0 : EBUSY;
}

inline int kernel::file_reader(int fd)
{
    const std::lock_guard lock(mutex_);
    const file* f = find_file_locked(fd);
    return f != nullptr ? f->reader.get() : -1;
}

inline void kernel::write_file_pages(int fd)
{
    const std::lock_guard lock(mutex_);
    file& f = file_for_test_locked(fd);
    for (const auto& [index, node] : f.pages)
        f.written.insert(index);
}

inline std::uint64_t kernel::written_file_pages(int fd)
{
    const std::lock_guard lock(mutex_);
    return file_for_test_locked(fd).written.size();
}

inline file_pages kernel::file_page_count(int fd)
{
    file* f = nullptr;
    if (const int error = begin_file_call(fd, file_operation::stat, f))
        return {0, error};
    const std::lock_guard lock(mutex_);
    return {f->pages.size(), 0, f->size_pages, 0};
}

inline page_layout kernel::file_layout(int fd)
{
    const std::lock_guard lock(mutex_);
    const file* f = find_file_locked(fd);
    if (f == nullptr)
        throw std::invalid_argument("hugezero::sim: fd " + std::to_string(fd) + " is not a simulated hugetlb file");
    std::map<node_id, std::uint64_t> nodes;
    for (const auto& [index, node] : f->pages)
        ++nodes[node];
    return {f->size_pages, nodes};
}

inline int kernel::check_binding(node_id node)
{
    const std::lock_guard lock(mutex_);
    reap_locked();
    if (const auto error = take_file_fault_locked(file_operation::bind))
        return *error;
    const bool has_memory = std::any_of(config_.nodes.begin(), config_.nodes.end(),
                                        [&](const node_config& n) { return n.id == node && n.has_memory; });
    return has_memory ? 0 : EINVAL;
}

inline file_statistics kernel::file_stats()
{
    const std::lock_guard lock(mutex_);
    reap_locked();
    file_statistics s = file_stats_;
    s.files_open = files_.size();
    s.pages_zeroing_now = file_pages_zeroing_;
    s.pages_in_files = 0;
    for (const auto& [key, f] : files_)
        s.pages_in_files += f->pages.size();
    return s;
}

inline void kernel::fail_next(file_operation op, int error, unsigned times)
{
    const std::lock_guard lock(mutex_);
    file_faults_[op] = {error, times};
}

inline void kernel::fail_file_call(std::uint64_t nth, int error)
{
    const std::lock_guard lock(mutex_);
    nth_file_fault_ = {file_stats_.calls + nth, error};
}

inline int kernel::begin_file_call(int fd, file_operation op, file*& f)
{
    const std::lock_guard lock(mutex_);
    reap_locked();
    if (const auto error = take_file_fault_locked(op))
        return *error;
    f = find_file_locked(fd);
    return f != nullptr ? 0 : EBADF;
}

inline kernel::file* kernel::find_file_locked(int fd)
{
    struct stat st {};
    if (::fstat(fd, &st) != 0)
        return nullptr;
    const auto it = files_.find({st.st_dev, st.st_ino});
    return it == files_.end() ? nullptr : it->second.get();
}

inline kernel::file& kernel::file_for_test_locked(int fd)
{
    file* f = find_file_locked(fd);
    if (f == nullptr)
        throw std::invalid_argument("hugezero::sim: fd " + std::to_string(fd) + " is not a simulated hugetlb file");
    return *f;
}

inline std::optional<int> kernel::take_file_fault_locked(file_operation op)
{
    const std::uint64_t call = file_stats_.calls++;
    std::optional<int> error;
    if (nth_file_fault_ && nth_file_fault_->first == call) {
        error = nth_file_fault_->second;
        nth_file_fault_.reset();
    } else if (const auto it = file_faults_.find(op); it != file_faults_.end()) {
        error = it->second.error;
        if (--it->second.remaining == 0)
            file_faults_.erase(it);
    }
    if (error)
        ++file_stats_.calls_failed;
    return error;
}

inline int kernel::add_page(file& f, std::uint64_t index, std::optional<node_id> node)
{
    std::unique_lock lock(mutex_);
    if (f.pages.count(index) != 0 || !f.adding.insert(index).second)
        return 0; // there, or another caller is adding it (the fault mutex)
    hstate_state* from = nullptr;
    for (;;) {
        bool busy = false;
        from = pick_free_locked(f.size, node, busy);
        if (from != nullptr || !busy)
            break;
        zeroing_done_.wait(lock); // only pages being zeroed by writers: wait, as consumers do
    }
    if (from == nullptr) {
        f.adding.erase(index);
        return ENOSPC;
    }
    const bool dirty = from->pages.zeroed == 0;
    (dirty ? from->pages.dirty : from->pages.zeroed) -= 1;
    ++from->pages.in_use;
    from->stats.pages_zeroed_on_allocation += dirty ? 1 : 0;
    file_stats_.most_pages_zeroing_in_one_file = std::max(file_stats_.most_pages_zeroing_in_one_file, ++f.zeroing);
    file_stats_.most_pages_zeroing = std::max(file_stats_.most_pages_zeroing, ++file_pages_zeroing_);
    lock.unlock();
    spend(f.size, dirty ? 1 : 0);
    lock.lock();
    --f.zeroing;
    --file_pages_zeroing_;
    f.adding.erase(index);
    f.pages.emplace(index, from->node);
    ++file_stats_.pages_allocated;
    return 0;
}

inline kernel::hstate_state* kernel::pick_free_locked(page_size size, std::optional<node_id> node, bool& busy)
{
    for (auto& [h, s] : hstates_) {
        if (h.size != size || (node && h.node != *node) || offline_.count(h.node) != 0)
            continue;
        if (s.pages.zeroed + s.pages.dirty > 0)
            return &s;
        busy = busy || s.pages.zeroing > 0;
    }
    return nullptr;
}

inline void kernel::release_pages_locked(file& f, std::map<std::uint64_t, node_id>::iterator from, std::map<std::uint64_t, node_id>::iterator to)
{
    std::map<node_id, std::uint64_t> returned;
    for (auto it = from; it != to; ++it) {
        ++returned[it->second];
        f.written.erase(it->first);
    }
    f.pages.erase(from, to);
    for (const auto& [node, pages] : returned) {
        auto& s = state({node, f.size});
        s.pages.in_use -= pages;
        s.pages.dirty += pages;
        file_stats_.pages_returned += pages;
        notify_locked(s);
    }
}

inline void kernel::reap_locked()
{
    if (files_.empty())
        return;
    std::vector<pollfd> fds;
    for (const auto& [key, f] : files_)
        fds.push_back({f->reader.get(), 0, 0});
    if (::poll(fds.data(), fds.size(), 0) <= 0)
        return;
    std::size_t i = 0;
    for (auto it = files_.begin(); it != files_.end(); ++i) {
        if ((fds[i].revents & (POLLHUP | POLLERR)) == 0) {
            ++it;
            continue;
        }
        release_pages_locked(*it->second, it->second->pages.begin(), it->second->pages.end());
        it = files_.erase(it);
    }
}

} // namespace hugezero::sim

#endif
