// hugezerod's metrics in the Prometheus text exposition format (version 0.0.4): each family
// with its # HELP and # TYPE lines, reservoirs labelled by node and page size. Served over
// HTTP on a Unix socket or a loopback TCP port (server.hpp); `curl --unix-socket PATH
// http://localhost/metrics` reads them.
#ifndef HUGEZERO_TOOLS_HUGEZEROD_METRICS_HPP
#define HUGEZERO_TOOLS_HUGEZEROD_METRICS_HPP

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <hugezero/pool_statistics.hpp>

#include "protocol/replies.hpp"

namespace hugezerod {

/// What the daemon itself counts (the pool counts the rest).
struct daemon_counters {
    std::uint64_t clients = 0;              ///< Connections open now.
    std::uint64_t connections = 0;          ///< Connections accepted, ever.
    std::uint64_t connections_refused = 0;  ///< Peers not allowed, or over max_clients or max_clients_per_user.
    std::uint64_t idle_connections_closed = 0; ///< Closed after idle_timeout with no lease.
    std::uint64_t bad_requests = 0;         ///< Malformed, oversized, wrong version, with fds: connection closed.
    std::uint64_t leases_held = 0;          ///< Leases out to clients now.
    std::uint64_t leases_detached = 0;      ///< Detached leases held now (admin_users' `detach=`).
    std::uint64_t leases_granted = 0;       ///< Leases handed out, ever.
    std::uint64_t acquires_refused = 0;     ///< Acquires answered with an error.
    std::uint64_t held_requests_refused = 0; ///< Requests on a connection that said hold (EPERM).
    std::uint64_t leases_taken_back = 0;    ///< Leases given back or left by a closed connection.
    std::uint64_t leases_undelivered = 0;   ///< Leases made for a client that left (or could not take it) first.
    std::uint64_t open_fds = 0;             ///< The daemon's open fds.
    std::map<std::string, std::uint64_t> requests;  ///< By verb.
    std::map<std::string, std::uint64_t> recycles;  ///< By recycle_status.
    std::uint64_t reloads = 0;              ///< SIGHUP reloads applied.
    std::uint64_t reloads_failed = 0;       ///< SIGHUP reloads refused (bad file): the old configuration stays.
};

namespace detail_metrics {

/// One family: `# HELP`, `# TYPE`, then its samples.
class family_writer {
public:
    family_writer(std::ostringstream& out, const char* name, const char* type, const char* help) : out_(out), name_(name)
    {
        out_ << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n';
    }
    template <class V>
    void sample(const std::string& labels, V value)
    {
        out_ << name_ << (labels.empty() ? "" : "{" + labels + "}") << ' ' << value << '\n';
    }

private:
    std::ostringstream& out_;
    const char* name_;
};

} // namespace detail_metrics

/// The reservoir's labels: `node="0",page_size="2M"` (the page as the configuration writes it).
inline std::string reservoir_labels(const hugezero::reservoir_statistics& s)
{
    return "node=\"" + std::to_string(s.which.node.value()) + "\",page_size=\"" + hugezero_tools::page_text(s.which.size) + "\"";
}

/// The metrics text for reservoirs @p reservoirs and the daemon's @p d.
inline std::string metrics_text(const std::vector<hugezero::reservoir_statistics>& reservoirs, const daemon_counters& d)
{
    using detail_metrics::family_writer;
    using stats = hugezero::reservoir_statistics;
    std::ostringstream out;
    out.precision(12);
    const auto per_reservoir = [&](const char* name, const char* type, const char* help, const std::function<double(const stats&)>& f) {
        family_writer w(out, name, type, help);
        for (const auto& s : reservoirs)
            w.sample(reservoir_labels(s), f(s));
    };
    const auto secs = [](std::chrono::nanoseconds ns) { return std::chrono::duration<double>(ns).count(); };
    per_reservoir("hugezero_reservoir_target_pages", "gauge", "Pages the reservoir keeps ready.",
                  [](const stats& s) { return double(s.target_pages); });
    per_reservoir("hugezero_reservoir_ready_pages", "gauge", "Pages ready to lease (the reservoir level).",
                  [](const stats& s) { return double(s.ready_pages); });
    per_reservoir("hugezero_reservoir_filling_pages", "gauge", "Pages in files being filled.",
                  [](const stats& s) { return double(s.filling_pages); });
    per_reservoir("hugezero_reservoir_floor_pages", "gauge", "Free pages the pool leaves on the node.",
                  [](const stats& s) { return double(s.floor_pages); });
    {
        family_writer w(out, "hugezero_reservoir_state", "gauge", "1 for what the refill is doing now.");
        for (const auto& s : reservoirs)
            w.sample(reservoir_labels(s) + ",state=\"" + protocol::word(s.state) + "\"", 1);
    }
    per_reservoir("hugezero_leases_out", "gauge", "Leases made and not yet closed, wherever they are.",
                  [](const stats& s) { return double(s.leases_out); });
    per_reservoir("hugezero_leases_served_total", "counter", "Leases made.", [](const stats& s) { return double(s.leases_served); });
    per_reservoir("hugezero_warm_pages_served_total", "counter", "Pages leased ready from the reservoir.",
                  [](const stats& s) { return double(s.warm_pages_served); });
    per_reservoir("hugezero_cold_pages_served_total", "counter", "Pages allocated on the spot for leases.",
                  [](const stats& s) { return double(s.cold_pages_served); });
    per_reservoir("hugezero_refill_pages_total", "counter", "Pages the refill allocated and zeroed.",
                  [](const stats& s) { return double(s.refill_pages); });
    per_reservoir("hugezero_refill_seconds_total", "counter", "Worker time spent refilling.",
                  [&](const stats& s) { return secs(s.refill_time); });
    per_reservoir("hugezero_refill_bytes_per_second", "gauge", "One worker's refill rate while it refills.",
                  [](const stats& s) { return s.refill_bytes_per_second(); });
    per_reservoir("hugezero_scrubbed_pages_total", "counter", "Recycled pages zeroed and put back.",
                  [](const stats& s) { return double(s.scrubbed_pages); });
    per_reservoir("hugezero_scrub_seconds_total", "counter", "Worker time spent scrubbing.",
                  [&](const stats& s) { return secs(s.scrub_time); });
    per_reservoir("hugezero_scrub_bytes_per_second", "gauge", "One worker's scrub rate.",
                  [](const stats& s) { return s.scrub_bytes_per_second(); });
    per_reservoir("hugezero_recycled_leases_total", "counter", "Leases taken back for the reservoir.",
                  [](const stats& s) { return double(s.recycled_leases); });
    per_reservoir("hugezero_recycles_refused_total", "counter", "Leases given back whose pages went to the kernel instead.",
                  [](const stats& s) { return double(s.recycles_refused); });
    per_reservoir("hugezero_waiting_pages", "gauge", "Pages given back still referred to elsewhere (deferred).",
                  [](const stats& s) { return double(s.waiting_pages); });
    per_reservoir("hugezero_out_of_pages_total", "counter", "Times the kernel had no free page for the refill.",
                  [](const stats& s) { return double(s.out_of_pages); });
    per_reservoir("hugezero_floor_holds_total", "counter", "Times the refill stopped at the floor.",
                  [](const stats& s) { return double(s.floor_holds); });
    per_reservoir("hugezero_errors_total", "counter", "Other refill and scrub failures.", [](const stats& s) { return double(s.errors); });

    const auto daemon = [&](const char* name, const char* type, const char* help, std::uint64_t v) {
        family_writer(out, name, type, help).sample("", v);
    };
    daemon("hugezerod_clients", "gauge", "Client connections open.", d.clients);
    daemon("hugezerod_connections_total", "counter", "Client connections accepted.", d.connections);
    daemon("hugezerod_connections_refused_total", "counter", "Connections refused: peer not allowed or too many clients.",
           d.connections_refused);
    daemon("hugezerod_idle_connections_closed_total", "counter", "Connections closed after idle_timeout with no lease.",
           d.idle_connections_closed);
    daemon("hugezerod_bad_requests_total", "counter", "Malformed requests (the connection was closed).", d.bad_requests);
    daemon("hugezerod_leases_held", "gauge", "Leases held by connected clients.", d.leases_held);
    daemon("hugezerod_leases_detached", "gauge", "Detached leases held under a tag, until released by it.", d.leases_detached);
    daemon("hugezerod_leases_granted_total", "counter", "Leases handed to clients.", d.leases_granted);
    daemon("hugezerod_acquires_refused_total", "counter", "Acquires answered with an error.", d.acquires_refused);
    daemon("hugezerod_held_requests_refused_total", "counter", "Requests refused because their connection said hold.",
           d.held_requests_refused);
    daemon("hugezerod_leases_taken_back_total", "counter", "Leases given back or left by a closed connection.",
           d.leases_taken_back);
    {
        family_writer w(out, "hugezerod_requests_total", "counter", "Requests by verb.");
        for (const auto& [verb, n] : d.requests)
            w.sample("verb=\"" + verb + "\"", n);
    }
    {
        family_writer w(out, "hugezerod_recycles_total", "counter", "Leases taken back, by what the pool did with them.");
        for (const auto& [status, n] : d.recycles)
            w.sample("status=\"" + status + "\"", n);
    }
    daemon("hugezerod_leases_undelivered_total", "counter", "Leases made for a client that left before it got them.",
           d.leases_undelivered);
    daemon("hugezerod_open_fds", "gauge", "The daemon's open file descriptors.", d.open_fds);
    daemon("hugezerod_reloads_total", "counter", "Configuration reloads applied (SIGHUP).", d.reloads);
    daemon("hugezerod_reloads_failed_total", "counter", "Configuration reloads refused.", d.reloads_failed);
    return out.str();
}

} // namespace hugezerod

#endif
