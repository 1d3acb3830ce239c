// hugezerod's server: one event loop (epoll) that owns the connections, the leases they hold and
// the metrics endpoint; the pool (and the pre-zeroing service where the kernel has it) refills
// on its own threads; cold acquires and recycles run on a job_runner. docs/daemon.md, "Design".
//
// A lease follows its connection: when the connection closes (the client exited, or exec'd a
// VMM that held the connection and has now exited) its leases go back to the pool, which
// recycles each once nothing else refers to its file (recycle_status::deferred until then).
#ifndef HUGEZERO_EXAMPLES_HUGEZEROD_SERVER_HPP
#define HUGEZERO_EXAMPLES_HUGEZEROD_SERVER_HPP

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>

#include <hugezero/pool.hpp>
#include <hugezero/service.hpp>
#include <hugezero/version.hpp>

#include "config.hpp"
#include "jobs.hpp"
#include "metrics.hpp"
#include "peer.hpp"
#include "protocol.hpp"
#include "sockets.hpp"
#include "transport.hpp"

namespace hugezerod {

/// Log levels (syslog's, as journald reads them from a `<N>` prefix).
enum class level { error = 3, warning = 4, notice = 5, info = 6 };

/// Where the server's messages and systemd notifications go (main.cpp: stderr, sd_notify).
struct server_hooks {
    std::function<void(level, const std::string&)> log = [](level, const std::string&) {};
    std::function<void(const std::string&)> notify = [](const std::string&) {};
    std::function<void(config&)> overrides = [](config&) {}; ///< The command line's, applied to a reloaded file too.
};

class server {
public:
    /// Starts the pool (and the pre-zeroing service) of @p c on @p m, serving @p listener.
    /// @throws what the pool's constructor throws (a bad cgroup or directory), socket_error.
    server(config c, hugezero::machine m, hugezero_tools::owned_fd listener, server_hooks hooks)
        : config_(std::move(c)), machine_(std::move(m)), hooks_(std::move(hooks)), listener_(std::move(listener)), jobs_(2)
    {
        if (!config_.metrics.empty())
            metrics_listener_ = listen_metrics(config_.metrics);
        pool_ = std::make_unique<hugezero::pool>(machine_, config_.pool);
        pool_->start();
        start_prezero();
        epoll_.reset(::epoll_create1(EPOLL_CLOEXEC));
        timer_.reset(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
        if (!epoll_ || !timer_)
            throw socket_error("epoll or timerfd: " + errno_text(errno));
        const itimerspec every{{0, 250'000'000}, {0, 1'000'000}};
        (void)::timerfd_settime(timer_.get(), 0, &every, nullptr);
        watch(listener_.get(), token_listener);
        if (metrics_listener_.fd)
            watch(metrics_listener_.fd.get(), token_metrics);
        watch(jobs_.fd(), token_jobs);
        watch(timer_.get(), token_timer);
    }
    server(const server&) = delete;
    server& operator=(const server&) = delete;
    ~server() { shut_down(); }

    /// Serves until SIGTERM or SIGINT comes on @p signals (a signalfd; SIGHUP reloads).
    void run(int signals)
    {
        watch(signals, token_signals);
        signals_ = signals;
        hooks_.log(level::info, "serving " + std::string(protocol::version) + " with " + std::to_string(config_.reservoirs.size())
                                    + " reservoirs" + (prezero_ ? " and the kernel's pre-zeroing" : ""));
        tick();
        while (!stopping_) {
            epoll_event events[64];
            const int n = ::epoll_wait(epoll_.get(), events, 64, -1);
            if (n < 0 && errno != EINTR)
                throw socket_error("epoll_wait: " + errno_text(errno));
            for (int i = 0; i < n; ++i)
                dispatch(events[i]);
        }
        hooks_.notify("STOPPING=1\nSTATUS=stopping: leases out stay valid in their holders");
        hooks_.log(level::info, "stopping: " + std::to_string(counters_.leases_held) + " leases out stay valid in their holders");
        shut_down();
    }

private:
    static constexpr std::uint64_t token_listener = 1, token_metrics = 2, token_signals = 3, token_jobs = 4, token_timer = 5;
    static constexpr std::uint64_t first_connection = 16;
    static constexpr std::uint64_t http_bit = std::uint64_t{1} << 62;
    static constexpr std::uint64_t linger_bit = std::uint64_t{1} << 61;

    struct connection {
        hugezero_tools::owned_fd socket;
        hugezerod::peer peer;
        std::map<std::uint64_t, std::shared_ptr<hugezero::lease>> leases;
        std::map<std::uint64_t, std::shared_ptr<std::stop_source>> pending; // cold acquires in flight
        bool hold_only = false; // said hold: it keeps its leases, every later request is refused
    };
    struct lingering {
        hugezero_tools::owned_fd socket;
        std::chrono::steady_clock::time_point until;
    };
    struct http_connection {
        hugezero_tools::owned_fd socket;
        std::string request;
        std::chrono::steady_clock::time_point until; // closed then if still silent
    };

    void watch(int fd, std::uint64_t token)
    {
        epoll_event e{};
        e.events = EPOLLIN;
        e.data.u64 = token;
        if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &e) != 0)
            throw socket_error("epoll_ctl: " + errno_text(errno));
    }

    void start_prezero()
    {
        if (!config_.prezero)
            return;
        for (const auto& h : machine_.topology().hstates())
            if (machine_.supports_zeroing(h)) {
                prezero_ = std::make_unique<hugezero::prezero_service>(machine_);
                prezero_->start();
                return;
            }
    }

    void dispatch(const epoll_event& e)
    {
        const std::uint64_t token = e.data.u64;
        if (token == token_listener)
            accept_clients();
        else if (token == token_metrics)
            accept_scrapers();
        else if (token == token_signals)
            on_signal();
        else if (token == token_jobs)
            jobs_.run_finished();
        else if (token == token_timer)
            tick();
        else if ((token & http_bit) != 0)
            on_scraper(token);
        else if ((token & linger_bit) != 0)
            on_lingering(token);
        else
            on_client(token, e.events);
    }

    // --- clients --------------------------------------------------------------------------

    void accept_clients()
    {
        for (;;) {
            hugezero_tools::owned_fd s(::accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
            if (!s) {
                if (errno == EMFILE || errno == ENFILE) { // no fd to take it with: look again at the next tick
                    if (!std::exchange(out_of_fds_, true)) // once per shortage
                        hooks_.log(level::warning, "cannot accept connections for now: " + errno_text(errno));
                    (void)::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, listener_.get(), nullptr);
                    accept_paused_ = true;
                }
                return;
            }
            out_of_fds_ = false;
            hugezerod::peer p = peer_of(s.get());
            std::string refusal;
            if (!allowed(config_, p))
                refusal = "uid " + std::to_string(p.uid) + " is not allowed by " + config_.file + " (allow_users, allow_groups)";
            else if (clients_.size() >= config_.max_clients)
                refusal = "the daemon serves " + std::to_string(config_.max_clients) + " clients already (max_clients)";
            if (!refusal.empty()) {
                ++counters_.connections_refused;
                hooks_.log(level::notice, "refused " + p.text() + ": " + refusal);
                (void)send_packet(s.get(), protocol::format_error(refusal.find("uid") == 0 ? EACCES : EBUSY, refusal), -1, MSG_DONTWAIT);
                linger(std::move(s));
                continue;
            }
            const std::uint64_t id = next_connection_++;
            watch(s.get(), id);
            ++counters_.connections;
            clients_.emplace(id, connection{std::move(s), std::move(p), {}, {}});
        }
    }

    void on_client(std::uint64_t id, std::uint32_t events)
    {
        for (int i = 0; i < 16; ++i) { // then the others' turn
            const auto it = clients_.find(id);
            if (it == clients_.end())
                return;
            packet in;
            const int error = receive_packet(it->second.socket.get(), protocol::max_request, in, MSG_DONTWAIT, false);
            if (error == EAGAIN)
                break;
            if (error != 0 || in.end)
                return close_client(id);
            if (!handle(id, it->second, in)) {
                if (std::exchange(lingering_reply_, false))
                    linger(std::move(it->second.socket)); // before close_client() closes it
                return close_client(id);
            }
        }
        if ((events & (EPOLLHUP | EPOLLERR)) != 0 && (events & EPOLLIN) == 0)
            close_client(id);
    }

    // Answers one packet; false when the connection must close (a malformed request).
    bool handle(std::uint64_t id, connection& c, const packet& in)
    {
        const auto refuse = [&](int code, const std::string& why) {
            ++counters_.bad_requests;
            hooks_.log(level::notice, c.peer.text() + ": " + why + "; connection closed");
            (void)send_packet(c.socket.get(), protocol::format_error(code, why), -1, MSG_DONTWAIT);
            lingering_reply_ = true;
            return false;
        };
        if (!in.fds.empty() || in.fds_truncated)
            return refuse(EBADMSG, "the daemon takes no fds, and some came");
        if (in.truncated)
            return refuse(EMSGSIZE, "a request is at most " + std::to_string(protocol::max_request) + " bytes");
        auto parsed = protocol::parse_request(in.text);
        if (const auto* e = std::get_if<protocol::parse_error>(&parsed))
            return refuse(e->code, e->message);
        auto& r = std::get<protocol::request>(parsed);
        ++counters_.requests[std::string(protocol::verb_of(r))]; // refused on a held connection or not
        if (c.hold_only)
            return refuse_on_held(id, c, r), true;
        static_assert(std::variant_size_v<protocol::request> == 4, "a new verb needs its case here");
        if (auto* a = std::get_if<protocol::acquire_request>(&r)) {
            acquire(id, c, std::move(*a));
        } else if (const auto* g = std::get_if<protocol::release_request>(&r)) {
            release(id, c, g->lease);
        } else if (std::holds_alternative<protocol::status_request>(r)) {
            reply(id, status_text());
        } else if (std::holds_alternative<protocol::hold_request>(r)) {
            c.hold_only = true;
            reply(id, protocol::format_held(c.leases.size()));
        }
        return true;
    }

    // A well-formed request on a connection that said hold: refused, and the connection stays
    // (so do its leases).
    void refuse_on_held(std::uint64_t id, const connection& c, const protocol::request& r)
    {
        ++counters_.held_requests_refused;
        if (std::holds_alternative<protocol::acquire_request>(r))
            ++counters_.acquires_refused;
        const std::size_t n = c.leases.size();
        (void)reply(id, protocol::format_error(EPERM, "this connection said hold: it keeps its " + std::to_string(n)
                                                          + (n == 1 ? " lease" : " leases") + " until it closes, and may ask nothing more"));
    }

    // Sends @p text (and @p fd) to client @p id; a client that cannot take it is closed.
    bool reply(std::uint64_t id, const std::string& text, int fd = -1)
    {
        const auto it = clients_.find(id);
        if (it == clients_.end())
            return false;
        if (const int error = send_packet(it->second.socket.get(), text, fd, MSG_DONTWAIT); error != 0) {
            hooks_.log(level::notice, it->second.peer.text() + ": cannot reply (" + errno_text(error) + "); connection closed");
            close_client(id);
            return false;
        }
        return true;
    }

    void refuse_acquire(std::uint64_t id, int code, const std::string& why)
    {
        ++counters_.acquires_refused;
        (void)reply(id, protocol::format_error(code, why));
    }

    void acquire(std::uint64_t id, connection& c, protocol::acquire_request r)
    {
        if (c.leases.size() + c.pending.size() >= config_.max_leases_per_client)
            return refuse_acquire(id, EBUSY, "this connection holds " + std::to_string(config_.max_leases_per_client)
                                                 + " leases already (max_leases_per_client)");
        // Warm first, here: a hand-over of microseconds. Only a lease that needs cold pages
        // (allocated, and zeroed, on the spot) goes to a job thread.
        auto warm = try_acquire(r, hugezero::acquire_options{0, {}, r.name});
        const bool cold_allowed = !r.max_cold_pages || *r.max_cold_pages > 0;
        if (warm || warm.error.value() != EAGAIN || !cold_allowed)
            return finish_acquire(id, r, std::move(warm));
        auto stop = std::make_shared<std::stop_source>();
        const std::uint64_t job = next_job_++;
        c.pending.emplace(job, stop);
        jobs_.post([this, id, job, r, stop](std::stop_token runner) -> std::function<void()> {
            const std::stop_callback relay(runner, [&] { stop->request_stop(); });
            auto got = std::make_shared<hugezero::acquire_result>(try_acquire(r, hugezero::acquire_options{r.max_cold_pages, stop->get_token(), r.name}));
            return [this, id, job, r, got] {
                if (const auto it = clients_.find(id); it != clients_.end())
                    it->second.pending.erase(job);
                finish_acquire(id, r, std::move(*got));
            };
        });
    }

    hugezero::acquire_result try_acquire(const protocol::acquire_request& r, const hugezero::acquire_options& o)
    {
        try {
            return pool_->acquire(hugezero::hstate{r.node, r.page}, r.bytes, o);
        } catch (const std::exception& e) {
            hugezero::acquire_result failed;
            failed.error = std::error_code(EINVAL, std::generic_category());
            failed.message = e.what();
            return failed;
        }
    }

    void finish_acquire(std::uint64_t id, const protocol::acquire_request& r, hugezero::acquire_result got)
    {
        if (!got) {
            const bool need_cold = got.error.value() == EAGAIN && r.max_cold_pages && *r.max_cold_pages == 0;
            return refuse_acquire(id, got.error.value(), got.message + (need_cold ? " (the request allows no cold page)" : ""));
        }
        auto l = std::make_shared<hugezero::lease>(std::move(got.lease));
        const auto it = clients_.find(id);
        if (it == clients_.end()) {
            ++counters_.leases_undelivered;
            return take_back(std::move(l), "its client left before it was handed over");
        }
        const std::uint64_t lease_id = next_lease_++;
        std::ostringstream text;
        text << protocol::version << " lease id=" << lease_id << " node=" << l->node().value() << " page_kib=" << l->page().kib()
             << " pages=" << l->pages() << " cold=" << l->cold_pages();
        if (!l->path().empty())
            text << " path=" << l->path().string();
        if (!reply(id, text.str(), l->fd())) {
            ++counters_.leases_undelivered;
            return take_back(std::move(l), "its client could not take it");
        }
        it->second.leases.emplace(lease_id, std::move(l));
        ++counters_.leases_granted;
        ++counters_.leases_held;
    }

    void release(std::uint64_t id, connection& c, std::uint64_t lease_id)
    {
        const auto it = c.leases.find(lease_id);
        if (it == c.leases.end())
            return (void)reply(id, protocol::format_error(ENOENT, "this connection holds no lease " + std::to_string(lease_id)));
        auto l = std::move(it->second);
        c.leases.erase(it);
        --counters_.leases_held;
        ++counters_.leases_taken_back;
        take_back(std::move(l), "", [this, id, lease_id](const std::string& status) {
            (void)reply(id, std::string(protocol::version) + " released lease=" + std::to_string(lease_id) + " status=" + status);
        });
    }

    // Gives @p l back to the pool on a job thread; then @p done(status) on the loop.
    void take_back(std::shared_ptr<hugezero::lease> l, const std::string& why,
                   std::function<void(const std::string&)> done = nullptr)
    {
        jobs_.post([this, l = std::move(l), why, done = std::move(done)](std::stop_token) -> std::function<void()> {
            hugezero::recycle_result r;
            try {
                r = pool_->recycle(std::move(*l));
            } catch (const std::exception& e) { // the lease closes: its pages go back to the kernel
                r.status = hugezero::recycle_status::unusable;
                r.message = e.what();
            }
            std::ostringstream status;
            status << r.status;
            std::string word = status.str();
            for (char& ch : word)
                ch = ch == ' ' ? '_' : ch;
            const bool recycled = r.status == hugezero::recycle_status::recycled;
            return [this, word, message = r.message, recycled, why, done] {
                ++counters_.recycles[word];
                if (!recycled) // a recycle is counted, not logged
                    hooks_.log(level::info, "a lease given back" + (why.empty() ? "" : " (" + why + ")") + ": " + word + ": " + message);
                if (done)
                    done(word);
            };
        });
    }

    // A connection closed right after an error reply would lose the reply if the peer's next
    // packet were already queued (the peer then reads ECONNRESET, not the reply): the daemon
    // stops writing, discards what comes, and closes at the peer's end or after 2 s.
    void linger(hugezero_tools::owned_fd s)
    {
        if (!s || lingering_.size() >= 64)
            return;
        (void)::shutdown(s.get(), SHUT_WR);
        const std::uint64_t token = linger_bit | next_connection_++;
        epoll_event e{};
        e.events = EPOLLIN;
        e.data.u64 = token;
        (void)::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, s.get(), nullptr);
        if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, s.get(), &e) != 0)
            return;
        lingering_.emplace(token, lingering{std::move(s), std::chrono::steady_clock::now() + std::chrono::seconds(2)});
    }

    void on_lingering(std::uint64_t token)
    {
        const auto it = lingering_.find(token);
        if (it == lingering_.end())
            return;
        char discard[2048];
        ssize_t n = 0;
        for (int i = 0; i < 16 && (n = ::recv(it->second.socket.get(), discard, sizeof discard, MSG_DONTWAIT)) > 0; ++i) {
        } // then the others' turn; its 2 s end at a tick
        if (n == 0 || (n < 0 && errno != EAGAIN))
            lingering_.erase(it); // closes it
    }

    void close_client(std::uint64_t id)
    {
        const auto it = clients_.find(id);
        if (it == clients_.end())
            return;
        if (it->second.socket)
            (void)::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, it->second.socket.get(), nullptr);
        for (auto& [job, stop] : it->second.pending)
            stop->request_stop(); // its lease, if it comes, is taken back (finish_acquire)
        for (auto& [lease_id, l] : it->second.leases) {
            --counters_.leases_held;
            ++counters_.leases_taken_back;
            take_back(std::move(l), "its connection closed");
        }
        clients_.erase(it);
    }

    // --- status, readiness, reload ----------------------------------------------------------

    [[nodiscard]] std::string status_text() const
    {
        std::ostringstream out;
        out << protocol::version << " status version=" << hugezero::version_string << " clients=" << clients_.size()
            << " leases=" << counters_.leases_held << " refill_rate=" << config_.pool.refill_bytes_per_second
            << " jobs=" << jobs_.busy() << " fds=" << open_fds() << " prezero=" << (prezero_ ? "on" : "off")
            << " ready=" << (ready_sent_ ? 1 : 0) << " filled=" << (all_settled() ? 1 : 0)
            << " uptime_ms=" << std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started_).count();
        for (const auto& s : pool_->statistics())
            out << "\nreservoir node=" << s.which.node.value() << " page_kib=" << s.which.size.kib()
                << " state=" << detail_metrics::state_word(s.state) << " target_pages=" << s.target_pages
                << " ready_pages=" << s.ready_pages << " filling_pages=" << s.filling_pages << " floor_pages=" << s.floor_pages
                << " leases_out=" << s.leases_out << " leases_served=" << s.leases_served
                << " warm_pages_served=" << s.warm_pages_served << " cold_pages_served=" << s.cold_pages_served
                << " recycled_leases=" << s.recycled_leases << " waiting_pages=" << s.waiting_pages
                << " scrubbing_pages=" << s.scrubbing_pages << " errors=" << s.errors
                << " last_error=" << (s.last_error ? protocol::errno_name(s.last_error.value()) : "none");
        return out.str();
    }

    // The daemon's open fds (a leak shows here and in the metrics).
    static std::size_t open_fds()
    {
        std::error_code e;
        std::size_t n = 0;
        for (auto it = std::filesystem::directory_iterator("/proc/self/fd", e); !e && it != std::filesystem::directory_iterator();
             it.increment(e))
            ++n;
        return n > 0 ? n - 1 : 0; // less the iterator's own
    }

    // Whether every reservoir is where its refill can take it: at target, or held.
    [[nodiscard]] static bool settled(const hugezero::reservoir_statistics& s)
    {
        using st = hugezero::reservoir_state;
        return s.ready_pages >= s.target_pages || s.state == st::held_by_floor || s.state == st::out_of_pages || s.state == st::failing;
    }

    // Whether every reservoir is settled now (see settled()).
    [[nodiscard]] bool all_settled() const
    {
        const auto all = pool_->statistics();
        return std::all_of(all.begin(), all.end(), [](const auto& s) { return settled(s); });
    }

    void tick()
    {
        std::uint64_t expirations = 0;
        (void)::read(timer_.get(), &expirations, sizeof expirations);
        const auto now = std::chrono::steady_clock::now();
        std::erase_if(lingering_, [&](const auto& entry) { return entry.second.until < now; });
        std::erase_if(scrapers_, [&](const auto& entry) { return entry.second.until < now; }); // idle scrapers
        if (std::exchange(accept_paused_, false))
            watch(listener_.get(), token_listener);
        bool all_settled = true;
        std::string levels;
        for (const auto& s : pool_->statistics()) {
            if (s.target_pages == 0 && s.leases_served == 0)
                continue;
            all_settled = all_settled && settled(s);
            std::ostringstream part;
            part << (levels.empty() ? "" : "; ") << to_string(s.which) << " " << s.ready_pages << "/" << s.target_pages << " pages, "
                 << s.state;
            levels += part.str();
        }
        const std::string status = "STATUS=" + (levels.empty() ? std::string("no reservoirs") : levels) + "; "
                                 + std::to_string(clients_.size()) + " clients, " + std::to_string(counters_.leases_held) + " leases";
        if (!ready_sent_ && (config_.ready == ready_when::listening || all_settled)) {
            ready_sent_ = true;
            hooks_.notify("READY=1\n" + status);
            hooks_.log(level::info, "ready: " + status.substr(7));
            last_status_ = status;
        } else if (status != last_status_) {
            hooks_.notify(status);
            last_status_ = status;
        }
    }

    void on_signal()
    {
        signalfd_siginfo info{};
        while (::read(signals_, &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
            if (info.ssi_signo == SIGHUP)
                reload();
            else
                stopping_ = true;
        }
    }

    void reload();
    void check_reloadable(const config& fresh) const;
    void keep_restart_only(config& fresh) const;

    // --- metrics ------------------------------------------------------------------------------

    void accept_scrapers()
    {
        for (;;) {
            hugezero_tools::owned_fd s(::accept4(metrics_listener_.fd.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
            if (!s)
                return;
            if (scrapers_.size() >= 16)
                continue; // closed: a scraper at a time is the norm
            const std::uint64_t token = http_bit | next_connection_++;
            watch(s.get(), token);
            scrapers_.emplace(token, http_connection{std::move(s), {}, std::chrono::steady_clock::now() + std::chrono::seconds(5)});
        }
    }

    void on_scraper(std::uint64_t token)
    {
        const auto it = scrapers_.find(token);
        if (it == scrapers_.end())
            return;
        char buffer[2048];
        const ssize_t n = ::recv(it->second.socket.get(), buffer, sizeof buffer, MSG_DONTWAIT);
        if (n < 0 && errno == EAGAIN)
            return;
        if (n > 0)
            it->second.request.append(buffer, static_cast<std::size_t>(n));
        const std::string& request = it->second.request;
        if (n > 0 && request.find("\r\n\r\n") == std::string::npos && request.find("\n\n") == std::string::npos
            && request.size() < 8192)
            return; // the rest of the headers is on its way
        if (n > 0) {
            const bool metrics = request.rfind("GET /metrics ", 0) == 0 || request.rfind("GET / ", 0) == 0;
            const std::string body = metrics ? metrics_text(pool_->statistics(), counters_now()) : "not found: GET /metrics\n";
            const std::string head = std::string(metrics ? "HTTP/1.0 200 OK" : "HTTP/1.0 404 Not Found")
                                   + "\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: "
                                   + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n";
            const std::string all = head + body;
            // One write, never blocking the loop: a send buffer that takes it all.
            const int room = static_cast<int>(std::min<std::size_t>(all.size() * 2, 4 << 20));
            (void)::setsockopt(it->second.socket.get(), SOL_SOCKET, SO_SNDBUF, &room, sizeof room);
            const ssize_t sent = ::send(it->second.socket.get(), all.data(), all.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
            if (sent != static_cast<ssize_t>(all.size()))
                hooks_.log(level::warning, "a metrics scrape got " + std::to_string(sent) + " of " + std::to_string(all.size()) + " bytes");
        }
        (void)::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, it->second.socket.get(), nullptr);
        scrapers_.erase(it);
    }

    [[nodiscard]] daemon_counters counters_now() const
    {
        daemon_counters d = counters_;
        d.clients = clients_.size();
        d.open_fds = open_fds();
        return d;
    }

    void shut_down()
    {
        if (!pool_)
            return;
        jobs_.stop(); // cancels cold acquires; leases in queued recycles close (their pages stay with their holders)
        clients_.clear();
        scrapers_.clear();
        lingering_.clear();
        if (prezero_)
            prezero_->stop();
        pool_->stop();
        pool_.reset();
        prezero_.reset();
    }

    config config_;
    hugezero::machine machine_;
    server_hooks hooks_;
    hugezero_tools::owned_fd listener_;
    listening_socket metrics_listener_; // its socket file goes with it
    hugezero_tools::owned_fd epoll_;
    hugezero_tools::owned_fd timer_;
    int signals_ = -1;
    std::unique_ptr<hugezero::pool> pool_;
    std::unique_ptr<hugezero::prezero_service> prezero_;
    std::map<std::uint64_t, connection> clients_;
    std::map<std::uint64_t, http_connection> scrapers_;
    std::map<std::uint64_t, lingering> lingering_;
    bool lingering_reply_ = false; // handle() refused the packet: linger before closing
    bool accept_paused_ = false;   // out of fds: the listener is watched again at the next tick
    bool out_of_fds_ = false;      // said so already
    daemon_counters counters_;
    std::uint64_t next_connection_ = first_connection;
    std::uint64_t next_lease_ = 1;
    std::uint64_t next_job_ = 1;
    bool stopping_ = false;
    bool ready_sent_ = false;
    std::string last_status_;
    std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
    job_runner jobs_; // last: its threads, which use the pool, stop first
};

/// SIGHUP: reads the file again; applies targets, floors, the refill rate, who may connect and
/// the limits, without touching a lease. A file with errors, or one that changes what needs a
/// restart (the reservoirs' set, cgroups, directories, sockets), changes nothing.
inline void server::reload()
{
    if (config_.file == "(defaults)") {
        hooks_.log(level::warning, "reload: started without a configuration file, nothing to read again");
        return;
    }
    if (ready_sent_) // before the first READY=1, systemd is still waiting for the start
        hooks_.notify("RELOADING=1");
    try {
        config fresh = load_config(config_.file);
        hooks_.overrides(fresh);
        check_against(fresh, machine_);
        check_reloadable(fresh);
        for (const auto& r : fresh.reservoirs) {
            pool_->set_target(r.options.which, r.options.target_bytes);
            pool_->set_floor(r.options.which, r.options.floor_pages);
        }
        pool_->set_refill_rate(fresh.pool.refill_bytes_per_second);
        keep_restart_only(fresh);
        config_ = std::move(fresh);
        ++counters_.reloads;
        hooks_.log(level::info, "reloaded " + config_.file);
    } catch (const std::exception& e) {
        ++counters_.reloads_failed;
        hooks_.log(level::error, std::string("reload refused, the old configuration stays: ") + e.what());
    }
    if (ready_sent_)
        hooks_.notify("READY=1");
    last_status_.clear(); // say the status again
}

// Refuses a new configuration whose reservoirs differ in what only a restart can change.
inline void server::check_reloadable(const config& fresh) const
{
    if (fresh.reservoirs.size() != config_.reservoirs.size())
        throw config_error(fresh.file + ": adding or removing a [reservoir] needs a restart");
    for (std::size_t i = 0; i < fresh.reservoirs.size(); ++i) {
        const auto& a = fresh.reservoirs[i].options;
        const auto& b = config_.reservoirs[i].options;
        if (!(a.which == b.which) || a.cgroup != b.cgroup || a.directory != b.directory || a.chunk_bytes != b.chunk_bytes)
            throw config_error(fresh.file + ":" + std::to_string(fresh.reservoirs[i].line)
                               + ": [reservoir]: changing its node, page, chunk, cgroup or directory needs a restart");
    }
}

// Keeps, with a warning, the old values of what a reload cannot change in a running daemon.
inline void server::keep_restart_only(config& fresh) const
{
    std::string kept;
    const auto keep = [&](auto& now, const auto& old, const char* key) {
        if (now != old)
            kept += std::string(kept.empty() ? "" : ", ") + key;
        now = old;
    };
    keep(fresh.socket, config_.socket, "socket");
    keep(fresh.socket_mode, config_.socket_mode, "socket_mode");
    keep(fresh.socket_group, config_.socket_group, "socket_group");
    keep(fresh.metrics, config_.metrics, "metrics");
    keep(fresh.prezero, config_.prezero, "prezero");
    keep(fresh.ready, config_.ready, "ready");
    keep(fresh.pool.workers_per_node, config_.pool.workers_per_node, "workers_per_node");
    keep(fresh.pool.batch_bytes, config_.pool.batch_bytes, "batch");
    keep(fresh.pool.quiet_after_lease, config_.pool.quiet_after_lease, "quiet_after_lease");
    keep(fresh.pool.retry_period, config_.pool.retry_period, "retry_period");
    if (!kept.empty())
        hooks_.log(level::warning, "reload: " + kept + " keep their old values until a restart");
}

} // namespace hugezerod

#endif
