/// @file
/// @brief How populate() shares a mapping among threads, as QEMU's prealloc does: how many,
/// and which pages each takes.
#ifndef HUGEZERO_PREFAULT_PLAN_HPP
#define HUGEZERO_PREFAULT_PLAN_HPP

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include <hugezero/page_size.hpp>

namespace hugezero {

/// QEMU's rule for how many threads prefault @p bytes of @p page pages: the fewest of
/// @p cpus, @p max_threads, the number of pages, and one per 64 MiB (at least one).
[[nodiscard]] inline unsigned prefault_threads(std::uint64_t bytes, page_size page, std::size_t cpus,
                                               unsigned max_threads = 16) noexcept
{
    const std::uint64_t pages = bytes / page.bytes();
    const std::uint64_t per_64mib = std::max<std::uint64_t>(1, bytes / (std::uint64_t{64} << 20));
    std::uint64_t n = std::min<std::uint64_t>({std::max<std::uint64_t>(1, cpus), std::max(1U, max_threads), pages, per_64mib});
    return static_cast<unsigned>(std::max<std::uint64_t>(1, n));
}

/// One thread's share of a prefault: pages [first_page, first_page + pages).
struct prefault_range {
    std::uint64_t first_page = 0; ///< Its first page.
    std::uint64_t pages = 0;      ///< Its page count.
    /// Equal when both fields are.
    friend bool operator==(const prefault_range&, const prefault_range&) = default;
};

/// Splits @p pages pages into @p threads contiguous ranges, as QEMU does: each gets
/// pages / threads, and the first pages % threads get one more.
[[nodiscard]] inline std::vector<prefault_range> prefault_split(std::uint64_t pages, unsigned threads)
{
    std::vector<prefault_range> ranges;
    if (threads == 0)
        return ranges;
    const std::uint64_t each = pages / threads;
    const std::uint64_t extra = pages % threads;
    std::uint64_t next = 0;
    for (unsigned i = 0; i < threads; ++i) {
        const std::uint64_t n = each + (i < extra ? 1 : 0);
        ranges.push_back({next, n});
        next += n;
    }
    return ranges;
}

} // namespace hugezero

#endif
