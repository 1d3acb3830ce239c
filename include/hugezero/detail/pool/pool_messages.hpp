/// @file
/// @brief Internals of hugezero::pool: the words of its errors and the names of its files.
#ifndef HUGEZERO_DETAIL_POOL_MESSAGES_HPP
#define HUGEZERO_DETAIL_POOL_MESSAGES_HPP

#include <cerrno>
#include <cstdint>
#include <filesystem>
#include <string>
#include <system_error>
#include <utility>

#include <hugezero/acquire_result.hpp>
#include <hugezero/detail/bytes_text.hpp>
#include <hugezero/detail/pool/charged_files.hpp>
#include <hugezero/hstate.hpp>
#include <hugezero/thread_settings.hpp>

namespace hugezero::detail {

/// The name of the pool's files of @p h (in `/proc/<pid>/maps` as `/memfd:<name>`).
inline std::string pool_file_name(const hstate& h)
{
    return "hugezero-node" + std::to_string(h.node.value()) + "-" + to_string(h.size);
}

/// What to check when the kernel refused (`EPERM`, `EACCES`), or nothing.
inline std::string permission_hint(int error)
{
    if (error == EPERM || error == EACCES)
        return " (not allowed: check seccomp filters and security modules)";
    return {};
}

/// The start of every acquire() error about @p bytes of @p h.
inline std::string cannot_lease(std::uint64_t bytes, const hstate& h)
{
    return "hugezero: cannot lease " + bytes_text(bytes) + " of " + to_string(h) + " huge pages: ";
}

/// An acquire() that failed with @p error; the message ends with the errno's text.
inline acquire_result acquire_failure(int error, std::string message)
{
    acquire_result result;
    result.error = std::error_code(error, std::system_category());
    result.message = std::move(message) + ": " + result.error.message();
    return result;
}

/// Why allocating the pages a lease lacked failed: @p call failed with @p error; the reservoir
/// had @p ready of the lease's pages, and @p got of the @p missing others could be allocated.
inline std::string cold_failure_reason(int error, const char* call, std::uint64_t ready, std::uint64_t missing,
                                       std::uint64_t got, const hstate& h)
{
    const std::string counts = "the reservoir had " + std::to_string(ready) + " pages ready, and " + std::to_string(got)
                               + " of the " + std::to_string(missing) + " more pages needed could be allocated";
    if (error == ENOSPC)
        return "not enough free " + to_string(h.size) + " huge pages on node" + std::to_string(h.node.value())
               + " (or a hugetlb cgroup limit reached): " + counts;
    if (error == ECANCELED)
        return "cancelled while allocating pages the reservoir did not have (" + counts + ")";
    return std::string(call) + " failed" + permission_hint(error) + " (" + counts + ")";
}

/// Why an acquire() was refused before allocating anything: the node has @p available free
/// pages, the floor keeps @p floor of them, and the lease lacks @p missing.
inline std::string short_of_pages_reason(const hstate& h, std::uint64_t ready, std::uint64_t missing,
                                         std::uint64_t available, std::uint64_t floor)
{
    std::string text = "not enough free " + to_string(h.size) + " huge pages on node" + std::to_string(h.node.value())
                       + ": the reservoir had " + std::to_string(ready) + " pages ready, " + std::to_string(missing)
                       + " more are needed, and the node has " + std::to_string(available) + " free";
    if (floor > 0)
        text += ", of which the floor of " + std::to_string(floor) + " stays free";
    return text + " (nothing was allocated)";
}

/// Why an acquire() was refused before allocating anything: the reservoir had @p ready of its
/// pages, and its @p cgroup's hugetlb limit leaves @p room of the @p missing others.
inline std::string over_charge_limit_reason(const hstate& h, std::uint64_t ready, std::uint64_t missing,
                                            std::uint64_t room, const std::filesystem::path& cgroup)
{
    return "the reservoir had " + std::to_string(ready) + " pages ready, " + std::to_string(missing)
           + " more are needed, and the hugetlb limit of its cgroup " + cgroup.string() + " (hugetlb."
           + charged_files::hugetlb_size_name(h.size) + ".max, here or above) leaves room for " + std::to_string(room)
           + " (nothing was allocated)";
}

/// Why an acquire() was refused before allocating anything: the reservoir had @p ready of its
/// pages, and the @p missing others are more cold pages than the caller's @p allowed.
inline std::string too_cold_reason(std::uint64_t ready, std::uint64_t missing, std::uint64_t allowed)
{
    return "the reservoir had " + std::to_string(ready) + " of its pages ready, and the " + std::to_string(missing)
           + " others would be cold (allocated and zeroed now), more than the " + std::to_string(allowed)
           + " cold pages allowed (nothing was allocated)";
}

/// The setting failure of a refill worker that could not bind its memory to @p node.
inline setting_failure binding_failure(node_id node, int error)
{
    return failure("memory_node", error, "bind worker memory to node " + std::to_string(node.value()));
}

} // namespace hugezero::detail

#endif
