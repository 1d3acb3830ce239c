// hugezerod's server: it starts the pool (and the pre-zeroing service where the kernel has it)
// and wires the rooms to one event loop, each source with its handler: the protocol's sessions
// and their lease desk, the metrics endpoint, the signals (SIGHUP reloads, SIGTERM and SIGINT
// stop), the job threads' results, and a timer that keeps readiness and the time limits.
// docs/daemon.md, "Design"; docs/design.md, "The daemon".
#ifndef HUGEZERO_TOOLS_HUGEZEROD_SERVER_HPP
#define HUGEZERO_TOOLS_HUGEZEROD_SERVER_HPP

#include <chrono>
#include <csignal>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include <sys/signalfd.h>
#include <sys/timerfd.h>

#include <hugezero/pool.hpp>
#include <hugezero/service.hpp>

#include "hugezerod/config_file.hpp"
#include "hugezerod/event_loop.hpp"
#include "hugezerod/jobs.hpp"
#include "hugezerod/lease_desk.hpp"
#include "hugezerod/listeners.hpp"
#include "hugezerod/logging.hpp"
#include "hugezerod/metrics.hpp"
#include "hugezerod/metrics_endpoint.hpp"
#include "hugezerod/readiness.hpp"
#include "hugezerod/reload.hpp"
#include "hugezerod/sessions.hpp"
#include "protocol/requests.hpp"

namespace hugezerod {

class server {
public:
    /// Starts the pool (and the pre-zeroing service) of @p c on @p m, serving @p listener.
    /// @throws what the pool's constructor throws (a bad cgroup or directory), socket_error,
    /// loop_error.
    server(config c, hugezero::machine m, hugezero::unique_fd listener, server_hooks hooks)
        : config_(std::move(c)), machine_(std::move(m)), hooks_(std::move(hooks)), listener_(std::move(listener)),
          pool_(start_pool()), prezero_(start_prezero()), jobs_(2), readiness_(config_.ready, hooks_),
          desk_(*pool_, jobs_, config_, counters_, hooks_),
          sessions_(loop_, listener_.get(), config_, desk_, counters_, hooks_, [this] { return status_text(); }),
          metrics_(loop_, config_.metrics.empty() ? listening_socket() : listen_metrics(config_.metrics),
                   [this] { return metrics_text(pool_->statistics(), counters_now()); }, hooks_),
          timer_(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK))
    {
        if (!timer_)
            throw loop_error(std::string("timerfd_create: ") + std::strerror(errno));
        const itimerspec every{{0, 250'000'000}, {0, 1'000'000}};
        (void)::timerfd_settime(timer_.get(), 0, &every, nullptr);
        loop_.watch(timer_.get(), "the timer", [this](std::uint32_t) { tick(); });
        loop_.watch(jobs_.fd(), "the job results", [this](std::uint32_t) { jobs_.run_finished(); });
    }
    server(const server&) = delete;
    server& operator=(const server&) = delete;
    ~server() { shut_down(); }

    /// Serves until SIGTERM or SIGINT comes on @p signals (a signalfd; SIGHUP reloads).
    void run(int signals)
    {
        loop_.watch(signals, "the signals", [this, signals](std::uint32_t) { on_signals(signals); });
        hooks_.log(level::info, "serving " + std::string(protocol::version) + " with "
                                    + hugezero_tools::count_text(config_.reservoirs.size(), "reservoir")
                                    + (prezero_ ? " and the kernel's pre-zeroing" : ""));
        if (config_.reservoirs.empty())
            hooks_.log(level::warning, "no [reservoir] is configured: every lease is allocated and zeroed when asked for (cold), "
                                       "on the VM's start path; add a [reservoir] to the configuration (man hugezerod.conf)");
        tick();
        loop_.run([this] { return stopping_; });
        hooks_.notify("STOPPING=1\nSTATUS=stopping: leases out stay valid in their holders");
        hooks_.log(level::info, "stopping: " + hugezero_tools::count_text(counters_.leases_held, "lease")
                                    + (counters_.leases_held == 1 ? " out stays valid in its holder" : " out stay valid in their holders")
                                    + (counters_.leases_detached == 0 ? std::string()
                                                                      : ", " + std::to_string(counters_.leases_detached)
                                                                            + " detached leases too (the next daemon empties each once unused)"));
        shut_down();
    }

private:
    std::unique_ptr<hugezero::pool> start_pool()
    {
        auto p = std::make_unique<hugezero::pool>(machine_, config_.pool);
        p->start();
        return p;
    }

    std::unique_ptr<hugezero::prezero_service> start_prezero()
    {
        if (!config_.prezero)
            return nullptr;
        for (const auto& h : machine_.topology().hstates())
            if (machine_.supports_zeroing(h)) {
                auto s = std::make_unique<hugezero::prezero_service>(machine_);
                s->start();
                return s;
            }
        return nullptr;
    }

    void tick()
    {
        std::uint64_t expirations = 0;
        // Resets the timerfd; how many ticks were missed does not matter.
        [[maybe_unused]] const auto got = ::read(timer_.get(), &expirations, sizeof expirations);
        const auto now = std::chrono::steady_clock::now();
        sessions_.tick(now);
        metrics_.tick(now);
        readiness_.update(pool_->statistics(), sessions_.count(), counters_.leases_held);
    }

    void on_signals(int signals)
    {
        signalfd_siginfo info{};
        while (::read(signals, &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
            if (info.ssi_signo == SIGHUP)
                reload();
            else
                stopping_ = true;
        }
    }

    /// SIGHUP: reads the file again and applies plan_reload()'s plan without touching a lease;
    /// a file with errors, or one that needs a restart, changes nothing.
    void reload()
    {
        if (config_.file == "(defaults)") {
            hooks_.log(level::warning, "reload: started without a configuration file, nothing to read again");
            return;
        }
        readiness_.reloading();
        try {
            config fresh = load_config(config_.file);
            hooks_.overrides(fresh);
            check_against(fresh, machine_);
            reload_plan plan = plan_reload(config_, std::move(fresh));
            if (!plan.refusal.empty())
                throw config_error(plan.refusal);
            apply(plan);
        } catch (const std::exception& e) {
            ++counters_.reloads_failed;
            hooks_.log(level::error, std::string("reload refused, the old configuration stays: ") + e.what());
        }
        readiness_.reloaded();
    }

    void apply(reload_plan& plan)
    {
        for (const auto& r : plan.next.reservoirs) {
            pool_->set_target(r.options.which, r.options.target_bytes);
            pool_->set_floor(r.options.which, r.options.floor_pages);
        }
        pool_->set_refill_rate(plan.next.pool.refill_bytes_per_second);
        config_ = std::move(plan.next); // in place: the rooms keep their reference to it
        ++counters_.reloads;
        hooks_.log(level::info, "reloaded " + config_.file);
        if (!plan.kept.empty()) {
            std::string keys;
            for (const auto& k : plan.kept)
                keys += (keys.empty() ? "" : ", ") + k;
            hooks_.log(level::warning, "reload: " + keys + " keep their old values until a restart");
        }
    }

    [[nodiscard]] std::string status_text() const
    {
        daemon_status d;
        d.clients = sessions_.count();
        d.leases = counters_.leases_held;
        d.detached = counters_.leases_detached;
        d.refill_rate = config_.pool.refill_bytes_per_second;
        d.jobs = jobs_.busy();
        d.fds = open_fds();
        d.prezero = prezero_ != nullptr;
        d.ready = readiness_.ready();
        const auto reservoirs = pool_->statistics();
        d.filled = all_settled(reservoirs);
        d.uptime = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started_);
        return status_reply_text(d, reservoirs);
    }

    [[nodiscard]] daemon_counters counters_now() const
    {
        daemon_counters d = counters_;
        d.clients = sessions_.count();
        d.open_fds = open_fds();
        return d;
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

    void shut_down()
    {
        if (!pool_)
            return;
        jobs_.stop(); // cancels cold acquires; leases in queued recycles close (their pages stay with their holders)
        sessions_.close_all();
        (void)desk_.leave_detached();
        if (prezero_)
            prezero_->stop();
        pool_->stop();
    }

    config config_;
    hugezero::machine machine_;
    server_hooks hooks_;
    hugezero::unique_fd listener_;
    event_loop loop_;
    std::unique_ptr<hugezero::pool> pool_;
    std::unique_ptr<hugezero::prezero_service> prezero_;
    daemon_counters counters_;
    job_runner jobs_; // its threads use the pool: stopped (shut_down) before the pool goes
    readiness readiness_;
    lease_desk desk_;
    sessions sessions_;
    metrics_endpoint metrics_;
    hugezero::unique_fd timer_;
    bool stopping_ = false;
    std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
};

} // namespace hugezerod

#endif
