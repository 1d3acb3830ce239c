/// @file
/// @brief Internals of hugezero::pool: a named reservoir's directory on a hugetlbfs mount, the
/// names of its files, and the files a previous pool left there.
#ifndef HUGEZERO_DETAIL_RESERVOIR_DIRECTORY_HPP
#define HUGEZERO_DETAIL_RESERVOIR_DIRECTORY_HPP

#include <atomic>
#include <chrono>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <dirent.h>
#include <time.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <hugezero/detail/file_holders.hpp>
#include <hugezero/hstate.hpp>
#include <hugezero/unique_fd.hpp>

namespace hugezero::detail {

/// An open directory shared by a reservoir and the names of its files.
struct directory_handle {
    unique_fd fd;
    std::filesystem::path path;
};

/// The name of one file in a reservoir's directory: the file is removed (unlinked) when the
/// name is destroyed, unless kept. So a file the pool drops anywhere (trimmed away, shed, a
/// lease closed) takes its name with it, as a memfd would vanish. Move-only.
class file_name {
public:
    file_name() noexcept = default;
    file_name(std::shared_ptr<const directory_handle> dir, std::string name) noexcept
        : dir_(std::move(dir)), name_(std::move(name))
    {
    }
    file_name(file_name&& other) noexcept : dir_(std::move(other.dir_)), name_(std::move(other.name_)) { other.name_.clear(); }
    file_name& operator=(file_name&& other) noexcept
    {
        if (this != &other) {
            remove();
            dir_ = std::move(other.dir_);
            name_ = std::exchange(other.name_, std::string());
        }
        return *this;
    }
    file_name(const file_name&) = delete;
    file_name& operator=(const file_name&) = delete;
    ~file_name() { remove(); }

    /// Whether the file has a name (it is in a directory, not a memfd).
    explicit operator bool() const noexcept { return !name_.empty(); }
    /// The file's path; empty for none.
    [[nodiscard]] std::filesystem::path path() const { return name_.empty() ? std::filesystem::path() : dir_->path / name_; }
    [[nodiscard]] const std::string& name() const noexcept { return name_; }

    /// Renames the file to @p to in the same directory, never over another file: 0, or the
    /// errno (`EEXIST`: a file of that name is there).
    int rename_to(const std::string& to) noexcept
    {
        if (name_.empty())
            return 0;
        if (::renameat2(dir_->fd.get(), name_.c_str(), dir_->fd.get(), to.c_str(), RENAME_NOREPLACE) != 0)
            return errno;
        try {
            name_ = to;
        } catch (...) {
            return ENOMEM;
        }
        return 0;
    }
    /// Keeps the file: destroying the name leaves it where it is.
    void keep() noexcept
    {
        name_.clear();
        dir_.reset();
    }

private:
    void remove() noexcept
    {
        if (!name_.empty() && dir_)
            (void)::unlinkat(dir_->fd.get(), name_.c_str(), 0);
        name_.clear();
    }

    std::shared_ptr<const directory_handle> dir_;
    std::string name_;
};

/// Checks a lease's name (acquire_options::name): a plain file name of at most 249 bytes
/// (memfd_create()'s limit), not one of the pool's own. Returns it.
/// @throws std::invalid_argument naming it otherwise.
inline const std::string& checked_lease_name(const std::string& requested)
{
    if (requested.empty())
        return requested;
    if (requested == "." || requested == ".." || requested.find('/') != std::string::npos
        || requested.find('\0') != std::string::npos || requested.size() > 249)
        throw std::invalid_argument("hugezero: a lease's name must be a file name (no '/', at most 249 bytes), got \""
                                    + requested + "\"");
    if (requested.rfind("hugezero", 0) == 0)
        throw std::invalid_argument("hugezero: a lease's name must not start with \"hugezero\" (the pool's own files), got \""
                                    + requested + "\"");
    return requested;
}

/// A file a previous pool left in the directory, open read-write.
struct found_file {
    unique_fd fd;
    file_name name;
    bool leased = false; ///< A lease's file (any name but a ready file's), not a ready file.
};

/// The directory of one named reservoir (reservoir_options::directory): on a hugetlbfs mount
/// of the reservoir's page size, held by one pool at a time (an exclusive `flock()`). Its
/// ready files are named `hugezero.node<N>.<size>.<id>`; a leased file carries the caller's
/// name, or `hugezero.lease.<id>`, so that the next pool adopts ready files only.
class reservoir_directory {
public:
    /// @throws std::system_error naming @p path if it cannot be opened or locked, is not on
    /// hugetlbfs, or its mount's page size is not @p h's.
    reservoir_directory(const std::filesystem::path& path, const hstate& h) : h_(h)
    {
        auto dir = std::make_shared<directory_handle>();
        dir->path = path;
        dir->fd.reset(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        if (!dir->fd)
            fail(errno, "cannot open the reservoir directory " + path.string());
        struct statfs fs {};
        if (::fstatfs(dir->fd.get(), &fs) != 0)
            fail(errno, "cannot statfs the reservoir directory " + path.string());
        constexpr long hugetlbfs_magic = 0x958458f6;
        if (static_cast<long>(fs.f_type) != hugetlbfs_magic)
            fail(EINVAL, "the reservoir directory " + path.string() + " is not on a hugetlbfs mount");
        if (static_cast<std::uint64_t>(fs.f_bsize) != h.size.bytes())
            fail(EINVAL, "the reservoir directory " + path.string() + " is on a hugetlbfs mount of "
                             + std::to_string(static_cast<std::uint64_t>(fs.f_bsize) >> 10) + " KiB pages, not "
                             + to_string(h.size) + " (mount it with -o pagesize=" + to_string(h.size) + ")");
        // Locked through a description of its own: the names of leases still out after the
        // pool ends keep the other open, and must not keep the next pool out.
        lock_.reset(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        if (!lock_ || ::flock(lock_.get(), LOCK_EX | LOCK_NB) != 0)
            fail(errno, "the reservoir directory " + path.string()
                            + (errno == EWOULDBLOCK ? " is in use by another pool (or another reservoir of this one: each "
                                                      "needs a directory of its own)"
                                                    : " cannot be locked"));
        dir_ = std::move(dir);
    }

    [[nodiscard]] const std::filesystem::path& path() const noexcept { return dir_->path; }
    [[nodiscard]] int fd() const noexcept { return dir_->fd.get(); }

    /// A new name for a ready file (not yet created).
    [[nodiscard]] file_name ready_name() { return {dir_, ready_prefix() + unique_suffix()}; }
    /// What a lease's file is renamed to: @p requested (checked_lease_name()), or a name of
    /// the pool's own.
    [[nodiscard]] static std::string lease_name(const std::string& requested)
    {
        return requested.empty() ? "hugezero.lease." + unique_suffix() : requested;
    }
    /// Whether @p name is a ready file's (a lease's is not): what a pool leaves for the next.
    [[nodiscard]] static bool ready(const file_name& name) noexcept { return name.name().rfind("hugezero.node", 0) == 0; }
    /// Why a lease may not be named @p name: a file of that name is in the directory (a lease
    /// not given back, or one a previous pool served that is still in use), with who holds it;
    /// empty if the name is free. The holder is searched for in /proc at most once a second
    /// (a search may cost a CPU-tenth on a host with many descriptors, and a peer may ask for a
    /// taken name again and again).
    [[nodiscard]] std::string name_in_use(const std::string& name) const
    {
        const unique_fd there(::openat(dir_->fd.get(), name.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK));
        if (!there)
            return errno == ENOENT ? std::string() : "cannot look at " + (path() / name).string() + ": " + std::strerror(errno);
        std::string holder = "whoever holds it (searched for at most once a second: ask again, or see fuser)";
        using std::chrono::nanoseconds;
        const std::int64_t now = std::chrono::duration_cast<nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
        std::int64_t due = next_holder_search_.load(std::memory_order_relaxed);
        if (now >= due && next_holder_search_.compare_exchange_strong(due, now + 1'000'000'000))
            try {
                holder = find_other_holders(there.get()).holder;
                if (holder.empty())
                    holder = "nobody this daemon can see (it is reclaimed once a look finds it unused)";
            } catch (...) {
            }
        return "a file named " + name + " is in " + path().string() + " already: a lease not given back yet, held by " + holder;
    }

    /// Gives @p name to a file of the pool's (a lease taken back): a ready file's name.
    int make_ready(file_name& name) { return name.rename_to(ready_prefix() + unique_suffix()); }

    /// The files a previous pool left here, opened read-write: its ready files, and the files
    /// of its leases (every other regular file but other reservoirs' ready files: the directory
    /// is this reservoir's alone), which may still be in use.
    [[nodiscard]] std::vector<found_file> adopt()
    {
        std::vector<found_file> found;
        const int listing = ::openat(dir_->fd.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        DIR* entries = listing >= 0 ? ::fdopendir(listing) : nullptr;
        if (entries == nullptr) {
            if (listing >= 0)
                ::close(listing);
            fail(errno, "cannot list the reservoir directory " + path().string());
        }
        const std::string prefix = ready_prefix();
        while (const dirent* entry = ::readdir(entries)) {
            const std::string name = entry->d_name;
            const bool mine = name.rfind(prefix, 0) == 0;
            if (!mine && (entry->d_type != DT_REG || name.rfind("hugezero.node", 0) == 0))
                continue;
            unique_fd fd(::openat(dir_->fd.get(), name.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK));
            if (fd)
                found.push_back({std::move(fd), file_name(dir_, name), !mine});
        }
        ::closedir(entries);
        return found;
    }

private:
    [[noreturn]] static void fail(int error, const std::string& what)
    {
        throw std::system_error(error, std::generic_category(), "hugezero: " + what);
    }
    [[nodiscard]] std::string ready_prefix() const
    {
        return "hugezero.node" + std::to_string(h_.node.value()) + "." + to_string(h_.size) + ".";
    }
    // The process, the time it first named a file, and a count: unique also across pools that
    // had the same process ID (PID 1 of a container, restarted), whose files may still be here.
    [[nodiscard]] static std::string unique_suffix()
    {
        static const std::string process = [] {
            timespec now{};
            (void)::clock_gettime(CLOCK_REALTIME, &now);
            return std::to_string(::getpid()) + "-" + std::to_string(now.tv_sec) + std::to_string(now.tv_nsec);
        }();
        static std::atomic<std::uint64_t> next{0};
        return process + "-" + std::to_string(next.fetch_add(1) + 1);
    }

    hstate h_;
    std::shared_ptr<directory_handle> dir_;
    unique_fd lock_;
    mutable std::atomic<std::int64_t> next_holder_search_{0}; // steady_clock nanoseconds (name_in_use())
};

} // namespace hugezero::detail

#endif
