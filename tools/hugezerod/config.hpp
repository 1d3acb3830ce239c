// hugezerod's configuration file (docs/daemon.md, "Configuration"): INI-style sections
//
//   [daemon]     socket, socket_mode, socket_group, metrics, allow_users, allow_groups, ready, max_clients,
//                max_leases_per_client, prezero
//   [pool]       workers_per_node, refill_rate, batch, quiet_after_lease, retry_period
//   [reservoir]  node, page, target, chunk, floor_pages, cgroup, directory (one section each)
//
// Every error names the file, the line and the key: "hugezerod.conf:12: target: ...".
#ifndef HUGEZERO_EXAMPLES_HUGEZEROD_CONFIG_HPP
#define HUGEZERO_EXAMPLES_HUGEZEROD_CONFIG_HPP

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <cstring>
#include <string_view>
#include <vector>

#include <grp.h>
#include <pwd.h>
#include <sys/types.h>

#include <hugezero/hstate.hpp>
#include <hugezero/machine.hpp>
#include <hugezero/pool_options.hpp>

#include "../common/units.hpp"

namespace hugezerod {

/// A configuration that cannot be used; the message names the file, line and key.
class config_error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// One [reservoir] section.
struct reservoir_config {
    hugezero::reservoir_options options{};
    int line = 0; ///< Where its section starts, for errors found later.
};

/// When the daemon tells systemd it is ready.
enum class ready_when {
    filled,    ///< Once every reservoir holds its target or its refill is held (no pages, floor).
    listening, ///< As soon as the socket is served.
};

/// The whole configuration, with its defaults.
struct config {
    std::string file = "(defaults)";                           ///< Where it came from.
    std::string socket = "/run/hugezerod/hugezerod.sock";        ///< Unless socket-activated.
    unsigned socket_mode = 0660;                                 ///< Permissions of the socket file.
    std::optional<gid_t> socket_group;                           ///< Its group (empty: the daemon's).
    std::string metrics;                                         ///< unix:PATH, tcp:127.0.0.1:PORT or empty (off).
    std::vector<uid_t> allow_users{0};                           ///< Peers allowed by uid.
    std::vector<gid_t> allow_groups;                             ///< Peers allowed by gid.
    ready_when ready = ready_when::filled;
    unsigned max_clients = 256;                                  ///< Connections at once.
    unsigned max_leases_per_client = 64;                         ///< Leases one connection may hold.
    bool prezero = true;                                         ///< Run the kernel's pre-zeroing where it has it.
    hugezero::pool_options pool{};                               ///< Reservoirs come from the sections.
    std::vector<reservoir_config> reservoirs;
};

namespace detail_config {

inline std::string_view trim(std::string_view s)
{
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
        s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
        s.remove_suffix(1);
    return s;
}

inline std::vector<std::string_view> split_list(std::string_view s)
{
    std::vector<std::string_view> out;
    std::size_t start = 0;
    while (start < s.size()) {
        const std::size_t end = s.find_first_of(" ,\t", start);
        const std::string_view word = s.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
        if (!word.empty())
            out.push_back(word);
        if (end == std::string_view::npos)
            break;
        start = end + 1;
    }
    return out;
}

inline uid_t user_id(std::string_view word)
{
    if (const auto n = hugezero_tools::parse_number(word)) {
        if (*n > 0xfffffffeU)
            throw std::invalid_argument("uid " + std::string(word) + " is out of range");
        return static_cast<uid_t>(*n);
    }
    const std::string name(word);
    if (const passwd* p = ::getpwnam(name.c_str()))
        return p->pw_uid;
    throw std::invalid_argument("no such user \"" + name + "\"");
}

inline gid_t group_id(std::string_view word)
{
    if (const auto n = hugezero_tools::parse_number(word)) {
        if (*n > 0xfffffffeU)
            throw std::invalid_argument("gid " + std::string(word) + " is out of range");
        return static_cast<gid_t>(*n);
    }
    const std::string name(word);
    if (const group* g = ::getgrnam(name.c_str()))
        return g->gr_gid;
    throw std::invalid_argument("no such group \"" + name + "\"");
}

inline unsigned count(std::string_view value, unsigned min, unsigned max)
{
    const auto n = hugezero_tools::parse_number(value);
    if (!n || *n < min || *n > max)
        throw std::invalid_argument("expected a number from " + std::to_string(min) + " to " + std::to_string(max));
    return static_cast<unsigned>(*n);
}

using setter = std::function<void(std::string_view)>;

inline std::map<std::string, setter> daemon_keys(config& c)
{
    return {
        {"socket", [&](std::string_view v) {
             if (v.empty() || v.front() != '/')
                 throw std::invalid_argument("expected an absolute path");
             c.socket = std::string(v);
         }},
        {"socket_mode", [&](std::string_view v) {
             unsigned mode = 0;
             const auto [end, error] = std::from_chars(v.data(), v.data() + v.size(), mode, 8);
             if (v.empty() || error != std::errc() || end != v.data() + v.size() || mode > 0777)
                 throw std::invalid_argument("expected octal permissions such as 0660");
             c.socket_mode = mode;
         }},
        {"socket_group", [&](std::string_view v) { c.socket_group = group_id(v); }},
        {"metrics", [&](std::string_view v) {
             if (!(v == "off" || v.substr(0, 6) == "unix:/" || v.substr(0, 4) == "tcp:"))
                 throw std::invalid_argument("expected unix:/PATH, tcp:127.0.0.1:PORT or off");
             c.metrics = v == "off" ? std::string() : std::string(v);
         }},
        {"allow_users", [&](std::string_view v) {
             c.allow_users.clear();
             for (const auto word : split_list(v))
                 c.allow_users.push_back(user_id(word));
         }},
        {"allow_groups", [&](std::string_view v) {
             c.allow_groups.clear();
             for (const auto word : split_list(v))
                 c.allow_groups.push_back(group_id(word));
         }},
        {"ready", [&](std::string_view v) {
             if (v == "filled")
                 c.ready = ready_when::filled;
             else if (v == "listening")
                 c.ready = ready_when::listening;
             else
                 throw std::invalid_argument("expected filled or listening");
         }},
        {"max_clients", [&](std::string_view v) { c.max_clients = count(v, 1, 65536); }},
        {"max_leases_per_client", [&](std::string_view v) { c.max_leases_per_client = count(v, 1, 65536); }},
        {"prezero", [&](std::string_view v) {
             if (v != "auto" && v != "off")
                 throw std::invalid_argument("expected auto or off");
             c.prezero = v == "auto";
         }},
    };
}

inline std::map<std::string, setter> pool_keys(hugezero::pool_options& p)
{
    return {
        {"workers_per_node", [&](std::string_view v) { p.workers_per_node = count(v, 0, 1024); }},
        {"refill_rate", [&](std::string_view v) { p.refill_bytes_per_second = hugezero_tools::parse_bytes(v); }},
        {"batch", [&](std::string_view v) {
             p.batch_bytes = hugezero_tools::parse_bytes(v);
             if (p.batch_bytes == 0)
                 throw std::invalid_argument("must be at least one page");
         }},
        {"quiet_after_lease", [&](std::string_view v) { p.quiet_after_lease = hugezero_tools::parse_duration(v); }},
        {"retry_period", [&](std::string_view v) { p.retry_period = hugezero_tools::parse_duration(v); }},
    };
}

inline std::map<std::string, setter> reservoir_keys(hugezero::reservoir_options& r)
{
    return {
        {"node", [&](std::string_view v) { r.which.node = hugezero::node_id(count(v, 0, 4095)); }},
        {"page", [&](std::string_view v) { r.which.size = hugezero::page_size::parse(v); }},
        {"target", [&](std::string_view v) { r.target_bytes = hugezero_tools::parse_bytes(v); }},
        {"chunk", [&](std::string_view v) { r.chunk_bytes = hugezero_tools::parse_bytes(v); }},
        {"floor_pages", [&](std::string_view v) {
             const auto n = hugezero_tools::parse_number(v);
             if (!n)
                 throw std::invalid_argument("expected a number of pages");
             r.floor_pages = *n;
         }},
        {"cgroup", [&](std::string_view v) { r.cgroup = std::string(v); }},
        {"directory", [&](std::string_view v) { r.directory = std::string(v); }},
    };
}

} // namespace detail_config

/// Parses the text of a configuration file named @p file (for messages).
/// @throws config_error naming the file, the line and the key.
inline config parse_config(std::string_view text, const std::string& file)
{
    using namespace detail_config;
    config c;
    c.file = file;
    std::map<std::string, setter> keys;
    std::vector<std::string> seen;
    std::vector<std::string> sections;
    std::string section;
    int line_number = 0;
    const auto fail = [&](std::string_view key, const std::string& why) {
        return config_error(file + ":" + std::to_string(line_number) + ": " + (key.empty() ? "" : std::string(key) + ": ") + why);
    };
    while (!text.empty()) {
        ++line_number;
        const std::size_t end = text.find('\n');
        const std::string_view line = trim(text.substr(0, end));
        text = end == std::string_view::npos ? std::string_view() : text.substr(end + 1);
        if (line.empty() || line.front() == '#' || line.front() == ';')
            continue;
        if (line.front() == '[') {
            if (line.back() != ']')
                throw fail("", "a section header is [daemon], [pool] or [reservoir]");
            section = std::string(trim(line.substr(1, line.size() - 2)));
            seen.clear();
            if (section != "reservoir" && std::find(sections.begin(), sections.end(), section) != sections.end())
                throw fail("", "a second [" + section + "] section (only [reservoir] repeats)");
            sections.push_back(section);
            if (section == "daemon")
                keys = daemon_keys(c);
            else if (section == "pool")
                keys = pool_keys(c.pool);
            else if (section == "reservoir") {
                c.reservoirs.push_back({hugezero::reservoir_options{}, line_number});
                keys = reservoir_keys(c.reservoirs.back().options);
            } else
                throw fail("", "unknown section [" + section + "] (use [daemon], [pool] or [reservoir])");
            continue;
        }
        const std::size_t equals = line.find('=');
        if (equals == std::string_view::npos)
            throw fail("", "expected key = value, got \"" + std::string(line.substr(0, 80)) + "\"");
        const std::string key(trim(line.substr(0, equals)));
        const std::string_view value = trim(line.substr(equals + 1));
        if (section.empty())
            throw fail(key, "a key before any section ([daemon], [pool] or [reservoir])");
        const auto it = keys.find(key);
        if (it == keys.end()) {
            std::string known;
            for (const auto& [k, unused] : keys)
                known += (known.empty() ? "" : ", ") + k;
            throw fail(key, "unknown key in [" + section + "] (known: " + known + ")");
        }
        if (std::find(seen.begin(), seen.end(), key) != seen.end())
            throw fail(key, "given twice in this section");
        seen.push_back(key);
        try {
            it->second(value);
        } catch (const std::invalid_argument& e) {
            throw fail(key, "\"" + std::string(value.substr(0, 80)) + "\": " + e.what());
        }
    }
    for (const auto& r : c.reservoirs)
        c.pool.reservoirs.push_back(r.options);
    return c;
}

/// Sets [daemon] @p key of @p c to @p value as the file would (a command-line flag).
/// @throws config_error naming @p flag.
inline void set_daemon_key(config& c, const std::string& key, std::string_view value, const std::string& flag)
{
    auto keys = detail_config::daemon_keys(c);
    try {
        keys.at(key)(value);
    } catch (const std::invalid_argument& e) {
        throw config_error(flag + ": \"" + std::string(value.substr(0, 80)) + "\": " + e.what());
    }
}

/// Reads and parses @p path. @throws config_error naming it.
inline config load_config(const std::filesystem::path& path)
{
    std::ifstream in(path);
    if (!in)
        throw config_error(path.string() + ": cannot read it: " + std::strerror(errno));
    std::ostringstream text;
    text << in.rdbuf();
    return parse_config(text.str(), path.string());
}

/// Checks @p c against @p m: every reservoir's node and page size exist, no reservoir twice.
/// @throws config_error naming the file and the reservoir's line.
inline void check_against(const config& c, const hugezero::machine& m)
{
    for (std::size_t i = 0; i < c.reservoirs.size(); ++i) {
        const auto& r = c.reservoirs[i];
        const auto at = c.file + ":" + std::to_string(r.line) + ": [reservoir]: ";
        try {
            (void)m.topology().info(r.options.which);
        } catch (const std::invalid_argument& e) {
            throw config_error(at + e.what());
        }
        for (std::size_t j = 0; j < i; ++j)
            if (c.reservoirs[j].options.which == r.options.which)
                throw config_error(at + "a second reservoir for " + hugezero::to_string(r.options.which) + " (the first is at line "
                                   + std::to_string(c.reservoirs[j].line) + ")");
    }
}

} // namespace hugezerod

#endif
