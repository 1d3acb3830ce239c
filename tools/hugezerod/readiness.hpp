// hugezerod's readiness and status: READY=1 once (when listening, or once every reservoir has
// settled, as the configuration's `ready` says), STATUS= lines to systemd when they change, and
// the status reply of the protocol.
#ifndef HUGEZERO_TOOLS_HUGEZEROD_READINESS_HPP
#define HUGEZERO_TOOLS_HUGEZEROD_READINESS_HPP

#include <algorithm>
#include <map>
#include <chrono>
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include <hugezero/pool_statistics.hpp>
#include <hugezero/version.hpp>

#include "common/units.hpp"
#include "hugezerod/config.hpp"
#include "hugezerod/logging.hpp"
#include "hugezerod/shortfall.hpp"
#include "protocol/errno_names.hpp"
#include "protocol/replies.hpp"

namespace hugezerod {

/// Whether a reservoir is where its refill can take it: at its target, or held (by the floor,
/// a lack of free pages, failures).
[[nodiscard]] inline bool settled(const hugezero::reservoir_statistics& s)
{
    using st = hugezero::reservoir_state;
    return s.ready_pages >= s.target_pages || s.state == st::held_by_floor || s.state == st::out_of_pages || s.state == st::failing;
}

/// Whether every reservoir of @p all is settled.
[[nodiscard]] inline bool all_settled(const std::vector<hugezero::reservoir_statistics>& all)
{
    return std::all_of(all.begin(), all.end(), [](const auto& s) { return settled(s); });
}

/// What the status reply says of the daemon itself.
struct daemon_status {
    std::size_t clients = 0;
    std::uint64_t leases = 0;
    std::uint64_t detached = 0;
    std::uint64_t refill_rate = 0;
    std::size_t jobs = 0;
    std::size_t fds = 0;
    bool prezero = false;
    bool ready = false;  ///< READY=1 was sent.
    bool filled = false; ///< Every reservoir is settled now.
    std::chrono::milliseconds uptime{0};
};

/// The status reply: @p d, then a line for each reservoir of @p reservoirs.
[[nodiscard]] inline std::string status_reply_text(const daemon_status& d, const std::vector<hugezero::reservoir_statistics>& reservoirs)
{
    const auto n = [](auto v) { return std::to_string(v); };
    const protocol::ordered_fields daemon = {
        {"version", hugezero::version_string}, {"clients", n(d.clients)},      {"leases", n(d.leases)}, {"detached", n(d.detached)},
        {"refill_rate", n(d.refill_rate)},     {"jobs", n(d.jobs)},            {"fds", n(d.fds)},
        {"prezero", d.prezero ? "on" : "off"}, {"ready", d.ready ? "1" : "0"}, {"filled", d.filled ? "1" : "0"},
        {"uptime_ms", n(d.uptime.count())}};
    std::vector<protocol::ordered_fields> lines;
    for (const auto& s : reservoirs)
        lines.push_back({{"node", n(s.which.node.value())},
                         {"page_kib", n(s.which.size.kib())},
                         {"state", protocol::word(s.state)},
                         {"target_pages", n(s.target_pages)},
                         {"ready_pages", n(s.ready_pages)},
                         {"filling_pages", n(s.filling_pages)},
                         {"floor_pages", n(s.floor_pages)},
                         {"leases_out", n(s.leases_out)},
                         {"leases_served", n(s.leases_served)},
                         {"warm_pages_served", n(s.warm_pages_served)},
                         {"cold_pages_served", n(s.cold_pages_served)},
                         {"recycled_leases", n(s.recycled_leases)},
                         {"waiting_pages", n(s.waiting_pages)},
                         {"scrubbing_pages", n(s.scrubbing_pages)},
                         {"errors", n(s.errors)},
                         {"last_error", s.last_error ? protocol::errno_name(s.last_error.value()) : "none"}});
    return protocol::format_status(daemon, lines);
}

/// Tells systemd READY=1 once, and STATUS= whenever the levels change.
class readiness {
public:
    readiness(ready_when when, const server_hooks& hooks) : when_(when), hooks_(hooks) {}

    /// Whether READY=1 was sent.
    [[nodiscard]] bool ready() const noexcept { return ready_sent_; }

    /// Looks at @p reservoirs, @p clients and @p leases now: READY=1 if it is time, or STATUS=
    /// if it changed.
    void update(const std::vector<hugezero::reservoir_statistics>& reservoirs, std::size_t clients, std::uint64_t leases)
    {
        bool settled_now = true;
        std::string levels;
        for (const auto& s : reservoirs) {
            if (s.target_pages == 0 && s.leases_served == 0)
                continue;
            warn_when_held(s);
            settled_now = settled_now && settled(s);
            std::ostringstream part;
            part << (levels.empty() ? "" : "; ") << hugezero_tools::hstate_text(s.which) << " " << s.ready_pages << "/" << s.target_pages << " pages, "
                 << s.state;
            levels += part.str();
        }
        const std::string status = "STATUS=" + (levels.empty() ? std::string("no reservoirs") : levels) + "; "
                                 + hugezero_tools::count_text(clients, "client") + ", " + hugezero_tools::count_text(leases, "lease");
        if (!ready_sent_ && (when_ == ready_when::listening || settled_now)) {
            ready_sent_ = true;
            hooks_.notify("READY=1\n" + status);
            hooks_.log(level::info, "ready: " + status.substr(7));
        } else if (status != last_status_) {
            hooks_.notify(status);
        }
        last_status_ = status;
    }

    /// Around a reload: RELOADING=1 (if READY=1 was sent: before it, systemd still waits for
    /// the start), then READY=1 and the status again.
    void reloading()
    {
        if (ready_sent_)
            hooks_.notify("RELOADING=1");
    }
    void reloaded()
    {
        if (ready_sent_)
            hooks_.notify("READY=1");
        last_status_.clear();
    }

private:
    /// Logs a warning, with what to do, when @p s comes to be held short of its target (no free
    /// pages, the floor, failures): once each time its state changes to one of those.
    void warn_when_held(const hugezero::reservoir_statistics& s)
    {
        const std::string state = protocol::word(s.state);
        std::string& last = last_state_[s.which];
        if (state == last)
            return;
        last = state;
        const std::string why = shortfall({static_cast<unsigned>(s.which.node.value()), s.which.size, state, s.target_pages,
                                           s.ready_pages, s.floor_pages,
                                           s.last_error ? protocol::errno_name(s.last_error.value()) : std::string("none")});
        if (!why.empty())
            hooks_.log(level::warning, why);
    }

    ready_when when_;
    const server_hooks& hooks_;
    bool ready_sent_ = false;
    std::string last_status_;
    std::map<hugezero::hstate, std::string> last_state_; ///< Each reservoir's state when last looked at.
};

} // namespace hugezerod

#endif
