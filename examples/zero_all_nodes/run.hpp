// How zero_all_nodes runs the pre-zeroing service until everything is zeroed, a signal comes, or
// an hstate keeps failing; with its progress display and the policy that decides when errors
// end the run.
#ifndef HUGEZERO_EXAMPLES_ZERO_ALL_NODES_RUN_HPP
#define HUGEZERO_EXAMPLES_ZERO_ALL_NODES_RUN_HPP

#include <chrono>
#include <cstdint>
#include <iomanip>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <poll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <hugezero/hugezero.hpp>

#include "report.hpp"

namespace zero_all_nodes {

using clock_type = std::chrono::steady_clock;

/// The SIGINT or SIGTERM pending on the (non-blocking) signalfd @p signals, taking it; 0 if none.
inline int take_signal(int signals)
{
    signalfd_siginfo info{};
    return ::read(signals, &info, sizeof info) == sizeof info ? static_cast<int>(info.ssi_signo) : 0;
}

/// When errors end a run. The service retries an hstate after an error (after its back-off),
/// so one error is no reason to stop: an hstate fails the run only when it has errors, still
/// has pages to zero, and has zeroed nothing for @p patience since its first error. (An error
/// of the watcher is counted in every hstate, also those already done.)
class error_policy {
public:
    explicit error_policy(std::chrono::nanoseconds patience) : patience_(patience) {}

    /// The hstate that keeps failing at @p now, if any.
    std::optional<hugezero::hstate_statistics> failing(const std::vector<hugezero::hstate_statistics>& now,
                                                        clock_type::time_point at)
    {
        for (const auto& s : now) {
            seen& last = seen_[s.which];
            if (s.pages_zeroed != last.pages) // progress: whatever failed before, it works now
                last.failing_since.reset();
            else if (s.errors != last.errors && !last.failing_since)
                last.failing_since = at;
            last.pages = s.pages_zeroed;
            last.errors = s.errors;
            if (last.failing_since && s.zeroable > 0 && at - *last.failing_since >= patience_)
                return s;
        }
        return std::nullopt;
    }

private:
    struct seen {
        std::uint64_t pages = 0;
        std::uint64_t errors = 0;
        std::optional<clock_type::time_point> failing_since;
    };
    std::chrono::nanoseconds patience_;
    std::map<hugezero::hstate, seen> seen_;
};

/// Progress on stderr: one line per node, redrawn in place.
class progress_display {
public:
    explicit progress_display(bool enabled) : enabled_(enabled) {}

    void draw(const hugezero::prezero_service& service, double seconds, bool final)
    {
        if (!enabled_)
            return;
        struct node_progress {
            std::uint64_t pages_done = 0;
            std::uint64_t pages_left = 0;
            std::uint64_t bytes_done = 0;
            std::uint64_t bytes_left = 0;
        };
        std::map<hugezero::node_id, node_progress> nodes;
        for (const auto& s : service.statistics()) {
            auto& n = nodes[s.which.node];
            n.pages_done += s.pages_zeroed;
            n.pages_left += s.zeroable;
            n.bytes_done += s.bytes_zeroed();
            n.bytes_left += s.zeroable * s.which.size.bytes();
        }
        std::ostringstream out;
        if (lines_ > 0)
            out << "\x1b[" << lines_ << 'A';
        for (const auto& [node, n] : nodes) {
            const double gib = 1024.0 * 1024.0 * 1024.0;
            const double rate = seconds > 0 ? static_cast<double>(n.bytes_done) / seconds : 0.0;
            out << "\x1b[2K" << node << ": " << n.pages_done << " pages (" << std::fixed << std::setprecision(2)
                << static_cast<double>(n.bytes_done) / gib << " GiB) zeroed, " << rate / 1e9 << " GB/s";
            if (!final) {
                out << ", " << n.pages_left << " pages (" << static_cast<double>(n.bytes_left) / gib << " GiB) to go, ETA ";
                if (rate > 0)
                    out << static_cast<double>(n.bytes_left) / rate << " s";
                else
                    out << '-';
            }
            out << '\n';
        }
        lines_ = nodes.size();
        std::cerr << out.str() << std::flush;
    }

private:
    bool enabled_;
    std::size_t lines_ = 0;
};

/// How a run goes.
struct run_settings {
    unsigned workers_per_node = 0;                                  // 0: one per CPU of the node
    bool show_progress = false;
    std::chrono::nanoseconds error_backoff = std::chrono::milliseconds(200); // the service's retry time
    std::chrono::nanoseconds patience = std::chrono::seconds(1);    // see error_policy
};

/// Zeroes every zeroable page of @p hstates (each must support zeroing) until done, a signal
/// arrives on @p signals (the run is then cancelled), an hstate keeps failing, or the service
/// cannot start (status error, exit 1).
/// @throws what reading the counters before starting throws.
inline run_report run(const hugezero::machine& m, const std::vector<hugezero::hstate>& hstates, const run_settings& settings,
                      int signals)
{
    run_report report;
    for (const auto& h : hstates)
        report.hstates.push_back({h, m.zeroable(h), 0, 0, 0, {}});
    hugezero::service_options options;
    options.hstates = hstates;
    options.workers_per_node = settings.workers_per_node;
    options.error_backoff = settings.error_backoff;
    hugezero::prezero_service service(m, options);
    const auto start = clock_type::now();
    try {
        service.start();
    } catch (const std::system_error& e) { // an I/O error (or the cancellation signal taken), not a usage error
        report.status = "error";
        report.exit_code = 1;
        report.error = std::string("cannot start the pre-zeroing workers: ") + e.what();
        for (auto& h : report.hstates)
            h.zeroable_after = h.zeroable_before;
        return report;
    }
    for (const auto& f : service.setting_failures())
        std::cerr << "zero_all_nodes: warning: " << f << '\n';
    progress_display progress(settings.show_progress);
    error_policy errors(settings.patience);
    progress.draw(service, 0.0, false);
    auto last_draw = clock_type::now();
    for (;;) {
        pollfd p{signals, POLLIN, 0};
        if (::poll(&p, 1, 50) > 0)
            if (const int signo = take_signal(signals); signo != 0) {
                service.stop(); // interrupts every write in flight
                report.status = "cancelled";
                report.exit_code = 128 + signo;
                break;
            }
        if (service.wait_drained(std::chrono::nanoseconds::zero()))
            break;
        if (const auto failing = errors.failing(service.statistics(), clock_type::now())) {
            report.status = "error";
            report.exit_code = 1;
            report.error = hugezero::to_string(failing->which) + ": " + failing->last_error.message();
            break;
        }
        if (clock_type::now() - last_draw > std::chrono::milliseconds(100)) {
            progress.draw(service, std::chrono::duration<double>(clock_type::now() - start).count(), false);
            last_draw = clock_type::now();
        }
    }
    service.stop();
    report.seconds = std::chrono::duration<double>(clock_type::now() - start).count();
    progress.draw(service, report.seconds, true);
    for (auto& h : report.hstates) {
        const auto s = service.statistics(h.which);
        h.zeroed = s.pages_zeroed;
        h.errors = s.errors;
        if (s.last_error)
            h.last_error = s.last_error.message();
        try {
            h.zeroable_after = m.zeroable(h.which);
        } catch (const std::exception& e) { // the summary is still printed, with the error
            report.status = "error";
            report.exit_code = 1;
            report.error = e.what();
        }
    }
    return report;
}

} // namespace zero_all_nodes

#endif
