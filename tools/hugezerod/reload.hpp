// What a reload (SIGHUP) does, as a pure function of the running configuration and the file
// read again: the server applies the plan (targets, floors, the refill rate, who may connect,
// the limits) without touching a lease, or logs its refusal and keeps the old configuration.
#ifndef HUGEZERO_TOOLS_HUGEZEROD_RELOAD_HPP
#define HUGEZERO_TOOLS_HUGEZEROD_RELOAD_HPP

#include <string>
#include <utility>
#include <vector>

#include "hugezerod/config.hpp"

namespace hugezerod {

/// The outcome of plan_reload().
struct reload_plan {
    std::string refusal;           ///< Not empty: nothing changes, and this says why (file:line: ...).
    config next;                   ///< Otherwise what the daemon runs with from now on.
    std::vector<std::string> kept; ///< Keys whose new values wait for a restart (they keep their old ones).
};

namespace detail_reload {

// Why @p fresh cannot replace @p old in a running daemon, or "": the reservoirs' set, and each
// one's node, page, chunk, cgroup, directory and recycle, change only with a restart.
inline std::string restart_needed(const config& old, const config& fresh)
{
    if (fresh.reservoirs.size() != old.reservoirs.size())
        return fresh.file + ": adding or removing a [reservoir] needs a restart";
    for (std::size_t i = 0; i < fresh.reservoirs.size(); ++i) {
        const auto& a = fresh.reservoirs[i].options;
        const auto& b = old.reservoirs[i].options;
        std::string changed; // the keys, as the file names them
        for (const auto& [differs, key] : {std::pair{a.which.node != b.which.node, "node"}, {a.which.size != b.which.size, "page"},
                                           {a.chunk_bytes != b.chunk_bytes, "chunk"}, {a.cgroup != b.cgroup, "cgroup"},
                                           {a.directory != b.directory, "directory"}, {a.recycle != b.recycle, "recycle"}})
            if (differs)
                changed += std::string(changed.empty() ? "" : ", ") + key;
        if (!changed.empty())
            return fresh.file + ":" + std::to_string(fresh.reservoirs[i].line) + ": [reservoir]: " + changed
                   + ": changing a reservoir's node, page, chunk, cgroup, directory or recycle needs a restart "
                   + "(systemctl restart hugezerod)";
    }
    return {};
}

// Gives @p fresh the old values of what a running daemon cannot change; returns their keys.
inline std::vector<std::string> keep_restart_only(const config& old, config& fresh)
{
    std::vector<std::string> kept;
    const auto keep = [&](auto& now, const auto& before, const char* key) {
        if (now != before)
            kept.emplace_back(key);
        now = before;
    };
    keep(fresh.socket, old.socket, "socket");
    keep(fresh.socket_mode, old.socket_mode, "socket_mode");
    keep(fresh.socket_group, old.socket_group, "socket_group");
    keep(fresh.metrics, old.metrics, "metrics");
    keep(fresh.prezero, old.prezero, "prezero");
    keep(fresh.ready, old.ready, "ready");
    keep(fresh.pool.workers_per_node, old.pool.workers_per_node, "workers_per_node");
    keep(fresh.pool.batch_bytes, old.pool.batch_bytes, "batch");
    keep(fresh.pool.quiet_after_lease, old.pool.quiet_after_lease, "quiet_after_lease");
    keep(fresh.pool.retry_period, old.pool.retry_period, "retry_period");
    return kept;
}

} // namespace detail_reload

/// The plan for replacing the running configuration @p old by @p fresh (a file read again,
/// already checked against the machine): refused if it changes what needs a restart in a
/// reservoir; otherwise @p fresh, with the old values of what only a restart changes.
inline reload_plan plan_reload(const config& old, config fresh)
{
    reload_plan plan;
    plan.refusal = detail_reload::restart_needed(old, fresh);
    if (!plan.refusal.empty())
        return plan;
    plan.kept = detail_reload::keep_restart_only(old, fresh);
    plan.next = std::move(fresh);
    return plan;
}

} // namespace hugezerod

#endif
