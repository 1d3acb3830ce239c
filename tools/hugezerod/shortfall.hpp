// Why a reservoir stays below its target, and what the operator does about it: one sentence,
// shared by the daemon's log (readiness.hpp), `hugezerod status` and `hugezerod --check`.
#ifndef HUGEZERO_TOOLS_HUGEZEROD_SHORTFALL_HPP
#define HUGEZERO_TOOLS_HUGEZEROD_SHORTFALL_HPP

#include <cstdint>
#include <string>

#include <hugezero/page_size.hpp>

#include "common/units.hpp"

namespace hugezerod {

/// A reservoir's levels, as both the daemon's statistics and the status reply give them.
struct reservoir_levels {
    unsigned node = 0;
    hugezero::page_size page = hugezero::page_2mib;
    std::string state;          ///< The protocol's word: out_of_pages, held_by_floor, failing, ...
    std::uint64_t target_pages = 0;
    std::uint64_t ready_pages = 0;
    std::uint64_t floor_pages = 0;
    std::string last_error;     ///< An errno name, or "none".
};

/// Node @p node's nr_hugepages file of @p page.
inline std::string nr_hugepages_file(unsigned node, hugezero::page_size page)
{
    return "/sys/devices/system/node/node" + std::to_string(node) + "/hugepages/hugepages-" + std::to_string(page.kib())
           + "kB/nr_hugepages";
}

/// What to do to give @p missing more free pages of @p page to node @p node.
inline std::string reserve_advice(unsigned node, hugezero::page_size page, std::uint64_t missing)
{
    const std::string file = nr_hugepages_file(node, page);
    return "reserve " + std::to_string(missing) + " more (echo $(($(cat " + file + ") + " + std::to_string(missing) + ")) > " + file
           + "; 1G pages are best reserved at boot) or lower target";
}

/// Why @p l is short of its target and what to do, or "" when it is not held short (at target,
/// filling, quiet after a lease).
inline std::string shortfall(const reservoir_levels& l)
{
    const std::string which = "node" + std::to_string(l.node) + " " + hugezero_tools::page_text(l.page) + ": "
                            + std::to_string(l.ready_pages) + "/" + std::to_string(l.target_pages) + " pages ready";
    const std::uint64_t missing = l.target_pages > l.ready_pages ? l.target_pages - l.ready_pages : 0;
    if (missing == 0)
        return "";
    if (l.state == "out_of_pages")
        return which + ", and the node has no free huge page of " + hugezero_tools::page_text(l.page) + " for the rest: "
               + reserve_advice(l.node, l.page, missing);
    if (l.state == "held_by_floor")
        return which + ": the refill stops where the node would keep fewer than floor_pages = " + std::to_string(l.floor_pages)
               + " free; " + reserve_advice(l.node, l.page, missing) + ", or floor_pages";
    if (l.state == "failing")
        return which + ": the refill fails (" + l.last_error + "); the daemon's log says why";
    return "";
}

} // namespace hugezerod

#endif
