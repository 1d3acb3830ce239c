// A client of hugezerod: connect, acquire (the lease's fd), release, status, hold. hugezero-run,
// `hugezerod status`, the tests and bench_daemon use it; docs/daemon.md shows the same
// exchange in C for VMMs that do not include hugezero.
#ifndef HUGEZERO_EXAMPLES_HUGEZEROD_CLIENT_HPP
#define HUGEZERO_EXAMPLES_HUGEZEROD_CLIENT_HPP

#include <chrono>
#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>

#include <sys/time.h>

#include "protocol.hpp"
#include "sockets.hpp"
#include "transport.hpp"

namespace hugezerod {

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
    hugezero_tools::owned_fd fd;
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
        try {
            socket_ = connect_unix(path_);
        } catch (const socket_error& e) {
            throw client_error(errno, std::string("hugezerod at ") + e.what());
        }
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

    /// Sends @p text as it is (tests send malformed requests) and returns the reply's packet.
    packet exchange(std::string_view text)
    {
        packet in;
        if (const int error = send_packet(socket_.get(), text); error != 0) {
            // A daemon that refused the connection has said why, and stopped reading.
            if (receive_packet(socket_.get(), protocol::max_reply, in, MSG_DONTWAIT) == 0 && !in.text.empty())
                return in;
            throw client_error(error, path_ + ": cannot send: " + std::strerror(error));
        }
        if (const int error = receive_packet(socket_.get(), protocol::max_reply, in); error != 0) {
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

    protocol::reply round_trip(const std::string& text, hugezero_tools::owned_fd* fd)
    {
        packet in = exchange(text);
        if (in.end)
            throw client_error(ECONNRESET, path_ + ": the daemon closed the connection");
        protocol::reply r;
        try {
            r = protocol::parse_reply(in.text);
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
    hugezero_tools::owned_fd socket_;
};

} // namespace hugezerod

#endif
