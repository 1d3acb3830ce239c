/// @file
/// @brief hugezero::prefault_options: how populate() faults a mapping in (method, threads, placement).
#ifndef HUGEZERO_PREFAULT_OPTIONS_HPP
#define HUGEZERO_PREFAULT_OPTIONS_HPP

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include <hugezero/cpu_set.hpp>
#include <hugezero/node_id.hpp>
#include <hugezero/thread_settings.hpp>

namespace hugezero {

/// How populate() faults pages in.
enum class prefault_method {
    /// `MADV_POPULATE_WRITE`, or touching each page if the kernel does not have it (Linux
    /// before 5.14; probed once per process). Default.
    automatic,
    /// `MADV_POPULATE_WRITE` only: its `EINVAL` is an error.
    populate_write,
    /// Touch each page: an atomic add of zero to its first byte, which faults it in for
    /// writing and leaves its content as it was. A page the kernel cannot provide raises
    /// `SIGBUS` instead of an error: use it only on mappings whose pages are reserved (a
    /// hugetlb mapping without `MAP_NORESERVE`) or already allocated (a lease).
    touch,
};

/// Prints `automatic`, `MADV_POPULATE_WRITE` or `touch`.
inline std::ostream& operator<<(std::ostream& out, prefault_method method)
{
    switch (method) {
    case prefault_method::automatic:
        return out << "automatic";
    case prefault_method::populate_write:
        return out << "MADV_POPULATE_WRITE";
    case prefault_method::touch:
        return out << "touch";
    }
    return out << "unknown";
}

/// How populate() runs.
struct prefault_options {
    /// Threads to use; 0 means QEMU's rule (prefault_threads()). An explicit count is used as
    /// given (no hidden cap), but never more threads than pages.
    unsigned threads = 0;
    /// The cap in QEMU's rule (QEMU's `MAX_MEM_PREALLOC_THREAD_COUNT` is 16). Any value >= 1.
    unsigned max_threads = 16;
    /// Pin the threads to these CPUs; they also count as "the CPUs" in QEMU's rule (otherwise
    /// the CPUs this process may run on do).
    std::optional<cpu_set> cpus;
    /// Bind the threads' memory to this node: a page the kernel allocates while faulting
    /// (anonymous memory, or a file page not allocated yet) comes from it.
    std::optional<node_id> memory_node;
    /// How pages are faulted in.
    prefault_method method = prefault_method::automatic;
    /// Each thread faults in at most this much per call, rounded down to whole pages (at least
    /// one), and checks for cancellation between calls: `MADV_POPULATE_WRITE` is not
    /// interrupted by ordinary signals. Default 64 MiB (about 5 ms of zeroing here).
    std::uint64_t step_bytes = std::uint64_t{64} << 20;

    /// Options that pin the threads to @p node's CPUs and bind their memory to it.
    /// @throws std::invalid_argument if @p m has no such node.
    static prefault_options on_node(const machine& m, node_id node)
    {
        prefault_options options;
        const cpu_set& cpus = m.topology().node(node).cpus;
        if (!cpus.empty())
            options.cpus = cpus;
        options.memory_node = node;
        return options;
    }
};

} // namespace hugezero

#endif
