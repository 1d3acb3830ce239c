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
#include <optional>
#include <string>
#include <string_view>
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

// What /proc/PID/fdinfo/N tells of a descriptor: the mount it was opened through and, since
// Linux 5.14, its inode. Read instead of stat()ing /proc/PID/fd/N, which asks the file's
// filesystem (a FUSE server a tenant runs could leave that call waiting for ever).
struct fd_identity {
    int mount_id = -1;
    std::optional<std::uint64_t> inode;
};

inline std::optional<fd_identity> read_fd_identity(int fdinfo_dir, const char* name)
{
    unique_fd fd(::openat(fdinfo_dir, name, O_RDONLY | O_CLOEXEC));
    if (!fd)
        return std::nullopt;
    char text[512];
    const ssize_t n = ::read(fd.get(), text, sizeof text - 1);
    if (n <= 0)
        return std::nullopt;
    text[n] = '\0';
    fd_identity id;
    for (const char* line = text; line != nullptr && *line != '\0';) {
        if (std::strncmp(line, "mnt_id:", 7) == 0)
            id.mount_id = std::atoi(line + 7);
        else if (std::strncmp(line, "ino:", 4) == 0)
            id.inode = std::strtoull(line + 4, nullptr, 10);
        line = std::strchr(line, '\n');
        line = line != nullptr ? line + 1 : nullptr;
    }
    return id;
}

// The device of mount @p mount_id as the mountinfo at @p path shows it (`ID PARENT MAJ:MIN ...`),
// or nothing if it is not there (a kernel-internal mount, such as a memfd's).
inline std::optional<dev_t> mount_device(const std::string& path, int mount_id)
{
    std::ifstream in(path);
    std::string line;
    while (std::getline(in, line)) {
        int id = -1, parent = -1;
        unsigned major_number = 0, minor_number = 0;
        if (std::sscanf(line.c_str(), "%d %d %u:%u", &id, &parent, &major_number, &minor_number) == 4 && id == mount_id)
            return makedev(major_number, minor_number);
    }
    return std::nullopt;
}

// The file the pool searches for: its device and inode, and the mount its descriptor was opened
// through (-1 when fdinfo cannot say).
struct searched_file {
    struct stat st {};
    int mount_id = -1;
    bool fdinfo_has_inode = false; // false before Linux 5.14: then each descriptor is stat()ed
};

// Whether descriptor @p name of the table listed at @p listing (its fdinfo at @p fdinfo_dir, the
// mounts it sees at @p mountinfo) is @p file. An inode that matches on a mount its mountinfo
// does not show counts as the file: the search fails closed.
inline bool is_searched_file(int listing, int fdinfo_dir, const char* name, const std::string& mountinfo,
                             const searched_file& file)
{
    if (!file.fdinfo_has_inode) {
        struct stat st {};
        return ::fstatat(listing, name, &st, 0) == 0 && st.st_dev == file.st.st_dev && st.st_ino == file.st.st_ino;
    }
    const auto id = read_fd_identity(fdinfo_dir, name);
    if (!id || !id->inode || *id->inode != file.st.st_ino)
        return false;
    if (id->mount_id == file.mount_id)
        return true;
    const auto device = mount_device(mountinfo, id->mount_id);
    return !device || *device == file.st.st_dev;
}

// Whether an fd in the descriptor table at @p table (`/proc/PID` or `/proc/PID/task/TID`, named
// @p who in messages; other than @p own_fds when it is this process's) is the file @p file; sets
// @p error when the table cannot be listed (ENOENT: it is gone).
inline std::optional<std::string> fd_holder(const std::string& table, const std::string& who, bool self,
                                            const std::vector<int>& own_fds, const searched_file& file, int& error)
{
    error = 0;
    unique_fd dir_fd(::open((table + "/fd").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    DIR* dir = dir_fd ? ::fdopendir(dir_fd.get()) : nullptr;
    if (dir == nullptr) {
        error = errno;
        return std::nullopt;
    }
    (void)dir_fd.release(); // closedir closes it
    const unique_fd fdinfo(::open((table + "/fdinfo").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    const int listing = ::dirfd(dir);
    std::optional<std::string> found;
    while (const dirent* entry = ::readdir(dir)) {
        const std::string_view name = entry->d_name;
        if (!is_pid(name))
            continue;
        const int n = std::atoi(entry->d_name);
        if (self && (n == listing || n == fdinfo.get() || std::find(own_fds.begin(), own_fds.end(), n) != own_fds.end()))
            continue;
        if (is_searched_file(listing, fdinfo.get(), entry->d_name, table + "/mountinfo", file)) {
            found = "fd " + std::string(name) + " of " + who;
            break;
        }
    }
    ::closedir(dir);
    return found;
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
    unique_fd tasks_fd(::open((base + "/task").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    DIR* tasks = tasks_fd ? ::fdopendir(tasks_fd.get()) : nullptr;
    if (tasks == nullptr) {
        error = process_error != 0 ? process_error : errno;
        return std::nullopt;
    }
    (void)tasks_fd.release();
    std::optional<std::string> found;
    error = 0;
    while (const dirent* entry = ::readdir(tasks)) {
        const std::string tid = entry->d_name;
        if (!is_pid(tid) || tid == pid)
            continue;
        if (process_error == 0 && shares_files_with_process(std::atoi(pid.c_str()), std::atoi(tid.c_str())))
            continue;
        int task_error = 0;
        found = fd_holder(base + "/task/" + tid, "thread " + tid + " of process " + pid, self, own_fds, file, task_error);
        if (found)
            break;
        if (task_error != 0 && task_error != ENOENT && error == 0)
            error = task_error;
    }
    ::closedir(tasks);
    if (!found && error == 0 && process_error != ENOENT)
        error = process_error; // a leader that exited lists nothing, which is not an error
    return found;
}

// Whether process @p pid maps the file (dev and inode columns of its maps); sets @p error
// when its maps cannot be read.
inline bool maps_file(const std::string& proc, const std::string& pid, const struct stat& file, int& error)
{
    error = 0;
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

} // namespace holders

/// Looks in every process of @p proc (the caller's own included) for a descriptor other than
/// @p fd and @p also_mine, or (with @p mappings) a mapping, that refers to @p fd's file.
/// Processes that end during the search are skipped. A search, not a proof: for names in
/// messages, for the simulated kernel's files (pipes), which no other process can reach, and
/// for the descriptors a write lease does not see (`O_PATH`).
inline file_references find_other_holders(int fd, std::vector<int> also_mine = {}, const std::string& proc = "/proc",
                                          bool mappings = true)
{
    also_mine.push_back(fd);
    file_references result;
    holders::searched_file file;
    if (::fstat(fd, &file.st) != 0) {
        result.unreadable = "fd " + std::to_string(fd) + " (" + std::strerror(errno) + ")";
        return result;
    }
    if (const unique_fd own_fdinfo(::open((proc + "/self/fdinfo").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)); own_fdinfo) {
        const auto id = holders::read_fd_identity(own_fdinfo.get(), std::to_string(fd).c_str());
        file.mount_id = id ? id->mount_id : -1;
        file.fdinfo_has_inode = id && id->inode;
    }
    const std::string me = std::to_string(::getpid());
    unique_fd proc_fd(::open(proc.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    DIR* dir = proc_fd ? ::fdopendir(proc_fd.get()) : nullptr;
    if (dir == nullptr) {
        result.unreadable = proc + " (" + std::strerror(errno) + ")";
        return result;
    }
    (void)proc_fd.release();
    while (const dirent* entry = ::readdir(dir)) {
        const std::string pid = entry->d_name;
        if (!holders::is_pid(pid))
            continue;
        int fd_error = 0;
        int maps_error = 0;
        if (auto found = holders::fd_holder_in_process(proc, pid, pid == me, also_mine, file, fd_error)) {
            result.holder = std::move(*found);
            break;
        }
        if (mappings && holders::maps_file(proc, pid, file.st, maps_error)) {
            result.holder = "a mapping in process " + pid;
            break;
        }
        const int error = fd_error != 0 && fd_error != ENOENT ? fd_error : maps_error != ENOENT ? maps_error : 0;
        if (error != 0 && result.unreadable.empty())
            result.unreadable = "process " + pid + " (" + std::strerror(error) + ")";
    }
    ::closedir(dir);
    return result;
}

} // namespace hugezero::detail

#endif
