/// @file
/// @brief hugezero::page_size, a huge page size in bytes, with parsing; size literals that are
/// page sizes or byte counts.
#ifndef HUGEZERO_PAGE_SIZE_HPP
#define HUGEZERO_PAGE_SIZE_HPP

#include <bit>
#include <compare>
#include <cstdint>
#include <functional>
#include <limits>
#include <ostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>

namespace hugezero {

namespace detail {
/// Writes @p bytes in the largest binary unit that divides it, e.g. `2MiB`, `1536KiB`, `0B`.
inline std::ostream& write_binary_size(std::ostream& out, std::uint64_t bytes)
{
    constexpr const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    int unit = 0;
    while (bytes != 0 && bytes % 1024 == 0 && unit < 6) {
        bytes /= 1024;
        ++unit;
    }
    return out << bytes << units[unit];
}
} // namespace detail

/// A huge page size in bytes: a power of two of at least 4 KiB.
///
/// Prints as `2MiB`, `1GiB`, `64KiB` (the largest binary unit that divides it). Page sizes
/// differ by architecture (x86: 2 MiB and 1 GiB; arm64 with 64 KiB base pages: 2 MiB,
/// 512 MiB and 16 GiB), so the library never assumes a fixed set.
class page_size {
public:
    /// A page of @p bytes bytes.
    /// @throws std::invalid_argument if @p bytes is not a power of two of at least 4096.
    constexpr explicit page_size(std::uint64_t bytes) : bytes_(bytes)
    {
        if (bytes < 4096 || !std::has_single_bit(bytes))
            throw std::invalid_argument("hugezero: a page size must be a power of two of at least 4KiB, got "
                                        + std::to_string(bytes) + " bytes");
    }

    /// A page of @p kib KiB, the unit sysfs uses (`hugepages-2048kB`).
    /// @throws std::invalid_argument if the size is not a valid page size.
    static constexpr page_size from_kib(std::uint64_t kib)
    {
        if (kib > std::numeric_limits<std::uint64_t>::max() / 1024)
            throw std::invalid_argument("hugezero: page size of " + std::to_string(kib) + "kB is too large");
        return page_size(kib * 1024);
    }

    /// Parses a size written by a person: digits then a binary unit, e.g. `2M`, `2MiB`,
    /// `2048kB`, `2048K`, `1G`, `1GiB`, `1048576kB`. Units are binary (as sysfs's `kB` is), up to
    /// `E`/`EiB`, so that every size parses back from how it prints.
    /// @throws std::invalid_argument naming @p text when it is not such a size.
    static page_size parse(std::string_view text);

    /// The size in bytes.
    [[nodiscard]] constexpr std::uint64_t bytes() const noexcept { return bytes_; }
    /// The size in KiB, as sysfs writes it.
    [[nodiscard]] constexpr std::uint64_t kib() const noexcept { return bytes_ / 1024; }

    /// Page sizes order by size.
    friend constexpr auto operator<=>(page_size, page_size) noexcept = default;

    /// Prints e.g. `2MiB`.
    friend std::ostream& operator<<(std::ostream& out, page_size size) { return detail::write_binary_size(out, size.bytes_); }

private:
    std::uint64_t bytes_;
};

/// The size as text, e.g. `"2MiB"`.
inline std::string to_string(page_size size)
{
    std::ostringstream out;
    out << size;
    return out.str();
}

inline page_size page_size::parse(std::string_view text)
{
    const auto fail = [&](std::string_view why) {
        return std::invalid_argument("hugezero: invalid page size \"" + std::string(text) + "\": "
                                     + std::string(why));
    };
    std::size_t digits = 0;
    std::uint64_t value = 0;
    while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') {
        const auto digit = static_cast<std::uint64_t>(text[digits] - '0');
        if (value > (std::numeric_limits<std::uint64_t>::max() - digit) / 10)
            throw fail("the number is too large");
        value = value * 10 + digit;
        ++digits;
    }
    if (digits == 0)
        throw fail("expected digits followed by a unit such as 2M, 2048kB or 1G");
    const std::string_view unit = text.substr(digits);
    int shift = 0;
    if (unit == "k" || unit == "K" || unit == "kB" || unit == "KB" || unit == "KiB")
        shift = 10;
    else if (unit == "M" || unit == "MB" || unit == "MiB")
        shift = 20;
    else if (unit == "G" || unit == "GB" || unit == "GiB")
        shift = 30;
    else if (unit == "T" || unit == "TB" || unit == "TiB")
        shift = 40;
    else if (unit == "P" || unit == "PB" || unit == "PiB")
        shift = 50;
    else if (unit == "E" || unit == "EB" || unit == "EiB")
        shift = 60;
    else if (unit.empty())
        throw fail("a unit is required (K, M or G; e.g. 2M, 2048kB, 1G)");
    else
        throw fail("unknown unit \"" + std::string(unit) + "\" (use K, M or G; e.g. 2M, 2048kB, 1G)");
    if (value > (std::numeric_limits<std::uint64_t>::max() >> shift))
        throw fail("the number is too large");
    const std::uint64_t bytes = value << shift;
    if (bytes < 4096 || !std::has_single_bit(bytes))
        throw fail("a page size must be a power of two of at least 4KiB");
    return page_size(bytes);
}

/// A size written as a literal (`2_MiB`, `512_MiB`, `3_GiB`): a number of bytes that becomes
/// what it is used as. A byte count (`std::uint64_t`: `pool.acquire(node, 2_MiB, 512_MiB)`,
/// `reservoir_options{h, 4_GiB}`), or a page_size - only where it is one (`hstate{node, 3_MiB}`
/// throws, and does not compile where it is a constant expression).
class size_literal {
public:
    /// @p bytes bytes.
    explicit consteval size_literal(std::uint64_t bytes) : bytes_(bytes) {}

    /// The size in bytes.
    [[nodiscard]] constexpr std::uint64_t bytes() const noexcept { return bytes_; }
    /// The size in KiB.
    [[nodiscard]] constexpr std::uint64_t kib() const noexcept { return bytes_ / 1024; }

    /// As a byte count.
    constexpr operator std::uint64_t() const noexcept { return bytes_; } // NOLINT: implicit by design
    /// As a page size. @throws std::invalid_argument unless it is one (a power of two of at
    /// least 4 KiB): in a constant expression (`constexpr hstate h{node, 3_MiB}`), a compile error.
    constexpr operator page_size() const { return page_size(bytes_); } // NOLINT: implicit by design

    /// Prints as a page size does, e.g. `512MiB`.
    friend std::ostream& operator<<(std::ostream& out, size_literal size) { return detail::write_binary_size(out, size.bytes_); }

private:
    std::uint64_t bytes_;
};

/// User-defined literals for sizes, of pages or in bytes: `using namespace hugezero::literals;`
/// then `2_MiB` (see size_literal).
namespace literals {
/// @p n KiB; ill-formed if it overflows 64 bits.
consteval size_literal operator""_KiB(unsigned long long n)
{
    return n > (std::numeric_limits<std::uint64_t>::max() >> 10) ? throw std::invalid_argument("hugezero: size literal too large")
                                                                   : size_literal(n << 10);
}
/// @p n MiB; ill-formed if it overflows 64 bits.
consteval size_literal operator""_MiB(unsigned long long n)
{
    return n > (std::numeric_limits<std::uint64_t>::max() >> 20) ? throw std::invalid_argument("hugezero: size literal too large")
                                                                   : size_literal(n << 20);
}
/// @p n GiB; ill-formed if it overflows 64 bits.
consteval size_literal operator""_GiB(unsigned long long n)
{
    return n > (std::numeric_limits<std::uint64_t>::max() >> 30) ? throw std::invalid_argument("hugezero: size literal too large")
                                                                   : size_literal(n << 30);
}
} // namespace literals

/// The x86-64 and arm64 (4 KiB base pages) PMD-level huge page: 2 MiB.
inline constexpr page_size page_2mib{std::uint64_t{2} << 20};
/// The x86-64 and arm64 (4 KiB base pages) PUD-level huge page: 1 GiB.
inline constexpr page_size page_1gib{std::uint64_t{1} << 30};

} // namespace hugezero

/// Hashes a page size by its byte count.
template <>
struct std::hash<hugezero::page_size> {
    /// The hash of @p size.
    std::size_t operator()(hugezero::page_size size) const noexcept
    {
        return std::hash<std::uint64_t>{}(size.bytes());
    }
};

#endif
