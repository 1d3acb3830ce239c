// hugezerod's event loop: one epoll instance, and one named handler per watched fd (the
// listener, each client, the metrics endpoint and each scraper, the signals, the job results,
// the timer). Handlers run on the loop's thread, one event at a time; a handler may watch and
// forget fds, its own included.
#ifndef HUGEZERO_TOOLS_HUGEZEROD_EVENT_LOOP_HPP
#define HUGEZERO_TOOLS_HUGEZEROD_EVENT_LOOP_HPP

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <utility>

#include <sys/epoll.h>

#include <hugezero/unique_fd.hpp>

namespace hugezerod {

/// The loop could not watch or wait: the message names the source.
class loop_error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

class event_loop {
public:
    /// Runs for each event on its fd, with the epoll events (EPOLLIN, EPOLLHUP, ...).
    using handler = std::function<void(std::uint32_t events)>;

    event_loop() : epoll_(::epoll_create1(EPOLL_CLOEXEC))
    {
        if (!epoll_)
            throw loop_error(std::string("epoll_create1: ") + std::strerror(errno));
    }

    /// Calls @p on_event whenever @p fd is readable (or hung up); @p name says what it is in
    /// errors. @throws loop_error if epoll refuses it.
    void watch(int fd, std::string name, handler on_event)
    {
        epoll_event e{};
        e.events = EPOLLIN;
        e.data.fd = fd;
        if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &e) != 0)
            throw loop_error("epoll_ctl ADD " + name + ": " + std::strerror(errno));
        sources_[fd] = {std::move(name), std::move(on_event)};
    }

    /// Stops watching @p fd (before it is closed: the number may come back for another).
    void forget(int fd)
    {
        if (sources_.erase(fd) != 0)
            (void)::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
    }

    /// Whether @p fd is watched.
    [[nodiscard]] bool watches(int fd) const { return sources_.count(fd) != 0; }

    /// Waits for events and runs their handlers until @p done() says so (asked after each batch).
    /// @throws loop_error if epoll_wait fails; what a handler throws.
    template <class Done>
    void run(Done done)
    {
        while (!done()) {
            epoll_event events[64];
            const int n = ::epoll_wait(epoll_.get(), events, 64, -1);
            if (n < 0 && errno != EINTR)
                throw loop_error(std::string("epoll_wait: ") + std::strerror(errno));
            for (int i = 0; i < n; ++i)
                dispatch(events[i]);
        }
    }

private:
    struct source {
        std::string name;
        handler on_event;
    };

    void dispatch(const epoll_event& e)
    {
        const auto it = sources_.find(e.data.fd);
        if (it == sources_.end())
            return; // forgotten by an earlier handler of this batch
        const handler on_event = it->second.on_event; // a copy: the handler may forget itself
        on_event(e.events);
    }

    hugezero::unique_fd epoll_;
    std::unordered_map<int, source> sources_;
};

} // namespace hugezerod

#endif
