// Who is on the other end of a Unix socket (SO_PEERCRED, SO_PEERGROUPS), and whether the
// configuration lets them in.
#ifndef HUGEZERO_TOOLS_HUGEZEROD_PEER_HPP
#define HUGEZERO_TOOLS_HUGEZEROD_PEER_HPP

#include <algorithm>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <sys/socket.h>
#include <sys/types.h>

#include "hugezerod/config.hpp"

namespace hugezerod {

/// A connected peer's credentials, as the kernel saw them when it connected.
struct peer {
    pid_t pid = 0;
    uid_t uid = 0;
    gid_t gid = 0;
    std::vector<gid_t> groups; ///< Supplementary groups.

    /// Prints `pid 123 (uid 1000, gid 1000)`.
    [[nodiscard]] std::string text() const
    {
        return "pid " + std::to_string(pid) + " (uid " + std::to_string(uid) + ", gid " + std::to_string(gid) + ")";
    }
};

/// The peer of connected socket @p s; empty credentials (pid 0) if the kernel cannot tell.
inline peer peer_of(int s)
{
    peer p;
    ucred c{};
    socklen_t length = sizeof c;
    if (::getsockopt(s, SOL_SOCKET, SO_PEERCRED, &c, &length) == 0) {
        p.pid = c.pid;
        p.uid = c.uid;
        p.gid = c.gid;
    } else {
        p.uid = static_cast<uid_t>(-1);
        p.gid = static_cast<gid_t>(-1);
    }
    // Supplementary groups: on any failure none (never a buffer the kernel did not fill).
    std::vector<gid_t> groups(64);
    length = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
    int rc = ::getsockopt(s, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &length);
    if (rc != 0 && errno == ERANGE) {
        groups.resize(length / sizeof(gid_t));
        rc = ::getsockopt(s, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &length);
    }
    groups.resize(rc == 0 ? length / sizeof(gid_t) : 0);
    p.groups = std::move(groups);
    return p;
}

/// The parent of process @p pid (/proc/PID/stat), or 0 if it cannot be read.
inline pid_t parent_of(pid_t pid)
{
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    std::getline(in, line);
    const auto close = line.rfind(')'); // the name may hold spaces and parentheses
    if (close == std::string::npos)
        return 0;
    std::istringstream rest(line.substr(close + 1));
    std::string state;
    pid_t parent = 0;
    rest >> state >> parent;
    return rest ? parent : 0;
}

/// Which of @p held (processes that said hold on a connection still open) is @p pid or one of
/// its ancestors, or 0: the program hugezero-run started keeps the launcher's process (exec),
/// and the launcher makes it the subreaper of everything it starts, so no descendant leaves
/// its line.
inline pid_t held_ancestor(pid_t pid, const std::vector<pid_t>& held)
{
    for (int depth = 0; pid > 1 && depth < 128; ++depth, pid = parent_of(pid))
        if (std::find(held.begin(), held.end(), pid) != held.end())
            return pid;
    return 0;
}

/// Whether @p c lets @p p in: its uid among allow_users, or its group or one of its
/// supplementary groups among allow_groups.
inline bool allowed(const config& c, const peer& p)
{
    const auto has = [](const auto& list, auto id) { return std::find(list.begin(), list.end(), id) != list.end(); };
    if (has(c.allow_users, p.uid) || has(c.allow_groups, p.gid))
        return true;
    return std::any_of(p.groups.begin(), p.groups.end(), [&](gid_t g) { return has(c.allow_groups, g); });
}

} // namespace hugezerod

#endif
