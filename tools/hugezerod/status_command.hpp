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
#include "hugezerod/shortfall.hpp"
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

/// The word @p key of a status line, "?" if the daemon did not send it.
inline std::string text(const std::map<std::string, std::string>& r, const char* key)
{
    const auto it = r.find(key);
    return it == r.end() ? std::string("?") : it->second;
}

/// The number @p key of a status line, 0 if absent or not a number.
inline std::uint64_t number(const std::map<std::string, std::string>& r, const char* key)
{
    const auto it = r.find(key);
    return it == r.end() ? 0 : hugezero_tools::parse_number(it->second).value_or(0);
}

/// A status line's levels (the words the daemon sent).
inline reservoir_levels levels(const std::map<std::string, std::string>& r)
{
    return {static_cast<unsigned>(number(r, "node")), hugezero::page_size::from_kib(number(r, "page_kib")), text(r, "state"),
            number(r, "target_pages"), number(r, "ready_pages"), number(r, "floor_pages"), text(r, "last_error")};
}

/// One reservoir: its levels, the pages being filled counted in its progress.
inline std::string reservoir_line(const std::map<std::string, std::string>& r)
{
    const auto get = [&](const char* k) { return text(r, k); };
    const reservoir_levels l = levels(r);
    const std::uint64_t filling = number(r, "filling_pages");
    const double done = static_cast<double>(l.ready_pages + filling);
    char percent[16];
    std::snprintf(percent, sizeof percent, "%.0f%%", l.target_pages > 0 ? std::min(100.0, 100.0 * done / static_cast<double>(l.target_pages)) : 100.0);
    return "node" + get("node") + " " + hugezero_tools::page_text(l.page) + ": " + std::to_string(l.ready_pages) + "/"
           + std::to_string(l.target_pages) + " pages ready" + (filling != 0 ? ", " + std::to_string(filling) + " being filled" : "")
           + " (" + percent + "), " + get("state") + ", " + hugezero_tools::count_text(number(r, "leases_out"), "lease") + " out, served " + get("warm_pages_served")
           + " warm and " + get("cold_pages_served") + " cold pages";
}

/// Prints a warning for each reservoir held short of its target; how many.
inline int warn_shortfalls(const protocol::status_reply& s)
{
    if (s.reservoirs.empty())
        std::cerr << "hugezerod status: warning: no reservoir is configured: every lease is allocated and zeroed when asked for "
                  << "(cold); add a [reservoir] to the configuration (man hugezerod.conf)\n";
    int held = 0;
    for (const auto& r : s.reservoirs)
        if (const std::string why = shortfall(levels(r)); !why.empty()) {
            std::cerr << "hugezerod status: warning: " << why << '\n';
            ++held;
        }
    return held;
}

} // namespace detail_status

/// Prints the status of the daemon at @p socket; with @p wait, 1 if the reservoirs did not fill
/// (the timeout, or one held short of its target: the warning says why and what to do).
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
    const int held = detail_status::warn_shortfalls(s);
    if (wait && held != 0)
        std::cerr << "hugezerod status: " << hugezero_tools::count_text(static_cast<std::uint64_t>(held), "reservoir")
                  << (held == 1 ? " settled short of its target" : " settled short of their targets") << " (above)\n";
    const int exit_status = wait && held != 0 ? 1 : 0;
    if (json) {
        nlohmann::json out{{"daemon", detail_status::as_json(s.daemon)}, {"reservoirs", nlohmann::json::array()}};
        for (const auto& r : s.reservoirs)
            out["reservoirs"].push_back(detail_status::as_json(r));
        std::cout << out.dump(2) << '\n';
        return exit_status;
    }
    const auto get = [&](const char* k) { return detail_status::text(s.daemon, k); };
    using hugezero_tools::count_text;
    std::cout << "hugezerod " << get("version") << ": " << (detail_status::all_settled(s) ? "filled" : "filling") << ", "
              << count_text(detail_status::number(s.daemon, "clients"), "client") << ", "
              << count_text(detail_status::number(s.daemon, "leases"), "lease") << ", pre-zeroing " << get("prezero") << '\n';
    for (const auto& r : s.reservoirs)
        std::cout << "  " << detail_status::reservoir_line(r) << '\n';
    return exit_status;
}

} // namespace hugezerod

#endif
