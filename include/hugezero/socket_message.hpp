/// @file
/// @brief Messages with file descriptors on Unix sockets (`SCM_RIGHTS`): the one implementation
/// that fd_passing.hpp (send_fd(), send_lease()) and hugezero's tools (hugezerod's protocol)
/// share.
#ifndef HUGEZERO_SOCKET_MESSAGE_HPP
#define HUGEZERO_SOCKET_MESSAGE_HPP

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include <sys/socket.h>
#include <sys/uio.h>

#include <hugezero/unique_fd.hpp>

namespace hugezero {

/// The most fds one message brings in (receive_message() installs at most this many; the
/// kernel closes the others and says so).
inline constexpr std::size_t max_message_fds = 8;

/// One message received on a Unix socket by receive_message().
struct socket_message {
    std::string bytes;          ///< Its bytes: at most the limit asked for.
    std::vector<unique_fd> fds; ///< The fds that came with it, installed here with `O_CLOEXEC`.
    bool truncated = false;     ///< The message was longer than the limit (`MSG_TRUNC`; never on a stream).
    /// Fds came that were not installed here (`MSG_CTRUNC`): more than max_message_fds, or any
    /// at all when none were accepted. The kernel closed them: nothing of theirs ran here.
    bool fds_dropped = false;
    bool end = false; ///< The peer closed the connection: nothing came.
};

/// Sends @p bytes (at least one: ancillary data needs one) and, unless @p fd is -1, a duplicate
/// of @p fd (it stays open here) as one message on the connected Unix socket @p socket, with
/// sendmsg() @p flags (`MSG_DONTWAIT`, ...). Never raises `SIGPIPE`; a signal does not cut it
/// short. On a stream socket that takes part of the bytes, the rest follows without the fd
/// (with `MSG_DONTWAIT` it may then stop midway with `EAGAIN`: use it on message sockets).
/// @return 0, or sendmsg()'s errno (`EPIPE`: the peer closed its end; `EAGAIN`: full).
inline int send_message(int socket, std::string_view bytes, int fd = -1, int flags = 0) noexcept
{
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    iovec io{const_cast<char*>(bytes.data()), bytes.size()};
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
    std::size_t sent = 0;
    do {
        const ssize_t n = ::sendmsg(socket, &message, flags | MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return errno;
        sent += static_cast<std::size_t>(n);
        io.iov_base = const_cast<char*>(bytes.data()) + sent;
        io.iov_len = bytes.size() - sent;
        message.msg_control = nullptr; // the fd went with the first part
        message.msg_controllen = 0;
    } while (sent < bytes.size());
    return 0;
}

/// Receives one message of at most @p limit bytes on @p socket (on a stream socket: at most
/// @p limit bytes of it, never more), with recvmsg() @p flags. With @p accept_fds, up to
/// max_message_fds fds that come with it are installed here; without, none ever is: the kernel
/// drops them (no close() of a stranger's file runs here) and fds_dropped says so. A signal does
/// not cut it short.
/// @return 0 and @p out; or recvmsg()'s errno (`EAGAIN`: nothing there, with `MSG_DONTWAIT`).
inline int receive_message(int socket, std::size_t limit, socket_message& out, int flags = 0, bool accept_fds = true)
{
    out = socket_message{};
    out.bytes.resize(limit);
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * max_message_fds)] = {};
    iovec io{out.bytes.data(), out.bytes.size()};
    msghdr message{};
    message.msg_iov = &io;
    message.msg_iovlen = 1;
    message.msg_control = accept_fds ? control : nullptr;
    message.msg_controllen = accept_fds ? sizeof control : 0;
    ssize_t n = 0;
    do
        n = ::recvmsg(socket, &message, flags | MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return errno;
    for (cmsghdr* c = accept_fds ? CMSG_FIRSTHDR(&message) : nullptr; c != nullptr; c = CMSG_NXTHDR(&message, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
            for (std::size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); ++i) {
                int fd = -1;
                std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
                out.fds.emplace_back(fd);
            }
    out.fds_dropped = (message.msg_flags & MSG_CTRUNC) != 0;
    out.truncated = (message.msg_flags & MSG_TRUNC) != 0;
    out.end = n == 0 && out.fds.empty() && !out.fds_dropped;
    out.bytes.resize(static_cast<std::size_t>(n));
    return 0;
}

} // namespace hugezero

#endif
