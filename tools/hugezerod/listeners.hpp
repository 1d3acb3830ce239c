// The daemon's listening sockets: the protocol's Unix socket (made, or inherited from systemd's
// socket activation) and the metrics endpoint (a Unix socket or a loopback TCP port).
#ifndef HUGEZERO_TOOLS_HUGEZEROD_LISTENERS_HPP
#define HUGEZERO_TOOLS_HUGEZEROD_LISTENERS_HPP

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <system_error>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <hugezero/unique_fd.hpp>

#include "common/units.hpp"
#include "protocol/client.hpp"

namespace hugezerod {

/// A listening socket that could not be had; the message names the address.
class socket_error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

inline std::string errno_text(int error) { return std::strerror(error); }

/// A sockaddr_un for @p path. @throws socket_error if it is too long.
inline sockaddr_un unix_address(const std::string& path)
{
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    if (path.size() >= sizeof a.sun_path)
        throw socket_error(path + ": a Unix socket path has at most " + std::to_string(sizeof a.sun_path - 1) + " bytes");
    std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
    return a;
}

/// Listens on the Unix socket @p path (its directory made if missing), with permissions
/// @p mode. A socket file nobody listens on (a daemon that died) is replaced; one that
/// answers is another daemon's: refused.
inline hugezero::unique_fd listen_unix(const std::string& path, int type, unsigned mode, std::optional<gid_t> group = std::nullopt)
{
    const sockaddr_un a = unix_address(path);
    std::error_code ignored;
    std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ignored);
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            throw socket_error(path + ": exists and is not a socket");
        if (connect_unix(path, type).second == 0)
            throw socket_error(path + ": another process serves it (another hugezerod?)");
        ::unlink(path.c_str()); // stale: nobody answers
    }
    hugezero::unique_fd s(::socket(AF_UNIX, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!s)
        throw socket_error("socket: " + errno_text(errno));
    if (::bind(s.get(), reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0)
        throw socket_error(path + ": cannot bind: " + errno_text(errno));
    if (::chmod(path.c_str(), mode) != 0)
        throw socket_error(path + ": cannot set its permissions: " + errno_text(errno));
    if (group && ::chown(path.c_str(), static_cast<uid_t>(-1), *group) != 0)
        throw socket_error(path + ": cannot give it to group " + std::to_string(*group) + ": " + errno_text(errno));
    if (::listen(s.get(), 128) != 0)
        throw socket_error(path + ": cannot listen: " + errno_text(errno));
    return s;
}

/// `tcp:HOST:PORT` with HOST a loopback IPv4 address (metrics are for this host).
/// @throws socket_error naming it.
inline sockaddr_in tcp_address(const std::string& address)
{
    const std::string spec = address.substr(4);
    const std::size_t colon = spec.rfind(':');
    if (colon == std::string::npos)
        throw socket_error(address + ": expected tcp:127.0.0.1:PORT");
    sockaddr_in a{};
    a.sin_family = AF_INET;
    if (::inet_pton(AF_INET, spec.substr(0, colon).c_str(), &a.sin_addr) != 1)
        throw socket_error(address + ": \"" + spec.substr(0, colon) + "\" is not an IPv4 address");
    if ((ntohl(a.sin_addr.s_addr) >> 24) != 127)
        throw socket_error(address + ": metrics are served on loopback addresses only (127.0.0.0/8)");
    const auto port = hugezero_tools::parse_number(spec.substr(colon + 1));
    if (!port || *port > 65535)
        throw socket_error(address + ": \"" + spec.substr(colon + 1) + "\" is not a port number");
    a.sin_port = htons(static_cast<std::uint16_t>(*port));
    return a;
}

/// Listens on @p address (tcp_address()). @throws socket_error naming it.
inline hugezero::unique_fd listen_tcp(const std::string& address)
{
    const sockaddr_in a = tcp_address(address);
    hugezero::unique_fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!s)
        throw socket_error("socket: " + errno_text(errno));
    const int one = 1;
    (void)::setsockopt(s.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(s.get(), reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0)
        throw socket_error(address + ": cannot bind: " + errno_text(errno));
    if (::listen(s.get(), 16) != 0)
        throw socket_error(address + ": cannot listen: " + errno_text(errno));
    return s;
}

/// A listening socket, and the socket file it made (removed with it).
struct listening_socket {
    hugezero::unique_fd fd;
    std::string file; ///< Empty for a TCP socket.

    listening_socket() = default;
    listening_socket(hugezero::unique_fd s, std::string path) : fd(std::move(s)), file(std::move(path)) {}
    listening_socket(listening_socket&& other) noexcept : fd(std::move(other.fd)), file(std::exchange(other.file, {})) {}
    listening_socket& operator=(listening_socket&& other) noexcept
    {
        std::swap(fd, other.fd);
        std::swap(file, other.file);
        return *this;
    }
    ~listening_socket()
    {
        if (!file.empty())
            ::unlink(file.c_str());
    }
};

/// The metrics endpoint @p address (`unix:/PATH` or `tcp:HOST:PORT`).
inline listening_socket listen_metrics(const std::string& address)
{
    if (address.rfind("unix:", 0) == 0)
        return {listen_unix(address.substr(5), SOCK_STREAM, 0660), address.substr(5)};
    return {listen_tcp(address), {}};
}

} // namespace hugezerod

#endif
