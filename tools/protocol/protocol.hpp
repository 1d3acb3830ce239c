// hugezerod's protocol, version 1 (docs/daemon.md, "Protocol"): what a client and the daemon
// say to each other over a SOCK_SEQPACKET Unix socket, one message per packet, as text:
//
//   hugezero/1 acquire node=0 page=2M bytes=8589934592 name=vm-7 max_cold=0
//   hugezero/1 release lease=3
//   hugezero/1 status
//   hugezero/1 hold
//
// answered by
//
//   hugezero/1 lease id=3 node=0 page_kib=2048 pages=4096 cold=0 path=/dev/hugepages/vm-7
//   (with the lease's fd in SCM_RIGHTS; path only for a named reservoir)
//   hugezero/1 released lease=3 status=recycled
//   hugezero/1 status clients=1 leases=1 ... then one line per reservoir
//   hugezero/1 held leases=1
//   hugezero/1 error ENOSPC <a sentence>
//
// Parsing is pure (no I/O) so that tests and the fuzzer call it directly. Everything a peer
// sends is checked: the version, the verb, every key once, every value's syntax and range.
#ifndef HUGEZERO_EXAMPLES_HUGEZEROD_PROTOCOL_HPP
#define HUGEZERO_EXAMPLES_HUGEZEROD_PROTOCOL_HPP

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <hugezero/node_id.hpp>
#include <hugezero/page_size.hpp>

#include "../common/units.hpp"

namespace hugezerod::protocol {

/// The version word every message starts with.
inline constexpr std::string_view version = "hugezero/1";
/// The longest request (a longer packet is refused and the connection closed).
inline constexpr std::size_t max_request = 1024;
/// The longest reply (a status of many reservoirs).
inline constexpr std::size_t max_reply = 64 * 1024;
/// The longest lease name (a file name: NAME_MAX less room for the daemon's own suffixes).
inline constexpr std::size_t max_name = 200;

/// Asks for a lease.
struct acquire_request {
    hugezero::node_id node{0};
    hugezero::page_size page = hugezero::page_2mib;
    std::uint64_t bytes = 0;
    std::string name{};                          ///< Empty: the daemon's own.
    std::optional<std::uint64_t> max_cold_pages{}; ///< Empty: no limit.
};
/// Gives a lease back (its fd may still be open elsewhere: it is recycled once it is not).
struct release_request {
    std::uint64_t lease = 0;
};
/// Asks for the daemon's status.
struct status_request {};
/// Makes the connection hold-only, for good: it keeps its leases until it closes, and every
/// later request on it is refused (EPERM). For a connection handed on to a VMM, which then
/// cannot use the credentials of whoever connected.
struct hold_request {};

/// Any request.
using request = std::variant<acquire_request, release_request, status_request, hold_request>;

/// Why a message could not be parsed: an errno name for the reply and a sentence.
struct parse_error {
    int code = EINVAL;
    std::string message;
};

/// The key=value words after the verb, in order.
using field_list = std::vector<std::pair<std::string_view, std::string_view>>;

/// errno names the protocol uses (and their numbers both ways).
inline const std::vector<std::pair<int, std::string_view>>& errno_names()
{
    static const std::vector<std::pair<int, std::string_view>> names = {
        {EINVAL, "EINVAL"},   {EPROTO, "EPROTO"}, {EMSGSIZE, "EMSGSIZE"}, {EBADMSG, "EBADMSG"},
        {EACCES, "EACCES"},   {ENOSPC, "ENOSPC"}, {EAGAIN, "EAGAIN"},     {ENODEV, "ENODEV"},
        {ENOENT, "ENOENT"},   {EEXIST, "EEXIST"}, {ENOMEM, "ENOMEM"},     {ECANCELED, "ECANCELED"},
        {EMFILE, "EMFILE"},   {EBUSY, "EBUSY"},   {EIO, "EIO"},           {EPERM, "EPERM"},
        {ESHUTDOWN, "ESHUTDOWN"}, {EINTR, "EINTR"}, {ENOTSUP, "ENOTSUP"}};
    return names;
}
inline std::string errno_name(int code)
{
    for (const auto& [number, name] : errno_names())
        if (number == code)
            return std::string(name);
    return "E" + std::to_string(code);
}
inline int errno_number(std::string_view name)
{
    for (const auto& [number, known] : errno_names())
        if (known == name)
            return number;
    if (name.size() > 1 && name[0] == 'E')
        if (const auto n = hugezero_tools::parse_number(name.substr(1)); n && *n < 4096)
            return static_cast<int>(*n);
    return EIO;
}

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

/// Whether @p name is a lease name the protocol carries: a plain file name of letters, digits,
/// '.', '_' and '-', not starting with '.' or "hugezero" (the pool's own files).
inline bool valid_name(std::string_view name)
{
    if (name.empty() || name.size() > max_name || name.front() == '.' || name.substr(0, 8) == "hugezero")
        return false;
    for (const char c : name)
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
            return false;
    return true;
}

/// A decimal field, or an error naming it.
inline std::variant<std::uint64_t, parse_error> number_field(std::string_view key, std::string_view value)
{
    if (const auto n = hugezero_tools::parse_number(value))
        return *n;
    return parse_error{EINVAL, "\"" + std::string(key) + "\" must be a decimal number, not " + quoted(value)};
}

inline std::variant<request, parse_error> parse_acquire(const field_list& f)
{
    acquire_request r;
    for (const std::string_view key : {"node", "page", "bytes"})
        if (!value_of(f, key))
            return parse_error{EINVAL, "acquire needs \"" + std::string(key) + "=\""};
    const auto node = number_field("node", *value_of(f, "node"));
    if (const auto* e = std::get_if<parse_error>(&node))
        return *e;
    if (std::get<std::uint64_t>(node) > 4095)
        return parse_error{EINVAL, "node " + std::string(value_of(f, "node")->substr(0, 32)) + " is out of range (0 to 4095)"};
    r.node = hugezero::node_id(static_cast<unsigned>(std::get<std::uint64_t>(node)));
    try {
        r.page = hugezero::page_size::parse(*value_of(f, "page"));
    } catch (const std::invalid_argument& e) {
        return parse_error{EINVAL, "invalid page size " + quoted(*value_of(f, "page")) + " (a power of two of at least 4K, with a unit: 2M, 1G)"};
    }
    const auto bytes = number_field("bytes", *value_of(f, "bytes"));
    if (const auto* e = std::get_if<parse_error>(&bytes))
        return *e;
    r.bytes = std::get<std::uint64_t>(bytes);
    if (r.bytes == 0)
        return parse_error{EINVAL, "\"bytes\" must be at least 1"};
    if (const auto name = value_of(f, "name")) {
        if (!valid_name(*name))
            return parse_error{EINVAL, "\"name\" must be a file name of letters, digits, '.', '_' and '-' (at most "
                                           + std::to_string(max_name) + ", not starting with '.' or hugezero)"};
        r.name = std::string(*name);
    }
    if (const auto cold = value_of(f, "max_cold")) {
        const auto n = number_field("max_cold", *cold);
        if (const auto* e = std::get_if<parse_error>(&n))
            return *e;
        r.max_cold_pages = std::get<std::uint64_t>(n);
    }
    return request{std::move(r)};
}

/// Parses one request packet. Never throws (but std::bad_alloc).
inline std::variant<request, parse_error> parse_request(std::string_view text)
{
    if (text.size() > max_request)
        return parse_error{EMSGSIZE, "a request of " + std::to_string(text.size()) + " bytes is longer than the limit of "
                                         + std::to_string(max_request)};
    if (!text.empty() && text.back() == '\n')
        text.remove_suffix(1);
    if (!printable(text))
        return parse_error{EBADMSG, "a request is one line of printable ASCII"};
    const auto list = words(text);
    if (!list || list->empty())
        return parse_error{EBADMSG, "a request is words separated by single spaces, starting with " + std::string(version)};
    if ((*list)[0] != version) {
        const std::string_view first = (*list)[0];
        if (first.substr(0, 9) == "hugezero/")
            return parse_error{EPROTO, "this daemon speaks " + std::string(version) + ", not " + std::string(first.substr(0, 32))};
        return parse_error{EPROTO, "a request starts with " + std::string(version)};
    }
    if (list->size() < 2)
        return parse_error{EBADMSG, "a request needs a verb: acquire, release, status or hold"};
    const std::string_view verb = (*list)[1];
    if (verb == "acquire") {
        auto f = fields(*list, 2, {"node", "page", "bytes", "name", "max_cold"});
        if (auto* e = std::get_if<parse_error>(&f))
            return std::move(*e);
        return parse_acquire(std::get<field_list>(f));
    }
    if (verb == "release") {
        auto f = fields(*list, 2, {"lease"});
        if (auto* e = std::get_if<parse_error>(&f))
            return std::move(*e);
        const auto id = value_of(std::get<field_list>(f), "lease");
        if (!id)
            return parse_error{EINVAL, "release needs \"lease=\""};
        const auto n = number_field("lease", *id);
        if (const auto* e = std::get_if<parse_error>(&n))
            return *e;
        return request{release_request{std::get<std::uint64_t>(n)}};
    }
    if (verb == "status") {
        if (list->size() != 2)
            return parse_error{EINVAL, "status takes no arguments"};
        return request{status_request{}};
    }
    if (verb == "hold") {
        if (list->size() != 2)
            return parse_error{EINVAL, "hold takes no arguments"};
        return request{hold_request{}};
    }
    return parse_error{EINVAL, "unknown verb \"" + std::string(verb.substr(0, 32)) + "\" (acquire, release, status or hold)"};
}

/// The verb of @p r (acquire, release, status, hold).
inline std::string_view verb_of(const request& r)
{
    static constexpr std::string_view verbs[] = {"acquire", "release", "status", "hold"}; // in the variant's order
    static_assert(std::size(verbs) == std::variant_size_v<request>, "a new verb needs its name here");
    return verbs[r.index()];
}

/// The text of @p r, as parse_request() reads it.
inline std::string format(const request& r)
{
    static_assert(std::variant_size_v<request> == 4, "a new verb needs its case here");
    std::string out(version);
    if (const auto* a = std::get_if<acquire_request>(&r)) {
        out += " acquire node=" + std::to_string(a->node.value()) + " page=" + std::to_string(a->page.kib())
             + "K bytes=" + std::to_string(a->bytes);
        if (!a->name.empty())
            out += " name=" + a->name;
        if (a->max_cold_pages)
            out += " max_cold=" + std::to_string(*a->max_cold_pages);
    } else if (const auto* g = std::get_if<release_request>(&r)) {
        out += " release lease=" + std::to_string(g->lease);
    } else if (std::holds_alternative<status_request>(r)) {
        out += " status";
    } else if (std::holds_alternative<hold_request>(r)) {
        out += " hold";
    }
    return out;
}

// --- replies ---------------------------------------------------------------------------------

/// A lease granted (its fd came with the packet).
struct lease_reply {
    std::uint64_t id = 0;
    std::uint64_t node = 0;
    std::uint64_t page_kib = 0;
    std::uint64_t pages = 0;
    std::uint64_t cold = 0;
    std::string path{}; ///< Empty unless the reservoir is named.
};
/// A lease given back.
struct released_reply {
    std::uint64_t id = 0;
    std::string status; ///< A recycle_status, spaces as underscores (recycled, deferred, ...).
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
    if (kind == "released")
        return released_reply{number("lease"), map->count("status") != 0 ? map->at("status") : std::string()};
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
