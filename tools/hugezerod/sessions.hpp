// hugezerod's client sessions: accepting connections (who may connect, how many), reading their
// requests, answering them, and closing them. A malformed request is answered and its
// connection closed after a short linger, so the reply is not lost. The leases a session
// holds live in lease_desk.hpp; the loop thread owns all of it.
#ifndef HUGEZERO_TOOLS_HUGEZEROD_SESSIONS_HPP
#define HUGEZERO_TOOLS_HUGEZEROD_SESSIONS_HPP

#include <chrono>
#include <algorithm>
#include <cstdint>
#include <functional>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include <sys/socket.h>

#include <hugezero/socket_message.hpp>
#include <hugezero/unique_fd.hpp>

#include "hugezerod/config.hpp"
#include "hugezerod/event_loop.hpp"
#include "hugezerod/lease_desk.hpp"
#include "hugezerod/logging.hpp"
#include "hugezerod/metrics.hpp"
#include "hugezerod/peer.hpp"
#include "protocol/replies.hpp"
#include "protocol/requests.hpp"

namespace hugezerod {

class sessions {
public:
    /// Serves the connections of @p listener on @p loop, under @p c (which a reload may change
    /// in place), handing lease requests to @p desk and asking @p status for the status reply.
    sessions(event_loop& loop, int listener, const config& c, lease_desk& desk, daemon_counters& counters,
             const server_hooks& hooks, std::function<std::string()> status)
        : loop_(loop), listener_(listener), config_(c), desk_(desk), counters_(counters), hooks_(hooks), status_(std::move(status))
    {
        desk_.on_reply([this](std::uint64_t id, const std::string& text, int fd) { return reply(id, text, fd); });
        listen();
    }
    sessions(const sessions&) = delete;
    sessions& operator=(const sessions&) = delete;

    /// Connections open now.
    [[nodiscard]] std::size_t count() const noexcept { return clients_.size(); }

    /// Once a tick: closes idle connections and lingering ones whose time is up, and takes
    /// connections again if a shortage of fds stopped it.
    void tick(std::chrono::steady_clock::time_point now)
    {
        close_idle(now);
        for (auto it = lingering_.begin(); it != lingering_.end();)
            if (it->second.until < now) {
                loop_.forget(it->first);
                it = lingering_.erase(it);
            } else {
                ++it;
            }
        if (std::exchange(accept_paused_, false))
            listen();
    }

    /// Closes every connection (the daemon stops: leases out stay valid in their holders).
    void close_all()
    {
        while (!clients_.empty())
            close_client(clients_.begin()->first);
        for (auto& [fd, l] : lingering_)
            loop_.forget(fd);
        lingering_.clear();
    }

private:
    struct client {
        hugezero::unique_fd socket;
        hugezerod::peer peer;
        bool hold_only = false; // said hold: it keeps its leases, every later request is refused
        std::chrono::steady_clock::time_point last_request = std::chrono::steady_clock::now();
    };
    struct refusal {
        int code = 0; // 0: none
        std::string why;
    };
    struct lingerer {
        hugezero::unique_fd socket;
        std::chrono::steady_clock::time_point until;
    };

    void listen()
    {
        loop_.watch(listener_, "the protocol's socket", [this](std::uint32_t) { accept_clients(); });
    }

    void accept_clients()
    {
        for (;;) {
            hugezero::unique_fd s(::accept4(listener_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
            if (!s)
                return accept_failed(errno);
            out_of_fds_ = false;
            hugezerod::peer p = peer_of(s.get());
            if (const refusal r = refusal_for(p); r.code != 0) {
                ++counters_.connections_refused;
                hooks_.log(level::notice, "refused " + p.text() + ": " + r.why);
                (void)hugezero::send_message(s.get(), protocol::format_error(r.code, r.why), -1, MSG_DONTWAIT);
                linger(std::move(s));
                continue;
            }
            const std::uint64_t id = next_id_++; // never reused, unlike fd numbers: a late reply finds no one
            loop_.watch(s.get(), "client " + p.text(), [this, id](std::uint32_t events) { on_client(id, events); });
            ++counters_.connections;
            clients_.emplace(id, client{std::move(s), std::move(p)});
        }
    }

    // Out of fds, the listener rests until the next tick (else it would be ready forever).
    void accept_failed(int error)
    {
        if (error != EMFILE && error != ENFILE)
            return;
        if (!std::exchange(out_of_fds_, true)) // once per shortage
            hooks_.log(level::warning, std::string("cannot accept connections for now: ") + std::strerror(error));
        loop_.forget(listener_);
        accept_paused_ = true;
    }

    [[nodiscard]] refusal refusal_for(const hugezerod::peer& p) const
    {
        if (!allowed(config_, p))
            return {EACCES, "uid " + std::to_string(p.uid) + " is not allowed by " + config_.file + " (allow_users, allow_groups)"};
        if (clients_.size() >= config_.max_clients)
            return {EBUSY, "the daemon serves " + std::to_string(config_.max_clients) + " clients already (max_clients)"};
        if (const pid_t launcher = launched_by_held(p); launcher != 0)
            return {EPERM, "pid " + std::to_string(p.pid) + " was started by a process that said hold (pid " + std::to_string(launcher)
                               + ", e.g. hugezero-run): it may not connect with the launcher's credentials (hugezero-run "
                               + "--full-connection hands the command a connection of its own instead)"};
        const auto same_user = std::count_if(clients_.begin(), clients_.end(), [&](const auto& c) { return c.second.peer.uid == p.uid; });
        if (static_cast<std::size_t>(same_user) >= config_.max_clients_per_user)
            return {EBUSY, "uid " + std::to_string(p.uid) + " has " + std::to_string(same_user)
                               + " connections open already (max_clients_per_user)"};
        return {};
    }

    // The process that said hold on a connection still open and that is @p p's process or
    // one of its ancestors, or 0.
    [[nodiscard]] pid_t launched_by_held(const hugezerod::peer& p) const
    {
        std::vector<pid_t> held;
        for (const auto& [id, c] : clients_)
            if (c.hold_only && c.peer.pid > 1)
                held.push_back(c.peer.pid);
        return held.empty() || p.pid <= 0 ? 0 : held_ancestor(p.pid, held);
    }

    // Closes the connections that hold no lease, wait for none, and have asked nothing for
    // idle_timeout: a peer cannot keep a place among max_clients for free.
    void close_idle(std::chrono::steady_clock::time_point now)
    {
        if (config_.idle_timeout.count() == 0)
            return;
        std::vector<std::uint64_t> idle;
        for (const auto& [id, c] : clients_)
            if (now - c.last_request >= config_.idle_timeout && !desk_.busy(id))
                idle.push_back(id);
        for (const std::uint64_t id : idle) {
            ++counters_.idle_connections_closed;
            hooks_.log(level::info, clients_.at(id).peer.text() + ": no lease and no request for "
                                        + std::to_string(config_.idle_timeout.count()) + " ms (idle_timeout); connection closed");
            close_client(id);
        }
    }

    void on_client(std::uint64_t id, std::uint32_t events)
    {
        for (int i = 0; i < 16; ++i) { // then the others' turn
            const auto it = clients_.find(id);
            if (it == clients_.end())
                return;
            hugezero::socket_message in;
            const int error = hugezero::receive_message(it->second.socket.get(), protocol::max_request, in, MSG_DONTWAIT, false);
            if (error == EAGAIN)
                break;
            if (error != 0 || in.end)
                return close_client(id);
            if (const auto why = malformed(in))
                return refuse_and_close(id, *why);
            it->second.last_request = std::chrono::steady_clock::now();
            handle(id, it->second, in.bytes);
        }
        if ((events & (EPOLLHUP | EPOLLERR)) != 0 && (events & EPOLLIN) == 0)
            close_client(id);
    }

    // Why a message is not a request at all.
    static std::optional<protocol::parse_error> malformed(const hugezero::socket_message& in)
    {
        if (!in.fds.empty() || in.fds_dropped)
            return protocol::parse_error{EBADMSG, "the daemon takes no fds, and some came"};
        if (in.truncated)
            return protocol::parse_error{EMSGSIZE, "a request is at most " + std::to_string(protocol::max_request) + " bytes"};
        return std::nullopt;
    }

    void handle(std::uint64_t id, client& c, const std::string& text)
    {
        auto parsed = protocol::parse_request(text);
        if (const auto* e = std::get_if<protocol::parse_error>(&parsed))
            return refuse_and_close(id, *e);
        auto& r = std::get<protocol::request>(parsed);
        ++counters_.requests[std::string(protocol::verb_of(r))]; // refused on a held connection or not
        if (c.hold_only)
            return refuse_on_held(id, r);
        static_assert(std::variant_size_v<protocol::request> == 4, "a new verb needs its case here");
        if (auto* a = std::get_if<protocol::acquire_request>(&r))
            desk_.acquire(id, c.peer.uid, std::move(*a));
        else if (const auto* g = std::get_if<protocol::release_request>(&r); g && !g->tag.empty())
            desk_.release_tag(id, c.peer.uid, g->tag);
        else if (g)
            desk_.release(id, g->lease);
        else if (std::holds_alternative<protocol::status_request>(r))
            (void)reply(id, status_(), -1);
        else if (std::holds_alternative<protocol::hold_request>(r)) {
            c.hold_only = true;
            (void)reply(id, protocol::format_held(desk_.leases_of(id)), -1);
        }
    }

    // A well-formed request on a connection that said hold: refused, and the connection stays
    // (so do its leases).
    void refuse_on_held(std::uint64_t id, const protocol::request& r)
    {
        ++counters_.held_requests_refused;
        if (std::holds_alternative<protocol::acquire_request>(r))
            ++counters_.acquires_refused;
        const std::size_t n = desk_.leases_of(id);
        (void)reply(id, protocol::format_error(EPERM, "this connection said hold: it keeps its " + std::to_string(n)
                                                          + (n == 1 ? " lease" : " leases") + " until it closes, and may ask nothing more"),
                    -1);
    }

    // A malformed request: the error reply, then the connection closes, after a linger.
    void refuse_and_close(std::uint64_t id, const protocol::parse_error& why)
    {
        const auto it = clients_.find(id);
        ++counters_.bad_requests;
        hooks_.log(level::notice, it->second.peer.text() + ": " + why.message + "; connection closed");
        (void)hugezero::send_message(it->second.socket.get(), protocol::format_error(why.code, why.message), -1, MSG_DONTWAIT);
        hugezero::unique_fd s = std::move(it->second.socket);
        loop_.forget(s.get());
        close_client(id);
        linger(std::move(s));
    }

    // Sends @p text (and @p fd) to client @p id; a client that cannot take it is closed.
    bool reply(std::uint64_t id, const std::string& text, int fd)
    {
        const auto it = clients_.find(id);
        if (it == clients_.end())
            return false;
        if (const int error = hugezero::send_message(it->second.socket.get(), text, fd, MSG_DONTWAIT); error != 0) {
            hooks_.log(level::notice, it->second.peer.text() + ": cannot reply (" + std::strerror(error) + "); connection closed");
            close_client(id);
            return false;
        }
        return true;
    }

    // A connection closed right after an error reply would lose the reply if the peer's next
    // packet were already queued (the peer then reads ECONNRESET, not the reply): the daemon
    // stops writing, discards what comes, and closes at the peer's end or after 2 s.
    void linger(hugezero::unique_fd s)
    {
        if (!s || lingering_.size() >= 64)
            return;
        (void)::shutdown(s.get(), SHUT_WR);
        const int fd = s.get();
        loop_.watch(fd, "a closing connection", [this, fd](std::uint32_t) { on_lingering(fd); });
        lingering_.emplace(fd, lingerer{std::move(s), std::chrono::steady_clock::now() + std::chrono::seconds(2)});
    }

    void on_lingering(int fd)
    {
        char discard[2048];
        ssize_t n = 0;
        for (int i = 0; i < 16 && (n = ::recv(fd, discard, sizeof discard, MSG_DONTWAIT)) > 0; ++i) {
        } // then the others' turn; its 2 s end at a tick
        if (n == 0 || (n < 0 && errno != EAGAIN)) {
            loop_.forget(fd);
            lingering_.erase(fd); // closes it
        }
    }

    void close_client(std::uint64_t id)
    {
        const auto it = clients_.find(id);
        if (it == clients_.end())
            return;
        if (it->second.socket)
            loop_.forget(it->second.socket.get());
        desk_.connection_closed(id); // its leases go back, its cold acquires are cancelled
        clients_.erase(it);
    }

    event_loop& loop_;
    int listener_;
    const config& config_;
    lease_desk& desk_;
    daemon_counters& counters_;
    const server_hooks& hooks_;
    std::function<std::string()> status_;
    std::map<std::uint64_t, client> clients_; // by connection id
    std::map<int, lingerer> lingering_;       // by socket fd
    std::uint64_t next_id_ = 1;
    bool accept_paused_ = false;          // out of fds: the listener is watched again at the next tick
    bool out_of_fds_ = false;             // said so already
};

} // namespace hugezerod

#endif
