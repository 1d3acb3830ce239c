/// @file
/// @brief Strict parsers for sysfs content. They return a value or the reason it is malformed;
/// the caller knows the file and turns a failure into a hugezero::parse_error.
#ifndef HUGEZERO_DETAIL_PARSE_HPP
#define HUGEZERO_DETAIL_PARSE_HPP

#include <algorithm>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include <hugezero/id_range.hpp>
#include <hugezero/page_size.hpp>

namespace hugezero::detail {

/// A parsed value, or why the text was rejected.
template <class T>
class parsed {
public:
    parsed(T value) : state_(std::move(value)) {} // NOLINT: implicit by design, like std::expected
    /// A failure with its reason.
    static parsed failure(std::string reason)
    {
        parsed result;
        result.state_ = failure_reason{std::move(reason)};
        return result;
    }
    explicit operator bool() const noexcept { return std::holds_alternative<T>(state_); }
    const T& value() const& { return std::get<T>(state_); }
    T&& value() && { return std::get<T>(std::move(state_)); }
    const std::string& reason() const { return std::get<failure_reason>(state_).text; }

private:
    struct failure_reason {
        std::string text;
    };
    parsed() = default;
    std::variant<failure_reason, T> state_;
};

/// Parses a run of decimal digits (nothing else) into an unsigned 64-bit value.
inline std::optional<std::uint64_t> parse_decimal(std::string_view digits) noexcept
{
    if (digits.empty())
        return std::nullopt;
    std::uint64_t value = 0;
    for (const char c : digits) {
        if (c < '0' || c > '9')
            return std::nullopt;
        const auto digit = static_cast<std::uint64_t>(c - '0');
        if (value > (std::numeric_limits<std::uint64_t>::max() - digit) / 10)
            return std::nullopt;
        value = value * 10 + digit;
    }
    return value;
}

/// Parses a counter as sysfs prints it (`"%lu\n"`): decimal digits, then exactly one newline.
inline parsed<std::uint64_t> parse_counter(std::string_view text)
{
    using result = parsed<std::uint64_t>;
    if (text.empty())
        return result::failure("the file is empty; expected a decimal count followed by a newline");
    if (text.back() != '\n')
        return result::failure("expected a decimal count followed by a newline; the newline is missing");
    const std::string_view digits = text.substr(0, text.size() - 1);
    if (digits.empty())
        return result::failure("expected a decimal count followed by a newline; there are no digits");
    for (const char c : digits)
        if (c < '0' || c > '9')
            return result::failure("expected a decimal count followed by a newline; found a character that is not a digit");
    if (const auto value = parse_decimal(digits))
        return *value;
    return result::failure("the count does not fit in 64 bits");
}

/// Range lists parse into public id_range values.
using hugezero::id_range;

/// Sorts ranges and merges those that overlap or touch: the canonical form of a range list.
inline std::vector<id_range> normalise_ranges(std::vector<id_range> ranges)
{
    std::sort(ranges.begin(), ranges.end(), [](const id_range& a, const id_range& b) { return a.first < b.first; });
    std::vector<id_range> merged;
    for (const id_range& r : ranges) {
        if (!merged.empty() && r.first <= merged.back().last + 1)
            merged.back().last = std::max(merged.back().last, r.last);
        else
            merged.push_back(r);
    }
    return merged;
}

/// The largest CPU or node number accepted: more than any Linux kernel supports
/// (NR_CPUS is at most 8192), small enough that a bitmap for it is cheap.
inline constexpr unsigned max_range_list_id = (1u << 20) - 1;

/// Parses a range list as the kernel prints it (`%*pbl`): `0-3,8-11`, `5`, or nothing for an
/// empty set. When @p require_newline is set (sysfs files), exactly one trailing newline must
/// follow. Ranges may come in any order and may overlap; the result is sorted and merged.
inline parsed<std::vector<id_range>> parse_range_list(std::string_view text, bool require_newline)
{
    using result = parsed<std::vector<id_range>>;
    if (require_newline) {
        if (text.empty())
            return result::failure("the file is empty; expected a range list such as 0-3,8-11 followed by a newline");
        if (text.back() != '\n')
            return result::failure("expected a range list such as 0-3,8-11 followed by a newline; the newline is missing");
        text.remove_suffix(1);
    }
    std::vector<id_range> ranges;
    if (text.empty())
        return ranges;
    const auto number = [](std::string_view digits) -> std::optional<unsigned> {
        const auto value = parse_decimal(digits);
        if (!value || *value > max_range_list_id)
            return std::nullopt;
        return static_cast<unsigned>(*value);
    };
    std::size_t start = 0;
    while (start <= text.size()) {
        const std::size_t comma = text.find(',', start);
        const std::string_view item = text.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
        if (item.empty())
            return result::failure("empty element in range list (a stray or doubled comma)");
        const std::size_t dash = item.find('-');
        std::optional<unsigned> first;
        std::optional<unsigned> last;
        if (dash == std::string_view::npos) {
            first = last = number(item);
        } else {
            first = number(item.substr(0, dash));
            last = number(item.substr(dash + 1));
        }
        if (!first || !last)
            return result::failure("\"" + std::string(item) + "\" is not a number or a range N-M of numbers up to "
                                   + std::to_string(max_range_list_id));
        if (*first > *last)
            return result::failure("range \"" + std::string(item) + "\" ends before it starts");
        ranges.push_back({*first, *last});
        if (comma == std::string_view::npos)
            break;
        start = comma + 1;
    }
    return normalise_ranges(std::move(ranges));
}

/// Parses the name of an hstate directory, `hugepages-<n>kB`, into its page size.
inline parsed<page_size> parse_hugepages_dir_name(std::string_view name)
{
    using result = parsed<page_size>;
    constexpr std::string_view prefix = "hugepages-";
    constexpr std::string_view suffix = "kB";
    if (name.size() <= prefix.size() + suffix.size() || name.substr(0, prefix.size()) != prefix
        || name.substr(name.size() - suffix.size()) != suffix)
        return result::failure("expected a directory named hugepages-<size>kB");
    const std::string_view digits = name.substr(prefix.size(), name.size() - prefix.size() - suffix.size());
    const auto kib = parse_decimal(digits);
    if (!kib)
        return result::failure("the size in a hugepages-<size>kB name must be decimal digits that fit in 64 bits");
    if (digits.size() > 1 && digits.front() == '0')
        return result::failure("the size in a hugepages-<size>kB name has a leading zero, which the kernel never prints");
    if (*kib < 4 || (*kib & (*kib - 1)) != 0 || *kib > (std::numeric_limits<std::uint64_t>::max() >> 10))
        return result::failure("the size in a hugepages-<size>kB name must be a power of two of at least 4kB");
    return page_size::from_kib(*kib);
}

/// Shows file content in an error message: quoted, with newlines and other control bytes
/// escaped, and cut after 80 bytes.
inline std::string quote_content(std::string_view content)
{
    constexpr std::size_t limit = 80;
    std::string out = "\"";
    for (std::size_t i = 0; i < content.size() && i < limit; ++i) {
        const auto c = static_cast<unsigned char>(content[i]);
        if (c == '\n')
            out += "\\n";
        else if (c == '\t')
            out += "\\t";
        else if (c == '"' || c == '\\')
            (out += '\\') += static_cast<char>(c);
        else if (c < 0x20 || c >= 0x7f) {
            constexpr char hex[] = "0123456789abcdef";
            out += "\\x";
            out += hex[c >> 4];
            out += hex[c & 15];
        } else
            out += static_cast<char>(c);
    }
    out += '"';
    if (content.size() > limit)
        out += "... (" + std::to_string(content.size()) + " bytes)";
    return out;
}

} // namespace hugezero::detail

#endif
