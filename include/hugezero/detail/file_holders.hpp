/// @file
/// @brief Internals of the pool's recycling: who else refers to a file (another descriptor,
/// a mapping), in this process and in every other one /proc shows.
#ifndef HUGEZERO_DETAIL_FILE_HOLDERS_HPP
#define HUGEZERO_DETAIL_FILE_HOLDERS_HPP

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <hugezero/unique_fd.hpp>

namespace hugezero::detail {

/// What a search of every process for other references to a file found: another descriptor,
/// or a mapping, in this process or any other /proc shows. What /proc cannot show: a
/// descriptor in flight in a Unix socket's queue, processes outside this PID namespace.
struct file_references {
    /// Who else refers to the file, e.g. `fd 9 of process 4242` or `a mapping in process 4242`;
    /// empty if nobody.
    std::string holder;
    /// A process whose descriptors or mappings could not be read, e.g. `process 1 (Permission
    /// denied)`; empty if every process could be read.
    std::string unreadable;
};

namespace holders {

inline bool is_pid(std::string_view name) noexcept
{
    return !name.empty() && name.find_first_not_of("0123456789") == std::string_view::npos;
}

struct dir_closer {
    void operator()(DIR* dir) const noexcept { ::closedir(dir); }
};
using dir_ptr = std::unique_ptr<DIR, dir_closer>;

// The directory at @p path, listed; null with errno set if it cannot be opened.
inline dir_ptr open_dir(const std::string& path)
{
    unique_fd fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    dir_ptr dir(fd ? ::fdopendir(fd.get()) : nullptr);
    if (dir)
        (void)fd.release(); // closedir closes it
    return dir;
}

// The next entry of @p dir, or null at its end; a listing that fails sets @p error.
inline const dirent* next_entry(DIR* dir, int& error) noexcept
{
    errno = 0;
    const dirent* entry = ::readdir(dir);
    if (entry == nullptr && errno != 0)
        error = errno;
    return entry;
}

// Records @p code in @p error unless it is ENOENT (a descriptor or process gone meanwhile, which
// is no longer a holder) or an error is recorded already.
inline void note_error(int& error, int code) noexcept
{
    if (code != ENOENT && error == 0)
        error = code;
}

// The target of descriptor @p name's link in the table listed at @p listing: `/path` for a file
// opened by path (a memfd's is `/memfd:NAME (deleted)`), `pipe:[N]`, `socket:[N]`,
// `anon_inode:[eventpoll]`... readlink() builds it from the descriptor's path alone: it asks
// nothing of the file's file system (a tenant's FUSE server) nor of its fdinfo code (an epoll
// descriptor's takes a lock a tenant can hold for ever).
inline std::optional<std::string> fd_link(int listing, const char* name)
{
    char target[4096];
    const ssize_t n = ::readlinkat(listing, name, target, sizeof target);
    if (n < 0)
        return std::nullopt;
    return std::string(target, static_cast<std::size_t>(n));
}

// What /proc/PID/fdinfo/N tells of a descriptor: the mount it was opened through and, since
// Linux 5.14, its inode (the first lines, before what the file's type adds).
struct fd_identity {
    int mount_id = -1;
    std::optional<std::uint64_t> inode;
};

inline std::optional<fd_identity> read_fd_identity(int fdinfo_dir, const char* name)
{
    unique_fd fd(::openat(fdinfo_dir, name, O_RDONLY | O_CLOEXEC));
    if (!fd)
        return std::nullopt; // errno says why
    char text[512];
    const ssize_t n = ::read(fd.get(), text, sizeof text - 1);
    if (n <= 0) {
        errno = n == 0 ? EIO : errno;
        return std::nullopt;
    }
    text[n] = '\0';
    fd_identity id;
    bool mount_seen = false;
    for (const char* line = text; line != nullptr && *line != '\0';) {
        if (!mount_seen && std::strncmp(line, "mnt_id:", 7) == 0) {
            id.mount_id = std::atoi(line + 7);
            mount_seen = true;
        } else if (!id.inode && std::strncmp(line, "ino:", 4) == 0) {
            id.inode = std::strtoull(line + 4, nullptr, 10);
        }
        line = std::strchr(line, '\n');
        line = line != nullptr ? line + 1 : nullptr;
    }
    return id;
}

// The mounts a descriptor table's task sees (its mountinfo: `ID PARENT MAJ:MIN ...`), read once,
// when a descriptor first needs it.
class mount_devices {
public:
    explicit mount_devices(std::string path) : path_(std::move(path)) {}

    // The device of mount @p id, or nothing if the mountinfo does not show it (a kernel-internal
    // mount such as a memfd's, a mount detached since, a mountinfo that cannot be read).
    std::optional<dev_t> of(int id)
    {
        if (!devices_) {
            devices_.emplace();
            std::ifstream in(path_);
            for (std::string line; std::getline(in, line);) {
                int mount = -1, parent = -1;
                unsigned major_number = 0, minor_number = 0;
                if (std::sscanf(line.c_str(), "%d %d %u:%u", &mount, &parent, &major_number, &minor_number) == 4)
                    devices_->emplace_back(mount, makedev(major_number, minor_number));
            }
        }
        for (const auto& [mount, device] : *devices_)
            if (mount == id)
                return device;
        return std::nullopt;
    }

private:
    std::string path_;
    std::optional<std::vector<std::pair<int, dev_t>>> devices_;
};

// The file searched for: its device and inode, its link in /proc (how descriptors that are not
// opened by path, such as the simulated kernel's pipes, are told apart) and the mount its
// descriptor was opened through.
struct searched_file {
    struct stat st {};
    std::string link;
    int mount_id = -1;
    bool fdinfo_has_inode = false; // false before Linux 5.14: then each descriptor is stat()ed
};

// The device of descriptor @p name as the cached attributes of its file say, without asking its
// file system (AT_STATX_DONT_SYNC); for the rare descriptor whose inode matches on a mount its
// task's mountinfo does not show.
inline std::optional<dev_t> cached_device(int listing, const char* name)
{
    struct statx attributes {};
    if (::statx(listing, name, AT_STATX_DONT_SYNC, 0, &attributes) != 0)
        return std::nullopt;
    return makedev(attributes.stx_dev_major, attributes.stx_dev_minor);
}

// Whether a descriptor opened by path is the file, from its fdinfo (inode, mount) and the mounts
// of its task. What cannot be read sets @p error, or counts as the file: the search fails closed.
inline bool same_file_by_fdinfo(int listing, int fdinfo_dir, const char* name, mount_devices& mounts,
                                const searched_file& file, int& error)
{
    const auto id = read_fd_identity(fdinfo_dir, name);
    if (!id) {
        note_error(error, errno);
        return false;
    }
    if (!id->inode) {
        note_error(error, EIO); // this kernel prints inodes (ours had one): not a descriptor it described
        return false;
    }
    if (*id->inode != file.st.st_ino)
        return false;
    if (id->mount_id == file.mount_id)
        return true;
    if (const auto device = mounts.of(id->mount_id))
        return *device == file.st.st_dev;
    const auto device = cached_device(listing, name);
    return !device || *device == file.st.st_dev;
}

// Whether descriptor @p name of the table listed at @p listing (its fdinfo at @p fdinfo_dir, the
// mounts its task sees in @p mounts) is @p file; sets @p error when it cannot tell.
inline bool is_searched_file(int listing, int fdinfo_dir, const char* name, mount_devices& mounts,
                             const searched_file& file, int& error)
{
    const auto link = fd_link(listing, name);
    if (!link) {
        note_error(error, errno);
        return false;
    }
    if (!file.link.starts_with('/'))
        return *link == file.link; // `pipe:[N]` names its inode
    if (!link->starts_with('/'))
        return false; // a socket, a pipe, an anonymous inode: not a file opened by path
    if (file.fdinfo_has_inode)
        return same_file_by_fdinfo(listing, fdinfo_dir, name, mounts, file, error);
    struct stat st {};
    if (::fstatat(listing, name, &st, 0) != 0) {
        note_error(error, errno);
        return false;
    }
    return st.st_dev == file.st.st_dev && st.st_ino == file.st.st_ino;
}

// Whether an fd in the descriptor table at @p table (`/proc/PID` or `/proc/PID/task/TID`, named
// @p who in messages; other than @p own_fds when it is this process's) is the file @p file; sets
// @p error when the table, or a descriptor in it, cannot be read (ENOENT: the table is gone).
inline std::optional<std::string> fd_holder(const std::string& table, const std::string& who, bool self,
                                            const std::vector<int>& own_fds, const searched_file& file, int& error)
{
    error = 0;
    const dir_ptr dir = open_dir(table + "/fd");
    if (!dir) {
        error = errno;
        return std::nullopt;
    }
    const unique_fd fdinfo(::open((table + "/fdinfo").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fdinfo && file.fdinfo_has_inode) {
        error = errno;
        return std::nullopt;
    }
    mount_devices mounts(table + "/mountinfo");
    const int listing = ::dirfd(dir.get());
    while (const dirent* entry = next_entry(dir.get(), error)) {
        const std::string_view name = entry->d_name;
        if (!is_pid(name))
            continue;
        const int n = std::atoi(entry->d_name);
        if (self && (n == listing || n == fdinfo.get() || std::find(own_fds.begin(), own_fds.end(), n) != own_fds.end()))
            continue;
        if (is_searched_file(listing, fdinfo.get(), entry->d_name, mounts, file, error))
            return "fd " + std::string(name) + " of " + who;
    }
    return std::nullopt;
}

// Whether thread @p tid of process @p pid shares the process's descriptor table (kcmp
// KCMP_FILES): a thread that called unshare(CLONE_FILES) has one of its own, shown only in
// /proc/PID/task/TID/fd. False when it cannot be told (then its table is searched too).
inline bool shares_files_with_process(pid_t pid, pid_t tid) noexcept
{
    constexpr int kcmp_files = 2; // <linux/kcmp.h>
    return ::syscall(SYS_kcmp, pid, tid, kcmp_files, 0UL, 0UL) == 0;
}

// Searches the descriptor tables of process @p pid: its own, and each of its threads' that
// is not the same (a thread that unshared it, or every thread once the leader has exited).
inline std::optional<std::string> fd_holder_in_process(const std::string& proc, const std::string& pid, bool self,
                                                       const std::vector<int>& own_fds, const searched_file& file, int& error)
{
    const std::string base = proc + "/" + pid;
    if (auto found = fd_holder(base, "process " + pid, self, own_fds, file, error))
        return found;
    const int process_error = error;
    const dir_ptr tasks = open_dir(base + "/task");
    if (!tasks) {
        error = process_error != 0 ? process_error : errno;
        return std::nullopt;
    }
    error = 0;
    while (const dirent* entry = next_entry(tasks.get(), error)) {
        const std::string tid = entry->d_name;
        if (!is_pid(tid) || tid == pid)
            continue;
        if (process_error == 0 && shares_files_with_process(std::atoi(pid.c_str()), std::atoi(tid.c_str())))
            continue;
        int task_error = 0;
        if (auto found = fd_holder(base + "/task/" + tid, "thread " + tid + " of process " + pid, self, own_fds, file, task_error))
            return found;
        note_error(error, task_error);
    }
    if (error == 0 && process_error != ENOENT)
        error = process_error; // a leader that exited lists nothing, which is not an error
    return std::nullopt;
}

// Whether process @p pid maps the file (dev and inode columns of its maps); sets @p error
// when its maps cannot be read.
inline bool maps_file(const std::string& proc, const std::string& pid, const struct stat& file, int& error)
{
    error = 0;
    errno = 0;
    std::ifstream maps(proc + "/" + pid + "/maps");
    if (!maps) {
        error = errno != 0 ? errno : EACCES;
        return false;
    }
    // A line: `start-end perms offset major:minor inode path`, the numbers of the device in hex.
    std::string range, perms, offset, device;
    std::uint64_t inode = 0;
    std::string rest;
    while (maps >> range >> perms >> offset >> device >> inode) {
        std::getline(maps, rest);
        const auto colon = device.find(':');
        if (colon == std::string::npos || inode != file.st_ino)
            continue;
        const auto major_number = std::strtoul(device.substr(0, colon).c_str(), nullptr, 16);
        const auto minor_number = std::strtoul(device.substr(colon + 1).c_str(), nullptr, 16);
        if (major_number == major(file.st_dev) && minor_number == minor(file.st_dev))
            return true;
    }
    return false;
}

// The searched file of descriptor @p fd of this process, as seen in @p proc; an error sets
// @p unreadable (the search then cannot be trusted).
inline std::optional<searched_file> describe(int fd, const std::string& proc, std::string& unreadable)
{
    searched_file file;
    const std::string name = std::to_string(fd);
    const auto fail = [&](const std::string& what) {
        unreadable = what + " (" + std::strerror(errno) + ")";
        return std::nullopt;
    };
    if (::fstat(fd, &file.st) != 0)
        return fail("fd " + name);
    const unique_fd own_fds(::open((proc + "/self/fd").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    auto link = own_fds ? fd_link(own_fds.get(), name.c_str()) : std::nullopt;
    if (!link)
        return fail(proc + "/self/fd/" + name);
    file.link = std::move(*link);
    if (!file.link.starts_with('/'))
        return file;
    const unique_fd own_fdinfo(::open((proc + "/self/fdinfo").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    const auto id = own_fdinfo ? read_fd_identity(own_fdinfo.get(), name.c_str()) : std::nullopt;
    if (!id)
        return fail(proc + "/self/fdinfo/" + name);
    file.mount_id = id->mount_id;
    file.fdinfo_has_inode = id->inode.has_value();
    return file;
}

} // namespace holders

/// Looks in every process of @p proc (the caller's own included) for a descriptor other than
/// @p fd and @p also_mine, or (with @p mappings) a mapping, that refers to @p fd's file.
/// Processes that end during the search are skipped. A search, not a proof: for names in
/// messages, for the simulated kernel's files (pipes), which no other process can reach, and
/// for the descriptors a write lease does not see (`O_PATH`). It reads each descriptor's link
/// and fdinfo, never stat()s it: a tenant's FUSE server that never answers cannot stall it.
/// Reading a process's maps takes its mmap lock, which a tenant can hold up only with a page
/// fault its own FUSE server does not answer (and a writer queued behind it).
inline file_references find_other_holders(int fd, std::vector<int> also_mine = {}, const std::string& proc = "/proc",
                                          bool mappings = true)
{
    also_mine.push_back(fd);
    file_references result;
    const auto file = holders::describe(fd, proc, result.unreadable);
    if (!file)
        return result;
    const std::string me = std::to_string(::getpid());
    const holders::dir_ptr dir = holders::open_dir(proc);
    if (!dir) {
        result.unreadable = proc + " (" + std::strerror(errno) + ")";
        return result;
    }
    int listing_error = 0;
    while (const dirent* entry = holders::next_entry(dir.get(), listing_error)) {
        const std::string pid = entry->d_name;
        if (!holders::is_pid(pid))
            continue;
        int fd_error = 0;
        int maps_error = 0;
        if (auto found = holders::fd_holder_in_process(proc, pid, pid == me, also_mine, *file, fd_error)) {
            result.holder = std::move(*found);
            return result;
        }
        if (mappings && holders::maps_file(proc, pid, file->st, maps_error)) {
            result.holder = "a mapping in process " + pid;
            return result;
        }
        // Process 1 is this PID namespace's init, which no tenant can be; where it cannot be read
        // (an init more privileged than the caller, as in some sandboxes), it is searched as far
        // as it can be.
        const int error = fd_error != 0 && fd_error != ENOENT ? fd_error : maps_error != ENOENT ? maps_error : 0;
        if (error != 0 && result.unreadable.empty() && pid != "1")
            result.unreadable = "process " + pid + " (" + std::strerror(error) + ")";
    }
    if (listing_error != 0 && result.unreadable.empty())
        result.unreadable = proc + " (" + std::strerror(listing_error) + ")";
    return result;
}

} // namespace hugezero::detail

#endif
