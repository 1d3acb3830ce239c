// hugezerod's protocol, version 1 (docs/daemon.md, "Protocol"): what a client and the daemon
// say to each other over a SOCK_SEQPACKET Unix socket, one message per packet, as text:
//
//   hugezero/1 acquire node=0 page=2M bytes=8589934592 name=vm-7 max_cold=0
//   hugezero/1 acquire node=0 page=2M bytes=1073741824 name=libvirt-UUID-ram-node0 detach=libvirt-UUID
//              owner=64055:64055 mode=0600 place=/dev/hugepages/libvirt/libvirt/qemu/3-vm/ram-node0
//   hugezero/1 release lease=3
//   hugezero/1 release tag=libvirt-UUID
//   hugezero/1 status
//   hugezero/1 hold
//
// answered by
//
//   hugezero/1 lease id=3 node=0 page_kib=2048 pages=4096 cold=0 path=/dev/hugepages/vm-7
//   (with the lease's fd in SCM_RIGHTS; path only for a named reservoir)
//   hugezero/1 released lease=3 status=recycled
//   hugezero/1 released tag=libvirt-UUID leases=2 status=emptied,emptied
//   hugezero/1 status clients=1 leases=1 ... then one line per reservoir
//   hugezero/1 held leases=1
//   hugezero/1 error ENOSPC <a sentence>
//
// This header: the requests, parsed (the daemon) and formatted (clients); replies.hpp the
// replies. Pure (no I/O), so that tests and the fuzzer call them directly, and each message
// round-trips. Everything a peer sends is checked: the version, the verb, every key once,
// every value's syntax and range.
#ifndef HUGEZERO_TOOLS_PROTOCOL_REQUESTS_HPP
#define HUGEZERO_TOOLS_PROTOCOL_REQUESTS_HPP

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include <hugezero/node_id.hpp>
#include <hugezero/page_size.hpp>

#include "common/units.hpp"
#include "protocol/words.hpp"

namespace hugezerod::protocol {

/// The version word every message starts with.
inline constexpr std::string_view version = "hugezero/1";
/// Where the daemon listens unless configured otherwise (`[daemon] socket`).
inline constexpr const char* default_socket = "/run/hugezerod/hugezerod.sock";
/// The longest request (a longer message is refused and the connection closed).
inline constexpr std::size_t max_request = 1024;
/// The longest reply (a status of many reservoirs).
inline constexpr std::size_t max_reply = 64 * 1024;
/// The longest lease name (a file name: NAME_MAX less room for the daemon's own suffixes).
inline constexpr std::size_t max_name = 200;

/// The longest `place` path.
inline constexpr std::size_t max_place = 700;

/// Who a lease's file belongs to while it is out.
struct file_owner {
    std::uint32_t uid = 0;
    std::uint32_t gid = 0;
    friend bool operator==(const file_owner&, const file_owner&) = default;
};

/// Asks for a lease. `detach`, `owner`, `mode` and `place` are for the daemon's admin_users
/// only (a hook acting for a VMM that cannot hold a connection itself, such as libvirt's).
struct acquire_request {
    hugezero::node_id node{0};
    hugezero::page_size page = hugezero::page_2mib;
    std::uint64_t bytes = 0;
    std::string name{};                          ///< Empty: the daemon's own.
    std::optional<std::uint64_t> max_cold_pages{}; ///< Empty: no limit.
    std::string detach{};                        ///< Non-empty: the lease outlives its connection, held under this tag.
    std::optional<file_owner> owner{};           ///< The file's owner while the lease is out (else the daemon's).
    std::optional<unsigned> mode{};              ///< The file's permissions while the lease is out (else 0600).
    std::string place{};                         ///< Non-empty: a second link to the lease's file, at this path.
};
/// Gives a lease back (its fd may still be open elsewhere: it is recycled once it is not):
/// one of the connection's leases by id, or every detached lease of a tag.
struct release_request {
    std::uint64_t lease = 0;
    std::string tag{}; ///< Non-empty: every detached lease of this tag, instead of `lease`.
};
/// Asks for the daemon's status.
struct status_request {};
/// Makes the connection hold-only, for good: it keeps its leases until it closes, and every
/// later request on it is refused (EPERM). For a connection handed on to a VMM, which then
/// cannot use the credentials of whoever connected.
struct hold_request {};

/// Any request.
using request = std::variant<acquire_request, release_request, status_request, hold_request>;

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

/// Whether @p path is a `place` the protocol carries: absolute, at most max_place bytes, every
/// component a name (no empty, `.` or `..` component, no trailing '/').
inline bool valid_place(std::string_view path)
{
    if (path.size() < 2 || path.size() > max_place || path.front() != '/' || path.back() == '/')
        return false;
    for (std::size_t start = 1; start <= path.size();) {
        const std::size_t end = std::min(path.find('/', start), path.size());
        const std::string_view part = path.substr(start, end - start);
        if (part.empty() || part == "." || part == "..")
            return false;
        start = end + 1;
    }
    return true;
}

namespace detail_requests {

inline std::optional<parse_error> parse_owner(std::string_view v, acquire_request& r)
{
    const std::size_t colon = v.find(':');
    const auto uid = colon == std::string_view::npos ? std::nullopt : hugezero_tools::parse_number(v.substr(0, colon));
    const auto gid = colon == std::string_view::npos ? std::nullopt : hugezero_tools::parse_number(v.substr(colon + 1));
    if (!uid || !gid || *uid > 0xfffffffeU || *gid > 0xfffffffeU)
        return parse_error{EINVAL, "\"owner\" must be UID:GID, two decimal numbers below 4294967295, not " + quoted(v)};
    r.owner = file_owner{static_cast<std::uint32_t>(*uid), static_cast<std::uint32_t>(*gid)};
    return std::nullopt;
}

// A lease's file may be readable and writable by its owner, and by its group; nothing else.
inline std::optional<parse_error> parse_mode(std::string_view v, acquire_request& r)
{
    static constexpr std::pair<std::string_view, unsigned> modes[] = {{"0600", 0600}, {"0640", 0640}, {"0660", 0660}};
    for (const auto& [text, mode] : modes)
        if (v == text) {
            r.mode = mode;
            return std::nullopt;
        }
    return parse_error{EINVAL, "\"mode\" must be 0600, 0640 or 0660, not " + quoted(v)};
}

// detach, owner, mode, place.
inline std::optional<parse_error> parse_admin_fields(const field_list& f, acquire_request& r)
{
    if (const auto tag = value_of(f, "detach")) {
        if (!valid_name(*tag))
            return parse_error{EINVAL, "\"detach\" must be a tag of letters, digits, '.', '_' and '-' (at most "
                                           + std::to_string(max_name) + ", not starting with '.' or hugezero)"};
        r.detach = std::string(*tag);
    }
    if (const auto owner = value_of(f, "owner"))
        if (auto e = parse_owner(*owner, r))
            return e;
    if (const auto mode = value_of(f, "mode"))
        if (auto e = parse_mode(*mode, r))
            return e;
    if (const auto place = value_of(f, "place")) {
        if (!valid_place(*place))
            return parse_error{EINVAL, "\"place\" must be an absolute path of at most " + std::to_string(max_place)
                                           + " bytes without empty, . or .. components, not " + quoted(*place)};
        if (r.name.empty())
            return parse_error{EINVAL, "\"place\" needs \"name=\" (only a named reservoir's file can have a second link)"};
        r.place = std::string(*place);
    }
    return std::nullopt;
}

} // namespace detail_requests

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
    if (auto e = detail_requests::parse_admin_fields(f, r))
        return *e;
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
        auto f = fields(*list, 2, {"node", "page", "bytes", "name", "max_cold", "detach", "owner", "mode", "place"});
        if (auto* e = std::get_if<parse_error>(&f))
            return std::move(*e);
        return parse_acquire(std::get<field_list>(f));
    }
    if (verb == "release") {
        auto f = fields(*list, 2, {"lease", "tag"});
        if (auto* e = std::get_if<parse_error>(&f))
            return std::move(*e);
        const auto id = value_of(std::get<field_list>(f), "lease");
        const auto tag = value_of(std::get<field_list>(f), "tag");
        if (id.has_value() == tag.has_value())
            return parse_error{EINVAL, "release needs \"lease=\" or \"tag=\", one of them"};
        if (tag) {
            if (!valid_name(*tag))
                return parse_error{EINVAL, "\"tag\" must be a tag of letters, digits, '.', '_' and '-'"};
            return request{release_request{0, std::string(*tag)}};
        }
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

/// The text of @p r, as parse_request() reads it. The page is written in its shortest form
/// (2M, 1G), never longer than a request could say it, so a printed request still fits
/// max_request.
inline std::string format(const request& r)
{
    static_assert(std::variant_size_v<request> == 4, "a new verb needs its case here");
    std::string out(version);
    if (const auto* a = std::get_if<acquire_request>(&r)) {
        out += " acquire node=" + std::to_string(a->node.value()) + " page=" + hugezero_tools::page_text(a->page) + " bytes=" + std::to_string(a->bytes);
        if (!a->name.empty())
            out += " name=" + a->name;
        if (a->max_cold_pages)
            out += " max_cold=" + std::to_string(*a->max_cold_pages);
        if (!a->detach.empty())
            out += " detach=" + a->detach;
        if (a->owner)
            out += " owner=" + std::to_string(a->owner->uid) + ":" + std::to_string(a->owner->gid);
        if (a->mode)
            out += std::string(" mode=") + (*a->mode == 0600 ? "0600" : *a->mode == 0640 ? "0640" : "0660");
        if (!a->place.empty())
            out += " place=" + a->place;
    } else if (const auto* g = std::get_if<release_request>(&r)) {
        out += g->tag.empty() ? " release lease=" + std::to_string(g->lease) : " release tag=" + g->tag;
    } else if (std::holds_alternative<status_request>(r)) {
        out += " status";
    } else if (std::holds_alternative<hold_request>(r)) {
        out += " hold";
    }
    return out;
}

} // namespace hugezerod::protocol

#endif
