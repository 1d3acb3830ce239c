/// @file
/// @brief Deadlines for the timed waits, safe for any timeout the caller passes.
#ifndef HUGEZERO_DETAIL_DEADLINE_HPP
#define HUGEZERO_DETAIL_DEADLINE_HPP

#include <chrono>

namespace hugezero::detail {

/// `now + timeout`, saturated at the clock's end: a caller may pass `nanoseconds::max()` (or
/// `hours::max()`, converted) to mean "very long", and the plain sum would overflow, which is
/// undefined behaviour. A timeout of zero or less gives now.
inline std::chrono::steady_clock::time_point deadline_after(std::chrono::nanoseconds timeout) noexcept
{
    const auto now = std::chrono::steady_clock::now();
    if (timeout <= std::chrono::nanoseconds::zero())
        return now;
    const auto room = std::chrono::steady_clock::time_point::max() - now;
    return timeout >= room ? std::chrono::steady_clock::time_point::max() : now + timeout;
}

} // namespace hugezero::detail

#endif
