// A client of hugezerod: connect, acquire (the lease's fd), release, status, hold. hugezero-run,
// `hugezerod status`, the tests and bench_daemon use it; docs/daemon.md shows the same
// exchange in C for VMMs that do not include hugezero.
#ifndef HUGEZERO_TOOLS_PROTOCOL_CLIENT_HPP
#define HUGEZERO_TOOLS_PROTOCOL_CLIENT_HPP

#include <cerrno>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>

#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>

#include <hugezero/socket_message.hpp>
#include <hugezero/unique_fd.hpp>

#include "protocol/replies.hpp"
#include "protocol/requests.hpp"

namespace hugezerod {

/// Connects to the Unix socket @p path of @p type (the daemon's: SOCK_SEQPACKET).
/// @return the socket, or the errno of socket() or connect() (ENAMETOOLONG for a path longer
/// than a Unix socket's).
inline std::pair<hugezero::unique_fd, int> connect_unix(const std::string& path, int type = SOCK_SEQPACKET)
{
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    if (path.size() >= sizeof a.sun_path)
        return {hugezero::unique_fd(), ENAMETOOLONG};
    std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
    hugezero::unique_fd s(::socket(AF_UNIX, type | SOCK_CLOEXEC, 0));
    if (!s)
        return {hugezero::unique_fd(), errno};
    if (::connect(s.get(), reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0)
        return {hugezero::unique_fd(), errno};
    return {std::move(s), 0};
}

/// The daemon refused a request (or could not be reached): the errno and its sentence.
class client_error : public std::runtime_error {
public:
    client_error(int code, const std::string& what) : std::runtime_error(what), code_(code) {}
    [[nodiscard]] int code() const noexcept { return code_; }

private:
    int code_;
};

/// A lease received from the daemon.
struct granted_lease {
    protocol::lease_reply info;
    hugezero::unique_fd fd;
};

/// One connection to the daemon. Its leases go back to the daemon when it closes (unless
/// released before).
class client {
public:
    /// Connects to @p socket_path; each reply is waited for at most @p timeout (0: forever).
    /// @throws client_error (ECONNREFUSED, ENOENT, ...) naming it.
    explicit client(std::string socket_path, std::chrono::milliseconds timeout = std::chrono::milliseconds(0))
        : path_(std::move(socket_path)), timeout_(timeout)
    {
        auto [socket, error] = connect_unix(path_);
        if (error != 0)
            throw client_error(error, "hugezerod at " + path_ + ": cannot connect: " + std::strerror(error)
                                          + (error == ENOENT || error == ECONNREFUSED ? " (is hugezerod running?)" : ""));
        socket_ = std::move(socket);
        if (timeout.count() > 0) {
            const timeval t{static_cast<time_t>(timeout.count() / 1000), static_cast<suseconds_t>(timeout.count() % 1000 * 1000)};
            (void)::setsockopt(socket_.get(), SOL_SOCKET, SO_RCVTIMEO, &t, sizeof t);
        }
    }

    /// The connection's fd.
    [[nodiscard]] int fd() const noexcept { return socket_.get(); }

    /// Asks for a lease. @throws client_error with the daemon's errno and sentence.
    granted_lease acquire(const protocol::acquire_request& r)
    {
        granted_lease g;
        const auto answer = round_trip(protocol::format(r), &g.fd);
        g.info = expect<protocol::lease_reply>(answer);
        if (!g.fd)
            throw client_error(EBADMSG, path_ + ": a lease reply without an fd");
        return g;
    }

    /// Gives lease @p id back; returns what the pool did (recycled, deferred, ...).
    std::string release(std::uint64_t id)
    {
        return expect<protocol::released_reply>(round_trip(protocol::format(protocol::release_request{id}), nullptr)).status;
    }

    /// Gives back every detached lease of @p tag (an admin's); returns what the pool did with
    /// each, and how many there were (none: `none`, 0).
    protocol::released_reply release_tag(const std::string& tag)
    {
        return expect<protocol::released_reply>(round_trip(protocol::format(protocol::release_request{0, tag}), nullptr));
    }

    /// The daemon's status.
    protocol::status_reply status()
    {
        return expect<protocol::status_reply>(round_trip(protocol::format(protocol::status_request{}), nullptr));
    }

    /// Makes this connection hold-only before it is handed on (to a VMM): it keeps its leases
    /// until it closes, and the daemon refuses every later request on it. Returns how many
    /// leases it holds.
    std::uint64_t hold()
    {
        return expect<protocol::held_reply>(round_trip(protocol::format(protocol::hold_request{}), nullptr)).leases;
    }

    /// Sends @p text as it is (tests send malformed requests) and returns the reply.
    hugezero::socket_message exchange(std::string_view text)
    {
        hugezero::socket_message in;
        if (const int error = hugezero::send_message(socket_.get(), text); error != 0) {
            // A daemon that refused the connection has said why, and stopped reading.
            if (hugezero::receive_message(socket_.get(), protocol::max_reply, in, MSG_DONTWAIT) == 0 && !in.bytes.empty())
                return in;
            throw client_error(error, path_ + ": cannot send: " + std::strerror(error));
        }
        if (const int error = hugezero::receive_message(socket_.get(), protocol::max_reply, in); error != 0) {
            if (error == EAGAIN) // SO_RCVTIMEO
                throw client_error(ETIMEDOUT, path_ + ": no reply within " + std::to_string(timeout_.count()) + " ms");
            throw client_error(error, path_ + ": cannot receive: " + std::strerror(error));
        }
        return in;
    }

private:
    template <class T>
    T expect(protocol::reply r) const
    {
        if (auto* t = std::get_if<T>(&r))
            return std::move(*t);
        throw client_error(EBADMSG, path_ + ": the daemon's reply does not answer the request");
    }

    protocol::reply round_trip(const std::string& text, hugezero::unique_fd* fd)
    {
        hugezero::socket_message in = exchange(text);
        if (in.end)
            throw client_error(ECONNRESET, path_ + ": the daemon closed the connection");
        protocol::reply r;
        try {
            r = protocol::parse_reply(in.bytes);
        } catch (const std::runtime_error& e) {
            throw client_error(EBADMSG, path_ + ": " + e.what());
        }
        if (const auto* e = std::get_if<protocol::error_reply>(&r))
            throw client_error(e->code, "hugezerod: " + e->message);
        if (fd != nullptr && !in.fds.empty())
            *fd = std::move(in.fds.front());
        return r;
    }

    std::string path_;
    std::chrono::milliseconds timeout_;
    hugezero::unique_fd socket_;
};

} // namespace hugezerod

#endif
