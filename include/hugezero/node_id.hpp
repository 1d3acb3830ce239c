/// @file
/// @brief hugezero::node_id, the number of a NUMA node.
#ifndef HUGEZERO_NODE_ID_HPP
#define HUGEZERO_NODE_ID_HPP

#include <compare>
#include <cstddef>
#include <functional>
#include <ostream>

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
