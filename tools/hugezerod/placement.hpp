// hugezerod's placement of a lease's file: its owner and mode while it is out, and a second
// link to it at a path a hook asks for (libvirt's RAM path of a domain, docs/libvirt.md), within
// the directories the operator allows (`place_directories`), and both undone when the lease
// comes back. The directory the link goes into may belong to the tenant (libvirt gives a
// domain's directory to the user QEMU runs as), so the path is resolved without following a
// symbolic link and without leaving the allowed directory's mount, and the link is removed on
// return only if it is still the lease's file.
#ifndef HUGEZERO_TOOLS_HUGEZEROD_PLACEMENT_HPP
#define HUGEZERO_TOOLS_HUGEZEROD_PLACEMENT_HPP

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <hugezero/lease.hpp>
#include <hugezero/unique_fd.hpp>

#include "protocol/requests.hpp"

namespace hugezerod {

/// Why a placement failed: an errno and a sentence naming the path.
struct placement_error {
    int code = 0;
    std::string message;
};

/// A second link to a lease's file, removed when the lease comes back.
struct placed_link {
    hugezero::unique_fd directory; ///< O_PATH, resolved once, never by name again.
    std::string name;
    std::string path;              ///< For messages.
    dev_t device = 0;
    ino_t inode = 0;
};

namespace detail_placement {

// openat2(2) has no glibc wrapper in Debian 12.
inline int open_beneath(int root, const std::string& relative)
{
    open_how how{};
    how.flags = O_PATH | O_DIRECTORY | O_CLOEXEC;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV;
    return static_cast<int>(::syscall(SYS_openat2, root, relative.c_str(), &how, sizeof how));
}

inline std::string octal(unsigned mode)
{
    char text[8];
    std::snprintf(text, sizeof text, "%04o", mode & 07777);
    return text;
}

inline placement_error failed(int code, const std::string& what)
{
    return placement_error{code, what + ": " + std::strerror(code)};
}

// The allowed directory @p path is beneath, or empty.
inline std::string allowed_root(const std::string& path, const std::vector<std::string>& allowed)
{
    for (const std::string& dir : allowed)
        if (path.size() > dir.size() + 1 && path.compare(0, dir.size(), dir) == 0 && path[dir.size()] == '/')
            return dir;
    return {};
}

} // namespace detail_placement

/// Gives @p l's file @p mode, then to @p owner (uid, gid) (each unless empty): in that order,
/// as changing the mode of a file another user owns needs CAP_FOWNER, which the unit drops.
inline std::optional<placement_error> set_owner(const hugezero::lease& l, const std::optional<protocol::file_owner>& owner,
                                                const std::optional<unsigned>& mode)
{
    if (mode && ::fchmod(l.fd(), *mode) != 0)
        return detail_placement::failed(errno, "cannot set the lease's file's mode");
    if (owner && ::fchown(l.fd(), owner->uid, owner->gid) != 0)
        return detail_placement::failed(errno, "cannot give the lease's file to " + std::to_string(owner->uid) + ":"
                                                   + std::to_string(owner->gid));
    return std::nullopt;
}

/// Gives @p l's file back to the daemon's user (CAP_CHOWN), then mode 0600.
inline void reset_owner(const hugezero::lease& l) noexcept
{
    // Best effort: a given or placed lease is emptied, never served again, whoever owns it then.
    [[maybe_unused]] const int owned = ::fchown(l.fd(), ::geteuid(), ::getegid());
    [[maybe_unused]] const int moded = ::fchmod(l.fd(), 0600);
}

/// Links @p l's file (a named reservoir's) at @p path, which must be beneath one of @p allowed
/// and whose directory must exist, reached without a symbolic link or a mount point, on the
/// lease's mount, and belong to the daemon's user or to @p owner, writable by its owner only
/// (else a tenant's directory could receive another's lease); an existing file there is never
/// replaced (EEXIST).
inline std::variant<placed_link, placement_error> place(const hugezero::lease& l, const std::string& path,
                                                        const std::vector<std::string>& allowed,
                                                        const std::optional<protocol::file_owner>& owner)
{
    using detail_placement::failed;
    const std::string root = detail_placement::allowed_root(path, allowed);
    if (root.empty())
        return placement_error{EPERM, path + " is not beneath a directory of place_directories"};
    if (l.path().empty())
        return placement_error{EINVAL, "a lease from a memfd reservoir has no file to place at " + path
                                           + ": serve it from a named reservoir (directory) on the same hugetlbfs mount"};
    const hugezero::unique_fd top(::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!top)
        return failed(errno, "cannot open " + root + " (place_directories)");
    const std::size_t slash = path.rfind('/');
    const std::string inside = path.substr(root.size() + 1, slash > root.size() ? slash - root.size() - 1 : 0);
    placed_link link;
    link.directory = hugezero::unique_fd(inside.empty() ? ::fcntl(top.get(), F_DUPFD_CLOEXEC, 0)
                                                        : detail_placement::open_beneath(top.get(), inside));
    if (!link.directory)
        return failed(errno, "cannot reach " + path.substr(0, slash) + " from " + root
                                 + " without a symbolic link or another mount");
    link.name = path.substr(slash + 1);
    link.path = path;
    struct stat st {};
    if (::fstat(link.directory.get(), &st) != 0)
        return failed(errno, "cannot stat " + path.substr(0, slash));
    if ((st.st_mode & 022) != 0 || (st.st_uid != ::geteuid() && !(owner && st.st_uid == owner->uid)))
        return placement_error{EPERM, path.substr(0, slash) + " belongs to uid " + std::to_string(st.st_uid) + ", mode "
                                          + detail_placement::octal(st.st_mode & 07777) + ": a lease is placed only in a directory of "
                                          + "the daemon's user or of the lease's owner, writable by its owner alone"};
    if (::fstat(l.fd(), &st) != 0)
        return failed(errno, "cannot stat the lease's file");
    link.device = st.st_dev;
    link.inode = st.st_ino;
    if (::linkat(AT_FDCWD, l.path().c_str(), link.directory.get(), link.name.c_str(), 0) != 0) {
        const int e = errno;
        return failed(e, "cannot link " + l.path().string() + " at " + path
                             + (e == EXDEV ? " (place it on the named reservoir's hugetlbfs mount)" : ""));
    }
    return link;
}

/// Removes @p link if it is still the lease's file (a tenant may have replaced it).
inline void unplace(const placed_link& link) noexcept
{
    struct stat st {};
    if (::fstatat(link.directory.get(), link.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_dev == link.device
        && st.st_ino == link.inode)
        (void)::unlinkat(link.directory.get(), link.name.c_str(), 0);
}

} // namespace hugezerod

#endif
