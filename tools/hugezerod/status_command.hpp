// `hugezerod status`: asks a running daemon for its status and prints it (text or JSON), or
// shows the reservoirs filling until they settle (--wait).
#ifndef HUGEZERO_TOOLS_HUGEZEROD_STATUS_COMMAND_HPP
#define HUGEZERO_TOOLS_HUGEZEROD_STATUS_COMMAND_HPP

#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "common/units.hpp"
#include "protocol/client.hpp"

namespace hugezerod {

namespace detail_status {

inline nlohmann::json as_json(const std::map<std::string, std::string>& words)
{
    nlohmann::json out = nlohmann::json::object();
    for (const auto& [k, v] : words) {
        if (const auto n = hugezero_tools::parse_number(v))
            out[k] = *n;
        else
            out[k] = v;
    }
    return out;
}

inline bool all_settled(const protocol::status_reply& s) { return s.daemon.count("filled") != 0 && s.daemon.at("filled") == "1"; }

inline std::string reservoir_line(const std::map<std::string, std::string>& r)
{
    const auto get = [&](const char* k) { return r.count(k) != 0 ? r.at(k) : std::string("?"); };
    const double target = std::stod(get("target_pages") == "?" ? "0" : get("target_pages"));
    const double ready = std::stod(get("ready_pages") == "?" ? "0" : get("ready_pages"));
    char percent[16];
    std::snprintf(percent, sizeof percent, "%.0f%%", target > 0 ? 100.0 * ready / target : 100.0);
    return "node" + get("node") + " " + get("page_kib") + "kB: " + get("ready_pages") + "/" + get("target_pages") + " pages ("
           + percent + "), " + get("state") + ", " + get("leases_out") + " leases out, served " + get("warm_pages_served")
           + " warm and " + get("cold_pages_served") + " cold pages";
}

} // namespace detail_status

/// Prints the status of the daemon at @p socket; 1 if --wait timed out.
inline int status_command(const std::string& socket, bool json, bool wait, std::chrono::nanoseconds timeout)
{
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    client c(socket, std::chrono::seconds(30));
    auto s = c.status();
    while (wait && !detail_status::all_settled(s)) {
        for (const auto& r : s.reservoirs)
            std::cerr << "hugezerod status: filling: " << detail_status::reservoir_line(r) << '\n';
        if (std::chrono::steady_clock::now() > deadline) {
            std::cerr << "hugezerod status: the reservoirs did not fill within the timeout\n";
            return 1;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(500)); // a poll for a human, not a synchronisation
        s = c.status();
    }
    if (json) {
        nlohmann::json out{{"daemon", detail_status::as_json(s.daemon)}, {"reservoirs", nlohmann::json::array()}};
        for (const auto& r : s.reservoirs)
            out["reservoirs"].push_back(detail_status::as_json(r));
        std::cout << out.dump(2) << '\n';
        return 0;
    }
    const auto get = [&](const char* k) { return s.daemon.count(k) != 0 ? s.daemon.at(k) : std::string("?"); };
    std::cout << "hugezerod " << get("version") << ": " << (detail_status::all_settled(s) ? "filled" : "filling") << ", " << get("clients")
              << " clients, " << get("leases") << " leases, pre-zeroing " << get("prezero") << '\n';
    for (const auto& r : s.reservoirs)
        std::cout << "  " << detail_status::reservoir_line(r) << '\n';
    return 0;
}

} // namespace hugezerod

#endif
