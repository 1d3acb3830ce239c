/// @file
/// @brief hugezero::hugetlb_files: the hugetlb file operations the stock-kernel pool makes (its
/// seam to the kernel), and kernel_hugetlb_files, the real kernel's.
#ifndef HUGEZERO_HUGETLB_FILES_HPP
#define HUGEZERO_HUGETLB_FILES_HPP

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hugezero/detail/file_holders.hpp>
#include <hugezero/detail/hugetlb_file.hpp>
#include <hugezero/node_id.hpp>
#include <hugezero/page_size.hpp>

namespace hugezero {

/// How many pages a file holds, its size and its links, or why that could not be found out.
struct file_pages {
    std::uint64_t pages = 0;      ///< The pages, also those past the file's end (`st_blocks`).
    int error = 0;                ///< 0, or the errno.
    std::uint64_t size_pages = 0; ///< Its size in pages (`st_size`).
    std::uint64_t links = 0;      ///< Its names (`st_nlink`): 0 for a memfd, 1 for a named file.

    /// Whether the file is exactly @p n pages, every one allocated, and has at most one name:
    /// resized, holed (a page punched out, another past the end) or linked elsewhere, it is not.
    [[nodiscard]] bool exactly(std::uint64_t n) const noexcept { return error == 0 && pages == n && size_pages == n && links <= 1; }
};

/// A binding of the calling thread's new pages to one node, undone when it is destroyed (in
/// the thread that made it).
class memory_binding {
public:
    virtual ~memory_binding() = default;
};

/// A shared mapping of (the start of) a hugetlb file, through which one thread faults pages in
/// as for a write, writing nothing: the kernel allocates and zeroes each missing page as
/// fallocate() does, but faults on one file only take a per-page mutex, so threads populating
/// different pages of one file, through one window, run in parallel with each other and with a
/// fallocate() (fallocate()s on one file hold its inode lock, and run one after the other).
/// populate() may be called from several threads at once. The file is unmapped when the window
/// is destroyed. Mapping takes the file's inode lock and the process's memory-map lock
/// exclusively, so it waits for a fallocate() in progress on the file and for every populate
/// in progress in the process: map once, before the work starts.
class populate_window {
public:
    virtual ~populate_window() = default;
    /// Faults pages [@p first, @p first + @p count) in. Not interrupted by signals. 0, or the
    /// errno: `ENOSPC` (no free page; the pages done stay), `ENOMEM`.
    virtual int populate(std::uint64_t first, std::uint64_t count) noexcept = 0;
};

/// The operations on hugetlb files that hugezero::pool makes: a seam between the pool and the
/// kernel, so that the pool also runs on the simulated kernel (sim::hugetlb_files), where every
/// call can be made to fail. A backend says which one goes with its counters
/// (backend::files()).
///
/// Files are named by descriptors the caller owns. Every operation returns its errno as a
/// value, never through `errno`, and never throws.
///
/// @par Thread safety
/// Every member may be called from any thread, also on one file at once.
class hugetlb_files {
public:
    virtual ~hugetlb_files() = default;

    /// A new, empty hugetlb file for pages of @p page, named @p name (shown in
    /// `/proc/<pid>/maps`): a descriptor the caller owns (`O_CLOEXEC`), or -errno.
    virtual int create(const std::string& name, page_size page) noexcept = 0;

    /// A new, empty file @p name in the hugetlbfs directory open as @p dir (a named reservoir's:
    /// reservoir_options::directory), read-write (`O_CLOEXEC`, mode 0600, never an existing
    /// file): a descriptor the caller owns, or -errno (`-EOPNOTSUPP` where files have no
    /// names, as on the simulated kernel).
    virtual int create_in(int dir, const std::string& name, page_size page) noexcept
    {
        (void)dir;
        (void)name;
        (void)page;
        return -EOPNOTSUPP;
    }

    /// Allocates pages [@p first, @p first + @p count) as fallocate() does: the kernel takes
    /// each missing page from the free pool of the calling thread's node and zeroes it in this
    /// thread; the file's size grows to cover the range on success. Calls on one file run one at
    /// a time (the inode lock). 0, or the errno: `ENOSPC` (no free page), `EINTR` (a signal);
    /// either way the pages done stay, past the file's end.
    virtual int allocate(int fd, page_size page, std::uint64_t first, std::uint64_t count) noexcept = 0;

    /// A window on the first @p pages pages of the file (its size must cover them), through
    /// which the calling thread faults pages in; null, with @p error set, if it cannot be made.
    virtual std::unique_ptr<populate_window> window(int fd, page_size page, std::uint64_t pages, int& error) noexcept = 0;

    /// Writes zeros to pages [@p first, @p first + @p count) of the file, which must be
    /// allocated, from the calling thread (user space: non-temporal stores where the CPU has
    /// them): how the pool scrubs a recycled file. Not interrupted by signals. 0 or the errno.
    virtual int scrub(int fd, page_size page, std::uint64_t first, std::uint64_t count) noexcept = 0;

    /// A new open file description of the file behind @p fd, read-write (`O_CLOEXEC`): what a
    /// lease gets, while the pool keeps @p fd to tell later whether the lease is gone for good
    /// (sole_reference()). -errno if it cannot be made.
    virtual int reopen(int fd) noexcept = 0;

    /// Whether @p fd's open file description is the only reference to its file left anywhere:
    /// no other description, no descriptor in flight in a socket, no mapping, in any process.
    /// 0 if so; `EBUSY` if not (@p holder then names one if it can be found, e.g. `fd 9 of
    /// process 4242`); another errno if it cannot be known.
    virtual int sole_reference(int fd, std::string& holder) noexcept = 0;

    /// Sets the file's size to @p pages: pages past it go back to the kernel; growing adds
    /// none. 0 or the errno.
    virtual int resize(int fd, page_size page, std::uint64_t pages) noexcept = 0;

    /// How many pages the file holds, including pages past its end; its size; its links.
    virtual file_pages pages_in(int fd, page_size page) noexcept = 0;

    /// Binds the calling thread's new pages to @p node until the result is destroyed. On
    /// failure returns null and sets @p error.
    virtual std::unique_ptr<memory_binding> bind_calling_thread(node_id node, int& error) noexcept = 0;
};

/// The real kernel's hugetlb files: memfd_create(MFD_HUGETLB), fallocate(), mmap +
/// `MADV_POPULATE_WRITE` (fallocate() where the kernel lacks it, before 5.14), ftruncate(),
/// fstat(), set_mempolicy(); mmap + non-temporal stores to scrub; a reopen through
/// `/proc/self/fd` and a write lease (`F_SETLEASE`) to prove a lease given back is gone.
class kernel_hugetlb_files final : public hugetlb_files {
public:
    /// The one instance every real backend shares.
    static std::shared_ptr<hugetlb_files> instance()
    {
        static const std::shared_ptr<hugetlb_files> files = std::make_shared<kernel_hugetlb_files>();
        return files;
    }

    int create(const std::string& name, page_size page) noexcept override
    {
        int error = 0;
        unique_fd memfd = detail::create_hugetlb_memfd(name, page, error);
        if (!memfd)
            return -error;
        // memfd_create()'s own description does not count as open for writing, so the write
        // lease that sole_reference() takes could never be had on it: the pool keeps a
        // reopened one, which counts like any other. Without /proc, the memfd itself
        // (whose leases cannot be recycled).
        const int reopened = detail::reopen_file(memfd.get());
        return reopened >= 0 ? reopened : memfd.release();
    }
    int create_in(int dir, const std::string& name, page_size page) noexcept override
    {
        unique_fd fd(::openat(dir, name.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
        if (!fd)
            return -errno;
        if (!detail::is_hugetlb_file(fd.get(), page)) {
            (void)::unlinkat(dir, name.c_str(), 0);
            return -EINVAL;
        }
        return fd.release();
    }
    int allocate(int fd, page_size page, std::uint64_t first, std::uint64_t count) noexcept override
    {
        return detail::allocate_pages(fd, page, first, count);
    }
    std::unique_ptr<populate_window> window(int fd, page_size page, std::uint64_t pages, int& error) noexcept override
    {
        error = 0;
        try {
            if (!detail::populate_write_supported()) // before Linux 5.14: fallocate(), one at a time
                return std::make_unique<allocating_window>(fd, page);
            auto mapped = std::make_unique<mapped_window>(fd, page, pages);
            if (mapped->start == MAP_FAILED) {
                error = mapped->error;
                return nullptr;
            }
            return mapped;
        } catch (...) {
            error = ENOMEM;
            return nullptr;
        }
    }
    int scrub(int fd, page_size page, std::uint64_t first, std::uint64_t count) noexcept override
    {
        return detail::scrub_pages(fd, page, first, count);
    }
    int reopen(int fd) noexcept override { return detail::reopen_file(fd); }
    int sole_reference(int fd, std::string& holder) noexcept override
    {
        int error = detail::sole_description(fd);
        try {
            if (error == EBUSY) {
                holder = detail::find_other_holders(fd).holder;
            } else if (error == 0) {
                // The write lease does not see O_PATH descriptors, through which a process can
                // open the file again (/proc/<pid>/fd): look for any descriptor of it in every
                // process /proc shows this one (as root, all of them).
                const detail::file_references found = detail::find_other_holders(fd, {}, "/proc", false);
                if (!found.holder.empty()) {
                    holder = found.holder + ", a descriptor that opens nothing (O_PATH) but can open the file again";
                    error = EBUSY;
                } else if (!found.unreadable.empty()) {
                    // A process whose descriptors cannot be read may hold one: not proven.
                    holder = "cannot read the descriptors of " + found.unreadable;
                    error = EACCES;
                }
            }
        } catch (...) {
            return error == 0 ? ENOMEM : error; // the search could not be made: not proven
        }
        return error;
    }
    int resize(int fd, page_size page, std::uint64_t pages) noexcept override
    {
        return detail::resize_file(fd, page, pages);
    }
    file_pages pages_in(int fd, page_size page) noexcept override
    {
        struct stat st {};
        if (::fstat(fd, &st) != 0)
            return {0, errno};
        const auto bytes = page.bytes();
        return {static_cast<std::uint64_t>(st.st_blocks) * 512 / bytes, 0, static_cast<std::uint64_t>(st.st_size) / bytes,
                static_cast<std::uint64_t>(st.st_nlink)};
    }
    std::unique_ptr<memory_binding> bind_calling_thread(node_id node, int& error) noexcept override
    {
        try {
            auto binding = std::make_unique<scoped>(node);
            error = binding->binding.error();
            if (error != 0)
                return nullptr;
            return binding;
        } catch (...) {
            error = ENOMEM;
            return nullptr;
        }
    }

private:
    struct mapped_window final : populate_window {
        mapped_window(int fd, page_size p, std::uint64_t pages)
            : page(p), length(pages * p.bytes()),
              start(::mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0)),
              error(start == MAP_FAILED ? errno : 0)
        {
        }
        ~mapped_window() override
        {
            if (start != MAP_FAILED)
                ::munmap(start, length);
        }
        int populate(std::uint64_t first, std::uint64_t count) noexcept override
        {
            return detail::populate_range(static_cast<std::byte*>(start) + first * page.bytes(), count * page.bytes());
        }
        page_size page;
        std::size_t length;
        void* start;
        int error;
    };
    struct allocating_window final : populate_window {
        allocating_window(int f, page_size p) : fd(f), page(p) {}
        int populate(std::uint64_t first, std::uint64_t count) noexcept override
        {
            return detail::allocate_pages(fd, page, first, count);
        }
        int fd;
        page_size page;
    };
    struct scoped final : memory_binding {
        explicit scoped(node_id node) : binding(node) {}
        detail::scoped_memory_binding binding;
    };
};

} // namespace hugezero

#endif
