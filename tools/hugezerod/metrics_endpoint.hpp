// hugezerod's metrics endpoint: HTTP/1.0 on a Unix socket or a loopback TCP port, one response
// a connection (`GET /metrics`), written whole without blocking the loop; a scraper that says
// nothing for 5 s is closed, and at most 16 are served at once.
#ifndef HUGEZERO_TOOLS_HUGEZEROD_METRICS_ENDPOINT_HPP
#define HUGEZERO_TOOLS_HUGEZEROD_METRICS_ENDPOINT_HPP

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>

#include <sys/socket.h>

#include <hugezero/unique_fd.hpp>

#include "hugezerod/event_loop.hpp"
#include "hugezerod/listeners.hpp"
#include "hugezerod/logging.hpp"

namespace hugezerod {

class metrics_endpoint {
public:
    /// Serves @p listener (none: nothing to serve) on @p loop; @p body makes the metrics text.
    metrics_endpoint(event_loop& loop, listening_socket listener, std::function<std::string()> body, const server_hooks& hooks)
        : loop_(loop), listener_(std::move(listener)), body_(std::move(body)), hooks_(hooks)
    {
        if (listener_.fd)
            loop_.watch(listener_.fd.get(), "the metrics endpoint", [this](std::uint32_t) { accept_scrapers(); });
    }
    metrics_endpoint(const metrics_endpoint&) = delete;
    metrics_endpoint& operator=(const metrics_endpoint&) = delete;
    ~metrics_endpoint()
    {
        for (auto& [fd, s] : scrapers_)
            loop_.forget(fd);
        if (listener_.fd)
            loop_.forget(listener_.fd.get());
    }

    /// Once a tick: closes the scrapers that have been silent too long.
    void tick(std::chrono::steady_clock::time_point now)
    {
        for (auto it = scrapers_.begin(); it != scrapers_.end();)
            if (it->second.until < now) {
                loop_.forget(it->first);
                it = scrapers_.erase(it);
            } else {
                ++it;
            }
    }

private:
    struct scraper {
        hugezero::unique_fd socket;
        std::string request;
        std::chrono::steady_clock::time_point until; // closed then if still silent
    };

    void accept_scrapers()
    {
        for (;;) {
            hugezero::unique_fd s(::accept4(listener_.fd.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
            if (!s)
                return;
            if (scrapers_.size() >= 16)
                continue; // closed: a scraper at a time is the norm
            const int fd = s.get();
            loop_.watch(fd, "a metrics scraper", [this, fd](std::uint32_t) { on_scraper(fd); });
            scrapers_.emplace(fd, scraper{std::move(s), {}, std::chrono::steady_clock::now() + std::chrono::seconds(5)});
        }
    }

    void on_scraper(int fd)
    {
        const auto it = scrapers_.find(fd);
        if (it == scrapers_.end())
            return;
        char buffer[2048];
        const ssize_t n = ::recv(fd, buffer, sizeof buffer, MSG_DONTWAIT);
        if (n < 0 && errno == EAGAIN)
            return;
        std::string& request = it->second.request;
        if (n > 0)
            request.append(buffer, static_cast<std::size_t>(n));
        if (n > 0 && request.find("\r\n\r\n") == std::string::npos && request.find("\n\n") == std::string::npos
            && request.size() < 8192)
            return; // the rest of the headers is on its way
        if (n > 0)
            respond(fd, request);
        loop_.forget(fd);
        scrapers_.erase(it);
    }

    void respond(int fd, const std::string& request)
    {
        const bool metrics = request.rfind("GET /metrics ", 0) == 0 || request.rfind("GET / ", 0) == 0;
        const std::string body = metrics ? body_() : "not found: GET /metrics\n";
        const std::string all = std::string(metrics ? "HTTP/1.0 200 OK" : "HTTP/1.0 404 Not Found")
                              + "\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: "
                              + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
        // One write, never blocking the loop: a send buffer that takes it all.
        const int room = static_cast<int>(std::min<std::size_t>(all.size() * 2, 4 << 20));
        (void)::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &room, sizeof room);
        const ssize_t sent = ::send(fd, all.data(), all.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
        if (sent != static_cast<ssize_t>(all.size()))
            hooks_.log(level::warning, "a metrics scrape got " + std::to_string(sent) + " of " + std::to_string(all.size()) + " bytes");
    }

    event_loop& loop_;
    listening_socket listener_; // its socket file goes with it
    std::function<std::string()> body_;
    const server_hooks& hooks_;
    std::map<int, scraper> scrapers_; // by socket fd
};

} // namespace hugezerod

#endif
