// The protocol's listening socket: the one systemd passes (socket activation, LISTEN_FDS), or
// one hugezerod makes at the configured path.
#ifndef HUGEZERO_TOOLS_HUGEZEROD_ACTIVATION_HPP
#define HUGEZERO_TOOLS_HUGEZEROD_ACTIVATION_HPP

#include <cstring>
#include <string>

#include <fcntl.h>
#include <systemd/sd-daemon.h>

#include <hugezero/unique_fd.hpp>

#include "hugezerod/config.hpp"
#include "hugezerod/listeners.hpp"

namespace hugezerod {

/// The protocol socket: systemd's (socket activation; then @p activated) or one made at the path.
/// @throws socket_error naming what is wrong.
inline hugezero::unique_fd protocol_socket(const config& c, bool& activated)
{
    const int n = sd_listen_fds(1);
    if (n < 0)
        throw socket_error(std::string("LISTEN_FDS: ") + std::strerror(-n));
    activated = n > 0;
    if (n == 0)
        return listen_unix(c.socket, SOCK_SEQPACKET, c.socket_mode, c.socket_group);
    if (n > 1)
        throw socket_error("systemd passed " + std::to_string(n) + " sockets; hugezerod takes one (its .socket unit's ListenSequentialPacket=)");
    if (sd_is_socket_unix(SD_LISTEN_FDS_START, SOCK_SEQPACKET, 1, nullptr, 0) <= 0)
        throw socket_error("the socket systemd passed is not a listening Unix SOCK_SEQPACKET socket (ListenSequentialPacket=)");
    ::fcntl(SD_LISTEN_FDS_START, F_SETFD, FD_CLOEXEC);
    ::fcntl(SD_LISTEN_FDS_START, F_SETFL, ::fcntl(SD_LISTEN_FDS_START, F_GETFL) | O_NONBLOCK);
    return hugezero::unique_fd(SD_LISTEN_FDS_START);
}

} // namespace hugezerod

#endif
