/// @file
/// @brief Internals of the stock-kernel pool: hugetlb memfds, fallocate, page counts, and
/// binding the calling thread's memory to a node for the length of one allocation.
#ifndef HUGEZERO_DETAIL_HUGETLB_FILE_HPP
#define HUGEZERO_DETAIL_HUGETLB_FILE_HPP

#include <bit>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstddef>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <linux/magic.h>
#include <linux/memfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <hugezero/detail/zero_memory.hpp>
#include <hugezero/node_id.hpp>
#include <hugezero/page_size.hpp>
#include <hugezero/unique_fd.hpp>

namespace hugezero::detail {

/// memfd_create() flags for a hugetlb file of @p page pages: `MFD_HUGE_*` is log2 of the page
/// size shifted by `MFD_HUGE_SHIFT`, for every architecture's sizes.
inline unsigned hugetlb_memfd_flags(page_size page) noexcept
{
    const auto log2 = static_cast<unsigned>(std::countr_zero(page.bytes()));
    return MFD_CLOEXEC | MFD_HUGETLB | (log2 << MFD_HUGE_SHIFT);
}

/// A new, empty hugetlb memfd named @p name (shown in /proc/<pid>/maps as `/memfd:<name>`), or
/// an empty fd with @p error set.
inline unique_fd create_hugetlb_memfd(const std::string& name, page_size page, int& error) noexcept
{
    unique_fd fd(::memfd_create(name.c_str(), hugetlb_memfd_flags(page)));
    error = fd ? 0 : errno;
    return fd;
}

/// How many huge pages the file holds, from `st_blocks` (hugetlbfs counts each page it adds to
/// or removes from a file there), or the errno of fstat(). Unlike `st_size`, this also counts
/// the pages a fallocate() that was interrupted or ran out of pages left behind: they stay in
/// the file, past its end.
inline std::pair<std::uint64_t, int> pages_in_file(int fd, page_size page) noexcept
{
    struct stat st {};
    if (::fstat(fd, &st) != 0)
        return {0, errno};
    return {static_cast<std::uint64_t>(st.st_blocks) * 512 / page.bytes(), 0};
}

/// Allocates (and so has the kernel zero, in this thread) pages [@p first, @p first + @p count)
/// of the file; 0 or the errno (`EINTR`: a signal cut it short; `ENOSPC`: no free page).
inline int allocate_pages(int fd, page_size page, std::uint64_t first, std::uint64_t count) noexcept
{
    const auto offset = static_cast<off_t>(first * page.bytes());
    const auto length = static_cast<off_t>(count * page.bytes());
    return ::fallocate(fd, 0, offset, length) == 0 ? 0 : errno;
}

/// `MADV_POPULATE_WRITE` (Linux 5.14), which older libc headers lack.
inline constexpr int madv_populate_write = 23;

/// Whether the kernel has `MADV_POPULATE_WRITE` (Linux 5.14), probed once on a small anonymous
/// mapping: its `EINVAL` on a real mapping can also mean "not writable", which touching would
/// turn into a crash.
inline bool populate_write_supported() noexcept
{
    static const bool supported = [] {
        void* probe = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (probe == MAP_FAILED)
            return true; // cannot tell: use it, and report what it says
        const bool ok = ::madvise(probe, 4096, madv_populate_write) == 0 || errno != EINVAL;
        ::munmap(probe, 4096);
        return ok;
    }();
    return supported;
}

/// `MADV_POPULATE_WRITE` of the mapped range [@p start, @p start + @p length): the kernel
/// faults each page in as for a write, allocating (and zeroing) a missing one, and writes
/// nothing. Not interrupted by signals (but fatal ones). 0 or the errno; `ENOSPC` when a page
/// could not be had (the kernel says `EFAULT`: the access would have raised `SIGBUS`).
inline int populate_range(std::byte* start, std::size_t length) noexcept
{
    while (::madvise(start, length, madv_populate_write) != 0) {
        if (errno != EINTR)
            return errno == EFAULT ? ENOSPC : errno;
        // interrupted: the pages done stay, and the rest is asked for again
    }
    return 0;
}

/// Writes zeros to pages [@p first, @p first + @p count) of the file from user space, through a
/// mapping of just that range (unmapped before it returns), with zero_memory()'s stores. The
/// pages should be allocated: a missing one would be faulted in (and zeroed twice). 0 or the
/// errno of mmap().
inline int scrub_pages(int fd, page_size page, std::uint64_t first, std::uint64_t count) noexcept
{
    struct stat st {};
    if (::fstat(fd, &st) != 0)
        return errno;
    if (static_cast<std::uint64_t>(st.st_size) < (first + count) * page.bytes())
        return EFAULT; // a write past the end would raise SIGBUS
    const std::size_t length = count * page.bytes();
    void* start = ::mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, static_cast<off_t>(first * page.bytes()));
    if (start == MAP_FAILED)
        return errno;
    zero_memory(start, length);
    ::munmap(start, length);
    return 0;
}

/// A new open file description of the file behind @p fd, for @p access (`O_CLOEXEC`), through
/// `/proc/self/fd`; -errno if it cannot be opened.
inline int reopen_file(int fd, int access = O_RDWR) noexcept
{
    const std::string path = "/proc/self/fd/" + std::to_string(fd);
    const int reopened = ::open(path.c_str(), access | O_CLOEXEC);
    return reopened >= 0 ? reopened : -errno;
}

/// Whether @p fd's open file description is the only one of its file (dups of it share it),
/// with no mapping made through another: the kernel grants a write lease (`F_SETLEASE`) only if
/// no other description is open for reading or writing, and every mapping, every descriptor in
/// flight in a socket holds its description open. The lease is given up at once. 0, `EBUSY`,
/// or the errno of `F_SETLEASE` (`EACCES`: not the file's owner; `EINVAL`: no leases here).
inline int sole_description(int fd) noexcept
{
    // Should anyone open the file in the microseconds the lease is held, the kernel signals the
    // holder: SIGURG, which is ignored unless handled, rather than SIGIO, which would kill it.
    (void)::fcntl(fd, F_SETSIG, SIGURG);
    if (::fcntl(fd, F_SETLEASE, F_WRLCK) != 0)
        return errno == EAGAIN ? EBUSY : errno;
    (void)::fcntl(fd, F_SETLEASE, F_UNLCK);
    return 0;
}

/// Sets the file's size to @p pages pages: shrinking gives the pages past it back to the
/// kernel; growing only moves the end (pages an interrupted fallocate() left past the old end
/// become part of the file). 0 or the errno.
inline int resize_file(int fd, page_size page, std::uint64_t pages) noexcept
{
    return ::ftruncate(fd, static_cast<off_t>(pages * page.bytes())) == 0 ? 0 : errno;
}

/// Whether @p fd is a file on hugetlbfs (a hugetlb memfd is) with @p page pages.
inline bool is_hugetlb_file(int fd, page_size page) noexcept
{
    struct statfs fs {};
    if (::fstatfs(fd, &fs) != 0)
        return false;
    return static_cast<unsigned long>(fs.f_type) == HUGETLBFS_MAGIC && static_cast<std::uint64_t>(fs.f_bsize) == page.bytes();
}

/// Whether this process may allocate memory on @p node (it is in the cpuset's `mems_allowed`,
/// from get_mempolicy(`MPOL_F_MEMS_ALLOWED`)); a kernel without NUMA has node 0 only. Empty if
/// the kernel would not say.
inline std::optional<bool> node_allowed(std::uint64_t node) noexcept
{
    constexpr unsigned long mpol_f_mems_allowed = 4; // <linux/mempolicy.h>
    constexpr std::size_t bits = 8 * sizeof(unsigned long);
    for (std::size_t longs = 16; longs <= 4096; longs *= 4) {
        std::vector<unsigned long> mask(longs, 0);
        int mode = 0;
        if (::syscall(SYS_get_mempolicy, &mode, mask.data(), longs * bits, nullptr, mpol_f_mems_allowed) == 0)
            return node < longs * bits && (mask[node / bits] & (1UL << (node % bits))) != 0;
        if (errno == ENOSYS)
            return node == 0;
        if (errno != EINVAL)
            return std::nullopt;
    }
    return std::nullopt;
}

/// Binds the calling thread's memory allocations to one node (`MPOL_BIND`) for its lifetime and
/// restores the thread's previous policy after. hugetlbfs allocates a fallocate()d page by the
/// file's policy, which a memfd does not have, and else by the calling thread's: this is how a
/// page allocated outside a pool worker still lands on the leased node.
class scoped_memory_binding {
public:
    /// Binds to @p node; error() tells whether it worked. A kernel without NUMA (`ENOSYS`) has
    /// one node and needs no binding: that counts as success.
    explicit scoped_memory_binding(node_id node) noexcept
    {
        constexpr int mpol_bind = 2; // <linux/mempolicy.h>
        // The kernel rejects a mask shorter than its node count: grow until it fits.
        for (std::size_t longs = 16; longs <= 4096; longs *= 4) {
            saved_mask_.assign(longs, 0);
            if (::syscall(SYS_get_mempolicy, &saved_mode_, saved_mask_.data(), longs * bits + 1, nullptr, 0UL) == 0) {
                saved_ = true;
                break;
            }
            if (errno == ENOSYS)
                return;
            if (errno != EINVAL) {
                error_ = errno;
                return;
            }
        }
        if (!saved_) {
            error_ = EINVAL;
            return;
        }
        std::vector<unsigned long> mask(node.value() / bits + 1, 0);
        mask[node.value() / bits] |= 1UL << (node.value() % bits);
        if (::syscall(SYS_set_mempolicy, mpol_bind, mask.data(), mask.size() * bits + 1) != 0) {
            error_ = errno;
            saved_ = false; // nothing to restore
        }
    }
    scoped_memory_binding(const scoped_memory_binding&) = delete;
    scoped_memory_binding& operator=(const scoped_memory_binding&) = delete;
    ~scoped_memory_binding()
    {
        if (!saved_)
            return;
        const int saved_errno = errno;
        if (saved_mode_ == 0) // MPOL_DEFAULT takes no mask
            ::syscall(SYS_set_mempolicy, 0, nullptr, 0UL);
        else
            ::syscall(SYS_set_mempolicy, saved_mode_, saved_mask_.data(), saved_mask_.size() * bits + 1);
        errno = saved_errno;
    }

    /// 0, or why the binding failed.
    [[nodiscard]] int error() const noexcept { return error_; }

private:
    static constexpr std::size_t bits = 8 * sizeof(unsigned long);
    int saved_mode_ = 0;
    std::vector<unsigned long> saved_mask_;
    bool saved_ = false;
    int error_ = 0;
};

} // namespace hugezero::detail

#endif
