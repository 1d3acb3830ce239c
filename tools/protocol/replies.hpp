// The replies of protocol hugezero/1 (requests.hpp has the requests and the exchange): each
// formatted by the daemon and parsed by clients, so that every reply round-trips.
#ifndef HUGEZERO_TOOLS_PROTOCOL_REPLIES_HPP
#define HUGEZERO_TOOLS_PROTOCOL_REPLIES_HPP

#include <cerrno>
#include <cstdint>
#include <map>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <variant>
#include <utility>
#include <vector>

#include "protocol/errno_names.hpp"
#include "protocol/requests.hpp"
#include "protocol/words.hpp"

namespace hugezerod::protocol {

/// A lease granted (its fd came with the message).
struct lease_reply {
    std::uint64_t id = 0;
    std::uint64_t node = 0;
    std::uint64_t page_kib = 0;
    std::uint64_t pages = 0;
    std::uint64_t cold = 0;
    std::string path{}; ///< Empty unless the reservoir is named.
};
/// A lease given back, or every detached lease of a tag.
struct released_reply {
    std::uint64_t id = 0;
    std::string status; ///< A recycle_status, spaces as underscores (recycled, deferred, ...); for a tag, one per lease, comma-separated (`none`: no lease).
    std::string tag{};  ///< Non-empty: the tag released, instead of `id`.
    std::uint64_t leases = 0; ///< For a tag: how many leases it had.
};
/// The daemon's status: `key=value` words of the first line, then each reservoir's line's.
struct status_reply {
    std::map<std::string, std::string> daemon;
    std::vector<std::map<std::string, std::string>> reservoirs;
};
/// The connection is hold-only now, with this many leases.
struct held_reply {
    std::uint64_t leases = 0;
};
/// A refusal.
struct error_reply {
    int code = EIO;
    std::string message;
};
/// Any reply.
using reply = std::variant<lease_reply, released_reply, status_reply, held_reply, error_reply>;

/// @p value as a word of the protocol: as printed, spaces as underscores (a reservoir_state
/// `held by floor` is `held_by_floor`, a recycle_status `reservoir full` is `reservoir_full`).
template <class T>
std::string word(const T& value)
{
    std::ostringstream out;
    out << value;
    std::string w = out.str();
    for (char& c : w)
        c = c == ' ' ? '_' : c;
    return w;
}

/// `key=value` fields in the order they are written.
using ordered_fields = std::vector<std::pair<std::string, std::string>>;

/// The lease reply's text (its fd goes with it). The path, which may hold spaces, comes last.
inline std::string format(const lease_reply& r)
{
    std::string out = std::string(version) + " lease id=" + std::to_string(r.id) + " node=" + std::to_string(r.node)
                    + " page_kib=" + std::to_string(r.page_kib) + " pages=" + std::to_string(r.pages) + " cold=" + std::to_string(r.cold);
    if (!r.path.empty())
        out += " path=" + r.path;
    return out;
}

/// The released reply's text.
inline std::string format(const released_reply& r)
{
    if (!r.tag.empty())
        return std::string(version) + " released tag=" + r.tag + " leases=" + std::to_string(r.leases) + " status=" + r.status;
    return std::string(version) + " released lease=" + std::to_string(r.id) + " status=" + r.status;
}

/// The status reply's text: @p daemon on the first line, then a line per reservoir, the fields
/// in the order given (status_reply is what parse_reply() makes of it).
inline std::string format_status(const ordered_fields& daemon, const std::vector<ordered_fields>& reservoirs)
{
    std::string out = std::string(version) + " status";
    for (const auto& [key, value] : daemon)
        out += " " + key + "=" + value;
    for (const auto& r : reservoirs) {
        out += "\nreservoir";
        for (const auto& [key, value] : r)
            out += " " + key + "=" + value;
    }
    return out;
}

/// The held reply's text: the connection is hold-only, with @p leases leases.
inline std::string format_held(std::uint64_t leases)
{
    return std::string(version) + " held leases=" + std::to_string(leases);
}

/// The error reply's text.
inline std::string format_error(int code, std::string_view message)
{
    std::string clean(message.substr(0, 900));
    for (char& c : clean)
        if (c < 0x20 || c > 0x7e)
            c = ' ';
    return std::string(version) + " error " + errno_name(code) + " " + clean;
}

/// Parses a reply packet (for clients). @throws std::runtime_error if it is not one.
inline reply parse_reply(std::string_view text)
{
    const auto bad = [&] { return std::runtime_error("not a " + std::string(version) + " reply: \"" + std::string(text.substr(0, 200)) + "\""); };
    const std::size_t eol = text.find('\n');
    std::string_view head = text.substr(0, eol);
    std::string path; // a lease's path is last, and may hold spaces
    const std::string lease_head = std::string(version) + " lease ";
    if (const std::size_t at = head.find(" path="); at != std::string_view::npos && head.substr(0, lease_head.size()) == lease_head) {
        path = std::string(head.substr(at + 6));
        head = head.substr(0, at);
    }
    const auto list = words(head);
    if (!list || list->size() < 2 || (*list)[0] != version)
        throw bad();
    const std::string_view kind = (*list)[1];
    if (kind == "error") {
        if (list->size() < 3)
            throw bad();
        const std::size_t start = version.size() + 7 + (*list)[2].size() + 1;
        return error_reply{errno_number((*list)[2]), start < head.size() ? std::string(head.substr(start)) : std::string()};
    }
    const auto map = word_map(head, 2);
    if (!map)
        throw bad();
    const auto number = [&](const char* key) {
        const auto it = map->find(key);
        const auto n = it == map->end() ? std::nullopt : hugezero_tools::parse_number(it->second);
        if (!n)
            throw bad();
        return *n;
    };
    if (kind == "lease") {
        return lease_reply{number("id"), number("node"), number("page_kib"), number("pages"), number("cold"), path};
    }
    if (kind == "released") {
        const std::string status = map->count("status") != 0 ? map->at("status") : std::string();
        if (map->count("tag") != 0)
            return released_reply{0, status, map->at("tag"), number("leases")};
        return released_reply{number("lease"), status};
    }
    if (kind == "held")
        return held_reply{number("leases")};
    if (kind == "status") {
        status_reply r{*map, {}};
        std::string_view rest = eol == std::string_view::npos ? std::string_view() : text.substr(eol + 1);
        while (!rest.empty()) {
            const std::size_t end = rest.find('\n');
            const auto line = word_map(rest.substr(0, end), 1);
            if (!line)
                throw bad();
            r.reservoirs.push_back(*line);
            rest = end == std::string_view::npos ? std::string_view() : rest.substr(end + 1);
        }
        return r;
    }
    throw bad();
}

} // namespace hugezerod::protocol

#endif
