/// @file
/// @brief Where things live in a sysfs tree, relative to its root (the directory standing for /sys).
#ifndef HUGEZERO_DETAIL_SYSFS_PATHS_HPP
#define HUGEZERO_DETAIL_SYSFS_PATHS_HPP

#include <string>
#include <string_view>

#include <hugezero/hstate.hpp>

namespace hugezero::detail::paths {

/// The NUMA node directory; absent on kernels built without NUMA.
inline constexpr std::string_view node_root = "devices/system/node";
/// The online CPUs; used for the single node of a kernel without NUMA.
inline constexpr std::string_view cpu_online = "devices/system/cpu/online";
/// The global (all nodes) hstate directories.
inline constexpr std::string_view global_root = "kernel/mm/hugepages";

inline constexpr std::string_view nr_hugepages = "nr_hugepages";                       ///< total pages
inline constexpr std::string_view free_hugepages = "free_hugepages";                   ///< free pages
inline constexpr std::string_view surplus_hugepages = "surplus_hugepages";             ///< overcommitted pages
inline constexpr std::string_view zeroable_hugepages = "zeroable_hugepages";           ///< pre-zeroing ABI
inline constexpr std::string_view resv_hugepages = "resv_hugepages";                   ///< global: reserved
inline constexpr std::string_view nr_overcommit_hugepages = "nr_overcommit_hugepages"; ///< global: overcommit limit

/// `devices/system/node/node<N>`.
inline std::string node_dir(node_id node) { return std::string(node_root) + "/node" + std::to_string(node.value()); }

/// `hugepages-<kB>kB`.
inline std::string hstate_dir_name(page_size size) { return "hugepages-" + std::to_string(size.kib()) + "kB"; }

/// `devices/system/node/node<N>/hugepages/hugepages-<kB>kB`.
inline std::string node_hstate_dir(const hstate& h) { return node_dir(h.node) + "/hugepages/" + hstate_dir_name(h.size); }

/// `kernel/mm/hugepages/hugepages-<kB>kB`.
inline std::string global_hstate_dir(page_size size) { return std::string(global_root) + "/" + hstate_dir_name(size); }

/// @p dir + "/" + @p name.
inline std::string join(std::string_view dir, std::string_view name)
{
    std::string out(dir);
    out += '/';
    out += name;
    return out;
}

} // namespace hugezero::detail::paths

#endif
