// What zero_all_nodes prints: the summary of a run and the description of a dry run, as text or
// as one JSON object (README, "zero_all_nodes"). Rendering only: nothing here zeroes or waits.
#ifndef HUGEZERO_EXAMPLES_ZERO_ALL_NODES_REPORT_HPP
#define HUGEZERO_EXAMPLES_ZERO_ALL_NODES_REPORT_HPP

#include <cstdint>
#include <iomanip>
#include <map>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include <hugezero/hugezero.hpp>

namespace zero_all_nodes {

using json = nlohmann::ordered_json; // keys in the documented order

/// One hstate of a run.
struct hstate_report {
    hugezero::hstate which;
    std::uint64_t zeroable_before = 0;
    std::uint64_t zeroed = 0;
    std::uint64_t zeroable_after = 0;
    std::uint64_t errors = 0;   // counted by the service, also those it retried successfully
    std::string last_error;     // the last one's text, if any
};

/// A whole run.
struct run_report {
    std::string status = "complete"; // complete, cancelled or error
    int exit_code = 0;
    std::vector<hstate_report> hstates;
    double seconds = 0;
    std::string error; // with status error

    [[nodiscard]] std::uint64_t pages() const
    {
        std::uint64_t n = 0;
        for (const auto& h : hstates)
            n += h.zeroed;
        return n;
    }
    [[nodiscard]] std::uint64_t bytes() const
    {
        std::uint64_t n = 0;
        for (const auto& h : hstates)
            n += h.zeroed * h.which.size.bytes();
        return n;
    }
};

inline json to_json(const run_report& r)
{
    json out{{"status", r.status}, {"pages_zeroed", r.pages()}, {"bytes_zeroed", r.bytes()}, {"seconds", r.seconds}};
    json& hstates = out["hstates"] = json::array();
    for (const auto& h : r.hstates)
        hstates.push_back({{"node", h.which.node.value()},
                           {"page_size_kb", h.which.size.kib()},
                           {"zeroable_before", h.zeroable_before},
                           {"zeroed", h.zeroed},
                           {"zeroable_after", h.zeroable_after},
                           {"errors", h.errors}});
    if (!r.error.empty())
        out["error"] = r.error;
    return out;
}

inline void print_text(std::ostream& out, const run_report& r)
{
    for (const auto& h : r.hstates)
        out << h.which << ": zeroed " << h.zeroed << " of " << h.zeroable_before << " zeroable pages, "
            << h.zeroable_after << " zeroable now\n";
    out << r.status << ": " << r.pages() << " pages (" << std::fixed << std::setprecision(2)
        << static_cast<double>(r.bytes()) / (1024.0 * 1024.0 * 1024.0) << " GiB) in " << std::setprecision(3) << r.seconds
        << " s";
    if (r.seconds > 0 && r.bytes() > 0)
        out << " (" << std::setprecision(2) << static_cast<double>(r.bytes()) / r.seconds / 1e9 << " GB/s)";
    out << '\n';
}

/// What a dry run shows: each selected hstate's counters, by node.
using dry_run_report = std::map<hugezero::node_id, std::vector<std::pair<hugezero::hstate, hugezero::hstate_counters>>>;

inline json to_json(const hugezero::machine& m, const dry_run_report& r)
{
    json out{{"status", "dry-run"}, {"nodes", json::array()}};
    for (const auto& [node, hstates] : r) {
        json n{{"node", node.value()}, {"cpus", hugezero::to_string(m.topology().node(node).cpus)}, {"hstates", json::array()}};
        for (const auto& [h, c] : hstates)
            n["hstates"].push_back({{"page_size_kb", h.size.kib()},
                                    {"nr", c.nr},
                                    {"free", c.free},
                                    {"surplus", c.surplus},
                                    {"zeroable", c.zeroable ? json(*c.zeroable) : json(nullptr)}});
        out["nodes"].push_back(std::move(n));
    }
    return out;
}

inline void print_text(std::ostream& out, const hugezero::machine& m, const dry_run_report& r)
{
    out << "dry run: nothing is zeroed\n";
    for (const auto& [node, hstates] : r) {
        out << node << " cpus " << m.topology().node(node).cpus << '\n';
        for (const auto& [h, c] : hstates)
            out << "  " << h << ' ' << c << (c.zeroable ? "" : " (no zeroable_hugepages: cannot pre-zero)") << '\n';
    }
}

} // namespace zero_all_nodes

#endif
