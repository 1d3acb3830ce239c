// Packets on hugezerod's SOCK_SEQPACKET socket: text, and at most one fd (a lease, from the
// daemon to a client). Both sides use these; the daemon on non-blocking sockets.
#ifndef HUGEZERO_EXAMPLES_HUGEZEROD_TRANSPORT_HPP
#define HUGEZERO_EXAMPLES_HUGEZEROD_TRANSPORT_HPP

#include <cerrno>
#include <cstring>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <sys/socket.h>
#include <sys/uio.h>

#include "../common/owned_fd.hpp"

namespace hugezerod {

/// One packet received.
struct packet {
    std::string text;                           ///< Its bytes (at most the limit asked for).
    std::vector<hugezero_tools::owned_fd> fds;  ///< The fds that came with it.
    bool truncated = false;                     ///< Longer than the limit: cut.
    bool fds_truncated = false;                 ///< More fds came than room for: the rest were closed by the kernel.
    bool end = false;                           ///< The peer closed the connection.
};

/// Receives one packet of at most @p limit bytes on @p socket (flags: MSG_DONTWAIT on the
/// daemon's side). Returns the errno of recvmsg() (EAGAIN: nothing there), else 0 and @p out.
/// Without @p take_fds (the daemon, which takes none) fds that came are never installed here:
/// the kernel drops them (no close() runs a hostile file's flush in this process) and says so
/// with MSG_CTRUNC, shown as fds_truncated.
inline int receive_packet(int socket, std::size_t limit, packet& out, int flags = 0, bool take_fds = true)
{
    out = packet{};
    out.text.resize(limit + 1); // one byte more: a longer packet shows as MSG_TRUNC anyway
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 8)] = {};
    iovec io{out.text.data(), out.text.size()};
    msghdr message{};
    message.msg_iov = &io;
    message.msg_iovlen = 1;
    message.msg_control = take_fds ? control : nullptr;
    message.msg_controllen = take_fds ? sizeof control : 0;
    ssize_t n = 0;
    do
        n = ::recvmsg(socket, &message, flags | MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return errno;
    for (cmsghdr* c = take_fds ? CMSG_FIRSTHDR(&message) : nullptr; c != nullptr; c = CMSG_NXTHDR(&message, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
            for (std::size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); ++i) {
                int fd = -1;
                std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
                out.fds.emplace_back(fd);
            }
    out.fds_truncated = (message.msg_flags & MSG_CTRUNC) != 0;
    out.truncated = (message.msg_flags & MSG_TRUNC) != 0 || static_cast<std::size_t>(n) > limit;
    out.end = n == 0 && out.fds.empty() && !out.fds_truncated;
    out.text.resize(std::min(static_cast<std::size_t>(n), limit));
    return 0;
}

/// Sends @p text (and @p fd, unless -1) as one packet. Returns 0 or sendmsg()'s errno; never
/// raises SIGPIPE.
inline int send_packet(int socket, std::string_view text, int fd = -1, int flags = 0)
{
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    iovec io{const_cast<char*>(text.data()), text.size()};
    msghdr message{};
    message.msg_iov = &io;
    message.msg_iovlen = 1;
    if (fd >= 0) {
        message.msg_control = control;
        message.msg_controllen = sizeof control;
        cmsghdr* c = CMSG_FIRSTHDR(&message);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
    }
    ssize_t n = 0;
    do
        n = ::sendmsg(socket, &message, flags | MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    return n < 0 ? errno : 0;
}

} // namespace hugezerod

#endif
