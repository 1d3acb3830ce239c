/// @file
/// @brief hugezero::acquire_result: what pool::acquire() gives, a lease or why there is none.
#ifndef HUGEZERO_ACQUIRE_RESULT_HPP
#define HUGEZERO_ACQUIRE_RESULT_HPP

#include <ostream>
#include <string>
#include <system_error>
#include <vector>

#include <hugezero/lease.hpp>

namespace hugezero {

/// The outcome of pool::acquire(): a lease, or why there is none.
///
/// The errors are outcomes a caller can act on (wait and retry, lease elsewhere, start the VM
/// smaller); the message names the node, the page size and the size asked for:
/// - `ENOSPC`: not enough free huge pages of that size on that node above the reservoir's
///   floor (decided before anything is allocated, when the counters already tell);
/// - `EPERM`, `EACCES`: not allowed to allocate them;
/// - `ENODEV`: the machine has no such node, or the node no such page size;
/// - `EAGAIN`: the lease would need more cold pages than acquire_options::max_cold_pages;
/// - `ECANCELED`: the stop token was triggered while pages were being allocated;
/// - anything else the kernel reported (`EMFILE`, `ENOMEM`, ...).
struct acquire_result {
    hugezero::lease lease;   ///< The lease; closed when there is an error.
    std::error_code error;   ///< Empty on success.
    std::string message;     ///< Empty on success; else a sentence naming node, size and cause.

    /// Whether a lease was made.
    explicit operator bool() const noexcept { return !error; }

    /// Prints the lease, or the message.
    friend std::ostream& operator<<(std::ostream& out, const acquire_result& r)
    {
        if (r.error)
            return out << r.message;
        return out << r.lease;
    }
};

/// The outcome of pool::acquire(std::span<const lease_request>, const acquire_options&):
/// every lease asked for, in order, or none and why.
struct acquire_many_result {
    std::vector<hugezero::lease> leases; ///< One per request; empty when there is an error.
    std::error_code error;               ///< Empty on success; else the failed request's error.
    std::string message;                 ///< Empty on success; else which request failed, and why.

    /// Whether every lease was made.
    explicit operator bool() const noexcept { return !error; }
};

} // namespace hugezero

#endif
