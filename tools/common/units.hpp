// Numbers, sizes and durations as the tools read them from command lines and config files:
// "512", "8G", "2MiB", "70ms". Each parser throws std::invalid_argument saying what is wrong
// (the caller names the argument or the file, line and key).
#ifndef HUGEZERO_TOOLS_COMMON_UNITS_HPP
#define HUGEZERO_TOOLS_COMMON_UNITS_HPP

#include <charconv>
#include <chrono>
#include <cstdint>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include <hugezero/hstate.hpp>
#include <hugezero/page_size.hpp>

namespace hugezero_tools {

/// Parses a decimal number: digits only (no sign, no space), no overflow. Empty otherwise.
inline std::optional<std::uint64_t> parse_number(std::string_view text)
{
    std::uint64_t value = 0;
    const char* end = text.data() + text.size();
    if (text.empty() || text.front() < '0' || text.front() > '9')
        return std::nullopt;
    const auto [stop, error] = std::from_chars(text.data(), end, value);
    if (error != std::errc() || stop != end)
        return std::nullopt;
    return value;
}

/// Splits @p text into its leading digits' value and the unit after them.
/// @throws std::invalid_argument with @p expected if there are no digits or they overflow.
inline std::pair<std::uint64_t, std::string_view> split_unit(std::string_view text, const char* expected)
{
    std::size_t digits = 0;
    while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9')
        ++digits;
    const auto value = parse_number(text.substr(0, digits));
    if (!value)
        throw std::invalid_argument(digits == 0 ? expected : "the number is too large");
    return {*value, text.substr(digits)};
}

/// Parses a duration such as `150us`, `70ms`, `1s`, `500ns`, `2min`.
inline std::chrono::nanoseconds parse_duration(std::string_view text)
{
    const auto [value, unit] = split_unit(text, "expected a number followed by a unit such as 150us, 70ms or 1s");
    std::uint64_t scale = 0;
    if (unit == "ns")
        scale = 1;
    else if (unit == "us")
        scale = 1'000;
    else if (unit == "ms")
        scale = 1'000'000;
    else if (unit == "s")
        scale = 1'000'000'000;
    else if (unit == "min")
        scale = 60'000'000'000;
    else if (unit.empty())
        throw std::invalid_argument("a unit is required (ns, us, ms, s or min)");
    else
        throw std::invalid_argument("unknown unit \"" + std::string(unit) + "\" (use ns, us, ms, s or min)");
    constexpr auto max_ns = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
    if (value > max_ns / scale)
        throw std::invalid_argument("the duration is too long");
    return std::chrono::nanoseconds(static_cast<std::int64_t>(value * scale));
}

/// Parses a byte count: `1048576` (bytes), or with a binary unit `512K`, `8M`, `8G`, `1T` (also
/// `KiB`, `MiB`, `GiB`, `TiB`).
inline std::uint64_t parse_bytes(std::string_view text)
{
    const auto [value, unit] = split_unit(text, "expected a size such as 8G, 512M or 1048576");
    int shift = 0;
    if (unit.empty())
        shift = 0;
    else if (unit == "K" || unit == "KiB" || unit == "k")
        shift = 10;
    else if (unit == "M" || unit == "MiB")
        shift = 20;
    else if (unit == "G" || unit == "GiB")
        shift = 30;
    else if (unit == "T" || unit == "TiB")
        shift = 40;
    else
        throw std::invalid_argument("unknown unit \"" + std::string(unit) + "\" (use K, M, G or T; e.g. 512M, 8G)");
    if (value > (std::numeric_limits<std::uint64_t>::max() >> shift))
        throw std::invalid_argument("the size is too large");
    return value << shift;
}

/// @p bytes in the largest binary unit that writes it whole, as the configuration does: 8G,
/// 512M, 2M, 64K; plain bytes otherwise.
inline std::string size_text(std::uint64_t bytes)
{
    const char* units = "KMGTPE";
    int unit = -1;
    while (bytes != 0 && bytes % 1024 == 0 && unit < 5) {
        bytes /= 1024;
        ++unit;
    }
    return std::to_string(bytes) + (unit < 0 ? std::string() : std::string(1, units[unit]));
}

/// @p n and @p noun, singular for one: "1 lease", "2 leases", "0 clients".
inline std::string count_text(std::uint64_t n, std::string_view noun)
{
    return std::to_string(n) + " " + std::string(noun) + (n == 1 ? "" : "s");
}

/// A page size as the configuration and the protocol write it: 2M, 1G.
inline std::string page_text(hugezero::page_size page) { return size_text(page.bytes()); }

/// A reservoir's node and page size as the daemon writes them everywhere: node0/2M.
inline std::string hstate_text(const hugezero::hstate& h) { return "node" + std::to_string(h.node.value()) + "/" + page_text(h.size); }

} // namespace hugezero_tools

#endif
