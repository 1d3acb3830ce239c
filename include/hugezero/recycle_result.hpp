/// @file
/// @brief hugezero::recycle_result: what pool::recycle() did with a lease given back.
#ifndef HUGEZERO_RECYCLE_RESULT_HPP
#define HUGEZERO_RECYCLE_RESULT_HPP

#include <cstdint>
#include <ostream>
#include <string>

namespace hugezero {

/// What became of a lease given back to pool::recycle().
enum class recycle_status {
    recycled,       ///< Taken back: a worker scrubs it, then it joins the reservoir.
    deferred,       ///< Something still refers to the file (a copy of the fd, a mapping, an fd in a socket):
                    ///< the pool looks again every retry period, and recycles it once nothing does.
    unverifiable,   ///< It cannot be told whether something still refers to the file: not recycled.
    no_reservoir,   ///< The pool has no reservoir for the lease's node and page size.
    reservoir_full, ///< The reservoir holds, or will hold, its target without it.
    unusable,       ///< The file is no longer exactly the lease's pages (resized, holed, linked elsewhere), or could not be cut.
    emptied,        ///< Not recycled: the reservoir does not recycle, or the lease was retired (pool::retire()).
};

/// Prints e.g. `recycled` or `reservoir full`.
inline std::ostream& operator<<(std::ostream& out, recycle_status s)
{
    switch (s) {
    case recycle_status::recycled:
        return out << "recycled";
    case recycle_status::deferred:
        return out << "deferred";
    case recycle_status::unverifiable:
        return out << "unverifiable";
    case recycle_status::no_reservoir:
        return out << "no reservoir";
    case recycle_status::reservoir_full:
        return out << "reservoir full";
    case recycle_status::unusable:
        return out << "unusable";
    case recycle_status::emptied:
        return out << "emptied";
    }
    return out << "unknown";
}

/// What pool::recycle() or pool::retire() did with a lease (which it always takes: the lease is
/// left closed). Unless it was recycled or deferred, its file was emptied: its pages went back
/// to the kernel at once, whatever still referred to the file.
struct recycle_result {
    recycle_status status = recycle_status::recycled; ///< What became of it.
    std::uint64_t pages = 0; ///< Pages kept for the reservoir (fewer than the lease's if it would overfill it).
    /// What became of it, in words: how many pages are kept if it was recycled; else why not
    /// (yet), naming a holder where one is found.
    std::string message;

    /// Whether the lease was recycled.
    explicit operator bool() const noexcept { return status == recycle_status::recycled; }
};

} // namespace hugezero

#endif
