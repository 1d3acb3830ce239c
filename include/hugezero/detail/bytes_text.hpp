/// @file
/// @brief Byte counts as people read them in messages: `256MiB`, `3GiB`, `1536KiB`, `100 bytes`.
#ifndef HUGEZERO_DETAIL_BYTES_TEXT_HPP
#define HUGEZERO_DETAIL_BYTES_TEXT_HPP

#include <cstdint>
#include <string>

namespace hugezero::detail {

/// @p bytes in the largest binary unit that divides it exactly (`3GiB`, `6MiB`), else in bytes.
inline std::string bytes_text(std::uint64_t bytes)
{
    constexpr const char* units[] = {"KiB", "MiB", "GiB", "TiB"};
    if (bytes == 0 || bytes % 1024 != 0)
        return std::to_string(bytes) + (bytes == 1 ? " byte" : " bytes");
    int unit = -1;
    while (bytes % 1024 == 0 && unit < 3) {
        bytes /= 1024;
        ++unit;
    }
    return std::to_string(bytes) + units[unit];
}

} // namespace hugezero::detail

#endif
