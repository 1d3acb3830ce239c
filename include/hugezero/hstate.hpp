/// @file
/// @brief hugezero::hstate, one page size on one node.
#ifndef HUGEZERO_HSTATE_HPP
#define HUGEZERO_HSTATE_HPP

#include <compare>
#include <cstddef>
#include <functional>
#include <ostream>
#include <sstream>
#include <string>

#include <hugezero/node_id.hpp>
#include <hugezero/page_size.hpp>

namespace hugezero {

/// One huge page size on one NUMA node: the unit the kernel counts pages in
/// (`node<N>/hugepages/hugepages-<size>kB/`), and the unit hugezero zeroes.
struct hstate {
    node_id node;   ///< The node.
    page_size size; ///< The page size.

    /// Ordered by node, then size.
    friend constexpr auto operator<=>(const hstate&, const hstate&) noexcept = default;

    /// Prints e.g. `node0/2MiB`.
    friend std::ostream& operator<<(std::ostream& out, const hstate& h)
    {
        return out << h.node << '/' << h.size;
    }
};

/// The hstate as text, e.g. `"node0/2MiB"`.
inline std::string to_string(const hstate& h)
{
    std::ostringstream out;
    out << h;
    return out.str();
}

} // namespace hugezero

/// Hashes an hstate.
template <>
struct std::hash<hugezero::hstate> {
    /// The hash of @p h.
    std::size_t operator()(const hugezero::hstate& h) const noexcept
    {
        return std::hash<unsigned>{}(h.node.value()) * 31 + std::hash<std::uint64_t>{}(h.size.bytes());
    }
};

#endif
