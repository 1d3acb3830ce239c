/// @file
/// @brief hugezero::topology: the machine's nodes, CPUs and hstates, discovered over any backend.
#ifndef HUGEZERO_TOPOLOGY_HPP
#define HUGEZERO_TOPOLOGY_HPP

#include <algorithm>
#include <cstdint>
#include <optional>
#include <ostream>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <hugezero/backend.hpp>
#include <hugezero/cpu_set.hpp>
#include <hugezero/detail/parse.hpp>
#include <hugezero/detail/sysfs_paths.hpp>
#include <hugezero/error.hpp>
#include <hugezero/hstate.hpp>

namespace hugezero {

/// The counters of one hstate at one moment.
struct hstate_counters {
    std::uint64_t nr = 0;      ///< `nr_hugepages`: pages of this size on this node.
    std::uint64_t free = 0;    ///< `free_hugepages`: of those, pages not in use.
    std::uint64_t surplus = 0; ///< `surplus_hugepages`: overcommitted pages.
    /// `zeroable_hugepages`: free pages that can be pre-zeroed now; empty when the kernel
    /// lacks the pre-zeroing interface.
    std::optional<std::uint64_t> zeroable;

    /// Equal when every counter is.
    friend bool operator==(const hstate_counters&, const hstate_counters&) = default;

    /// Prints e.g. `nr 512 free 500 surplus 0 zeroable 12` (`zeroable -` without the interface).
    friend std::ostream& operator<<(std::ostream& out, const hstate_counters& c)
    {
        out << "nr " << c.nr << " free " << c.free << " surplus " << c.surplus << " zeroable ";
        if (c.zeroable)
            return out << *c.zeroable;
        return out << '-';
    }
};

/// The global (all nodes) counters of one page size.
struct global_counters {
    std::uint64_t nr = 0;            ///< `nr_hugepages`.
    std::uint64_t free = 0;          ///< `free_hugepages`.
    std::uint64_t reserved = 0;      ///< `resv_hugepages`: promised to mappings, not yet faulted in.
    std::uint64_t surplus = 0;       ///< `surplus_hugepages`.
    std::uint64_t nr_overcommit = 0; ///< `nr_overcommit_hugepages`: the surplus limit.

    /// Equal when every counter is.
    friend bool operator==(const global_counters&, const global_counters&) = default;

    /// Prints e.g. `nr 512 free 500 resv 0 surplus 0 overcommit 0`.
    friend std::ostream& operator<<(std::ostream& out, const global_counters& c)
    {
        return out << "nr " << c.nr << " free " << c.free << " resv " << c.reserved << " surplus " << c.surplus
                   << " overcommit " << c.nr_overcommit;
    }
};

/// One hstate as discovered.
struct hstate_info {
    hstate id;                      ///< Which hstate.
    bool zeroable_supported{false}; ///< Whether the kernel has `zeroable_hugepages` for it.
    std::string directory;          ///< Its directory, relative to the sysfs root.
};

/// One NUMA node as discovered.
struct node_info {
    node_id id;                       ///< Its number.
    cpu_set cpus;                     ///< Its CPUs (may be empty: a CPU-less memory node).
    bool has_memory{true};            ///< False for a memoryless node, which has no hstates.
    std::vector<hstate_info> hstates; ///< Its page sizes, smallest first.
};

/// The structure of the machine: nodes, their CPUs, their hstates and which of those support
/// pre-zeroing. Counters change all the time and are read live through hugezero::machine.
///
/// A kernel built without NUMA has no `devices/system/node`; it is presented as a single node 0
/// with every online CPU, fed by the global counters.
class topology {
public:
    /// Discovers the machine behind @p source.
    /// @throws hugezero::parse_error naming the file and its content if a file is malformed.
    /// @throws std::system_error naming the file if a required file cannot be read.
    static topology discover(backend& source)
    {
        topology t;
        const auto global_sizes = sizes_in(source, detail::paths::global_root);
        t.page_sizes_.assign(global_sizes.begin(), global_sizes.end());
        const auto node_entries = source.list(detail::paths::node_root);
        if (!node_entries) {
            t.numa_ = false;
            node_info only{node_id(0), parse_cpus(source, detail::paths::cpu_online), true, {}};
            for (const page_size size : t.page_sizes_)
                only.hstates.push_back(describe(source, {node_id(0), size}, detail::paths::global_hstate_dir(size)));
            t.nodes_.push_back(std::move(only));
            return t;
        }
        const std::string online_path = detail::paths::join(detail::paths::node_root, "online");
        const cpu_set online = parse_cpus(source, online_path);
        const bool has_memory_file = std::binary_search(node_entries->begin(), node_entries->end(), "has_memory");
        const cpu_set with_memory
            = has_memory_file ? parse_cpus(source, detail::paths::join(detail::paths::node_root, "has_memory")) : online;
        for (const unsigned number : online.cpus()) {
            node_info node{node_id(number), {}, with_memory.contains(number), {}};
            const std::string dir = detail::paths::node_dir(node.id);
            node.cpus = parse_cpus(source, detail::paths::join(dir, "cpulist"));
            if (node.has_memory) {
                const std::string hugepages_dir = detail::paths::join(dir, "hugepages");
                for (const page_size size : sizes_in(source, hugepages_dir)) {
                    const hstate h{node.id, size};
                    node.hstates.push_back(describe(source, h, detail::paths::node_hstate_dir(h)));
                }
            }
            t.nodes_.push_back(std::move(node));
        }
        return t;
    }

    /// Whether the kernel has NUMA (`devices/system/node` exists).
    [[nodiscard]] bool numa() const noexcept { return numa_; }
    /// The online nodes, in increasing order.
    [[nodiscard]] const std::vector<node_info>& nodes() const noexcept { return nodes_; }
    /// Node @p id. @throws std::invalid_argument naming the node and the nodes there are.
    [[nodiscard]] const node_info& node(node_id id) const
    {
        for (const auto& n : nodes_)
            if (n.id == id)
                return n;
        std::string known;
        for (const auto& n : nodes_)
            known += (known.empty() ? "" : ", ") + std::to_string(n.id.value());
        throw std::invalid_argument("hugezero: no online NUMA node " + std::to_string(id.value())
                                    + " (online nodes: " + (known.empty() ? "none" : known) + ")");
    }
    /// Hstate @p h. @throws std::invalid_argument naming it and the sizes its node has.
    [[nodiscard]] const hstate_info& info(const hstate& h) const
    {
        const node_info& n = node(h.node);
        std::string known;
        for (const auto& hs : n.hstates) {
            if (hs.id.size == h.size)
                return hs;
            known += (known.empty() ? "" : ", ") + to_string(hs.id.size);
        }
        throw std::invalid_argument("hugezero: node " + std::to_string(h.node.value()) + " has no " + to_string(h.size)
                                    + " huge pages (it has: " + (known.empty() ? "none" : known) + ")");
    }
    /// Every hstate, by node then size.
    [[nodiscard]] std::vector<hstate> hstates() const
    {
        std::vector<hstate> out;
        for (const auto& n : nodes_)
            for (const auto& h : n.hstates)
                out.push_back(h.id);
        return out;
    }
    /// The page sizes the kernel supports (`kernel/mm/hugepages`), smallest first.
    [[nodiscard]] const std::vector<page_size>& page_sizes() const noexcept { return page_sizes_; }

    /// Prints one line per node, then one per hstate: e.g.
    /// `node0 cpus 0-1` / `  node0/2MiB zeroable_hugepages: absent`.
    friend std::ostream& operator<<(std::ostream& out, const topology& t)
    {
        for (const auto& n : t.nodes_) {
            out << n.id << " cpus " << (n.cpus.empty() ? std::string("none") : to_string(n.cpus));
            if (!n.has_memory)
                out << " (memoryless)";
            out << '\n';
            for (const auto& h : n.hstates)
                out << "  " << h.id << " zeroable_hugepages: " << (h.zeroable_supported ? "present" : "absent") << '\n';
        }
        return out;
    }

private:
    static cpu_set parse_cpus(backend& source, std::string_view path)
    {
        const std::string text = source.read(path);
        auto parsed = detail::parse_range_list(text, true);
        if (!parsed)
            throw parse_error(source.display_path(path), text, parsed.reason());
        return cpu_set::from_ranges(std::move(parsed).value());
    }

    // The page sizes named by the hstate directories in @p dir (none if @p dir is absent).
    static std::set<page_size> sizes_in(backend& source, std::string_view dir)
    {
        std::set<page_size> sizes;
        const auto entries = source.list(dir);
        if (!entries)
            return sizes;
        for (const auto& name : *entries) {
            const auto size = detail::parse_hugepages_dir_name(name);
            if (!size)
                throw parse_error(source.display_path(dir), name, "unexpected entry: " + size.reason());
            sizes.insert(size.value());
        }
        return sizes;
    }

    static hstate_info describe(backend& source, const hstate& h, std::string dir)
    {
        const auto entries = source.list(dir);
        if (!entries)
            throw detail::system_error(ENOENT, "open directory " + source.display_path(dir));
        const bool zeroable
            = std::find(entries->begin(), entries->end(), detail::paths::zeroable_hugepages) != entries->end();
        return {h, zeroable, std::move(dir)};
    }

    bool numa_ = true;
    std::vector<node_info> nodes_;
    std::vector<page_size> page_sizes_;
};

} // namespace hugezero

#endif
