/// @file
/// @brief hugezero::node_id, the number of a NUMA node.
#ifndef HUGEZERO_NODE_ID_HPP
#define HUGEZERO_NODE_ID_HPP

#include <compare>
#include <cstddef>
#include <functional>
#include <ostream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <hugezero/detail/parse.hpp>

namespace hugezero {

/// The number of a NUMA node, as in `/sys/devices/system/node/node<N>`.
///
/// A strong type so that a node number is never confused with a page count or a CPU number.
/// Node numbers can be sparse (a machine may have node0 and node2 only).
class node_id {
public:
    /// Node @p number.
    constexpr explicit node_id(unsigned number) noexcept : number_(number) {}

    /// The node's number.
    [[nodiscard]] constexpr unsigned value() const noexcept { return number_; }

    /// Node ids order by number.
    friend constexpr auto operator<=>(node_id, node_id) noexcept = default;

    /// Prints `node<N>`, the name of the node's sysfs directory.
    friend std::ostream& operator<<(std::ostream& out, node_id node)
    {
        return out << "node" << node.number_;
    }

private:
    unsigned number_;
};

/// The node's name, `node<N>`.
inline std::string to_string(node_id node) { return "node" + std::to_string(node.value()); }

/// Parses a node list in the kernel's range-list form, such as `0,2-3` (as in
/// `/sys/devices/system/node/online`, without its newline): the nodes, in increasing order,
/// each once.
/// @throws std::invalid_argument naming @p list and what is wrong with it (also when empty).
inline std::vector<node_id> parse_node_list(std::string_view list)
{
    auto parsed = detail::parse_range_list(list, false);
    if (!parsed)
        throw std::invalid_argument("hugezero: invalid node list \"" + std::string(list) + "\": " + parsed.reason());
    std::vector<node_id> nodes;
    for (const id_range& r : detail::normalise_ranges(std::move(parsed).value()))
        for (unsigned n = r.first;; ++n) {
            nodes.emplace_back(n);
            if (n == r.last)
                break;
        }
    if (nodes.empty())
        throw std::invalid_argument("hugezero: invalid node list \"" + std::string(list) + "\": the list is empty");
    return nodes;
}

} // namespace hugezero

/// Hashes a node id by its number.
template <>
struct std::hash<hugezero::node_id> {
    /// The hash of @p node.
    std::size_t operator()(hugezero::node_id node) const noexcept
    {
        return std::hash<unsigned>{}(node.value());
    }
};

#endif
