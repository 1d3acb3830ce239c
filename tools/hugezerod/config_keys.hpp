// hugezerod's configuration keys: for each section, its keys and how each value is read
// (config_file.hpp calls them).
#ifndef HUGEZERO_TOOLS_HUGEZEROD_CONFIG_KEYS_HPP
#define HUGEZERO_TOOLS_HUGEZEROD_CONFIG_KEYS_HPP

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
#include <hugezero/pool_options.hpp>

#include "common/units.hpp"
#include "hugezerod/config.hpp"

namespace hugezerod {

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
        {"trusted_users", [&](std::string_view v) {
             c.trusted_users.clear();
             for (const auto word : split_list(v))
                 c.trusted_users.push_back(user_id(word));
         }},
        {"admin_users", [&](std::string_view v) {
             c.admin_users.clear();
             for (const auto word : split_list(v))
                 c.admin_users.push_back(user_id(word));
         }},
        {"place_directories", [&](std::string_view v) {
             c.place_directories.clear();
             for (const auto word : split_list(v)) {
                 if (!protocol::valid_place(word))
                     throw std::invalid_argument("\"" + std::string(word) + "\": expected absolute paths without empty, . or .. components");
                 c.place_directories.emplace_back(word);
             }
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
        {"max_clients_per_user", [&](std::string_view v) { c.max_clients_per_user = count(v, 1, 65536); }},
        {"max_leases_per_user", [&](std::string_view v) { c.max_leases_per_user = count(v, 1, 1 << 20); }},
        {"max_cold_acquires_per_user", [&](std::string_view v) { c.max_cold_acquires_per_user = count(v, 1, 1024); }},
        {"max_bytes_per_user", [&](std::string_view v) { c.max_bytes_per_user = hugezero_tools::parse_bytes(v); }},
        {"idle_timeout", [&](std::string_view v) {
             c.idle_timeout = std::chrono::duration_cast<std::chrono::milliseconds>(hugezero_tools::parse_duration(v));
         }},
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
        {"recycle", [&](std::string_view v) {
             if (v != "off" && v != "trusted-peers")
                 throw std::invalid_argument("expected off or trusted-peers");
             r.recycle = v == "trusted-peers";
         }},
    };
}

} // namespace detail_config

} // namespace hugezerod

#endif
