/// @file
/// @brief hugezero::acquire_options: how much of a lease may be cold, and how to cancel it;
/// hugezero::lease_request, one of several leases asked for at once.
#ifndef HUGEZERO_ACQUIRE_OPTIONS_HPP
#define HUGEZERO_ACQUIRE_OPTIONS_HPP

#include <cstdint>
#include <optional>
#include <stop_token>
#include <string>

#include <hugezero/hstate.hpp>

namespace hugezero {

/// How pool::acquire() may make a lease.
struct acquire_options {
    /// The most pages the lease may lack from the reservoir, to be allocated (and so zeroed by
    /// the kernel) on the spot, on the VM's start path. A lease that would need more fails at
    /// once with `EAGAIN`, allocating nothing. Empty: no limit; 0: warm pages only. What is
    /// missing is counted against the ready files, and a refusal leaves the pool as it was (not
    /// quiet, its refill going on), so asking again until a lease is warm is safe.
    std::optional<std::uint64_t> max_cold_pages;
    /// Cancels the allocation of cold pages between steps (`ECANCELED`).
    std::stop_token stop;
    /// What to name the lease's file, so that `/proc/<pid>/maps` and a path show which VM it
    /// is: from a named reservoir, the file is renamed so in its directory (never over another
    /// file: `EEXIST`); from a memfd reservoir, a file made for this lease (no ready file) is
    /// a memfd of that name, but a ready memfd keeps the name it was made with. Empty: the
    /// pool's own. A plain file name, not starting with `hugezero.`; else acquire() throws
    /// std::invalid_argument. With several leases in one call, each lease_request's name.
    std::string name{};
};

/// One lease of several asked for in one call (pool::acquire(std::span<const lease_request>,
/// const acquire_options&)): a VM with several memory backends, one per node or per DIMM.
struct lease_request {
    hstate which{node_id(0), page_2mib}; ///< The node and page size.
    std::uint64_t bytes = 0;             ///< The size, rounded up to whole pages.
    std::string name{};                  ///< The lease's file name (acquire_options::name).
};

} // namespace hugezero

#endif
