// The text of protocol hugezero/1's messages: one line of printable ASCII, words separated by
// single spaces, `key=value` fields. Pure functions, shared by requests.hpp and replies.hpp.
#ifndef HUGEZERO_TOOLS_PROTOCOL_WORDS_HPP
#define HUGEZERO_TOOLS_PROTOCOL_WORDS_HPP

#include <cerrno>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "common/units.hpp"

namespace hugezerod::protocol {

/// Why a message could not be parsed: an errno for the reply and a sentence.
struct parse_error {
    int code = EINVAL;
    std::string message;
};

/// The key=value words after the verb, in order.
using field_list = std::vector<std::pair<std::string_view, std::string_view>>;

/// Whether @p text is one line of printable ASCII (no control character, no byte over 0x7e).
inline bool printable(std::string_view text)
{
    for (const char c : text)
        if (c < 0x20 || c > 0x7e)
            return false;
    return true;
}

/// @p text in quotes for a message, cut at 64 bytes: a reply never echoes a whole request.
inline std::string quoted(std::string_view text)
{
    return "\"" + std::string(text.substr(0, 64)) + (text.size() > 64 ? "...\"" : "\"");
}

/// Splits @p text at single spaces (no empty word).
inline std::optional<std::vector<std::string_view>> words(std::string_view text)
{
    std::vector<std::string_view> out;
    while (!text.empty()) {
        const std::size_t space = text.find(' ');
        const std::string_view word = text.substr(0, space);
        if (word.empty())
            return std::nullopt;
        out.push_back(word);
        if (space == std::string_view::npos)
            break;
        text.remove_prefix(space + 1);
        if (text.empty())
            return std::nullopt; // a trailing space
    }
    return out;
}

/// The key=value words of @p list, each key at most once and among @p allowed.
inline std::variant<field_list, parse_error> fields(const std::vector<std::string_view>& list, std::size_t first,
                                                    std::initializer_list<std::string_view> allowed)
{
    field_list out;
    for (std::size_t i = first; i < list.size(); ++i) {
        const std::string_view word = list[i];
        const std::size_t equals = word.find('=');
        if (equals == std::string_view::npos || equals == 0)
            return parse_error{EINVAL, "expected key=value, got " + quoted(word)};
        const std::string_view key = word.substr(0, equals);
        bool known = false;
        for (const std::string_view a : allowed)
            known = known || a == key;
        if (!known)
            return parse_error{EINVAL, "unknown key " + quoted(key)};
        for (const auto& [seen, value] : out)
            if (seen == key)
                return parse_error{EINVAL, "key " + quoted(key) + " given twice"};
        out.emplace_back(key, word.substr(equals + 1));
    }
    return out;
}

/// The value of @p key in @p f, if there.
inline std::optional<std::string_view> value_of(const field_list& f, std::string_view key)
{
    for (const auto& [k, v] : f)
        if (k == key)
            return v;
    return std::nullopt;
}

/// A decimal field, or an error naming it.
inline std::variant<std::uint64_t, parse_error> number_field(std::string_view key, std::string_view value)
{
    if (const auto n = hugezero_tools::parse_number(value))
        return *n;
    return parse_error{EINVAL, "\"" + std::string(key) + "\" must be a decimal number, not " + quoted(value)};
}

/// `key=value` words into a map (values may not hold spaces). Empty if any word is not one.
inline std::optional<std::map<std::string, std::string>> word_map(std::string_view line, std::size_t skip)
{
    const auto list = words(line);
    if (!list || list->size() < skip)
        return std::nullopt;
    std::map<std::string, std::string> out;
    for (std::size_t i = skip; i < list->size(); ++i) {
        const std::size_t equals = (*list)[i].find('=');
        if (equals == std::string_view::npos || equals == 0)
            return std::nullopt;
        out.emplace(std::string((*list)[i].substr(0, equals)), std::string((*list)[i].substr(equals + 1)));
    }
    return out;
}

} // namespace hugezerod::protocol

#endif
