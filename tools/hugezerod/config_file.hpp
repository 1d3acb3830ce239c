// Reading hugezerod's configuration file (hugezerod.conf(5): docs/man/hugezerod.conf.5.scd), and checking it
// against the machine. Every error names the file, the line and the key:
// "hugezerod.conf:12: target: ...".
#ifndef HUGEZERO_TOOLS_HUGEZEROD_CONFIG_FILE_HPP
#define HUGEZERO_TOOLS_HUGEZEROD_CONFIG_FILE_HPP

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <string_view>

#include <hugezero/hstate.hpp>
#include <hugezero/machine.hpp>

#include "hugezerod/config.hpp"
#include "hugezerod/config_keys.hpp"

namespace hugezerod {

/// Throws one config_error of every message of @p errors, a line each, if there are any.
inline void throw_all(const std::vector<std::string>& errors)
{
    std::string all;
    for (const auto& e : errors)
        all += (all.empty() ? "" : "\n") + e;
    if (!all.empty())
        throw config_error(all);
}

/// Parses the text of a configuration file named @p file (for messages).
/// @throws config_error naming the file, the line and the key of every error, a line each.
inline config parse_config(std::string_view text, const std::string& file)
{
    using namespace detail_config;
    config c;
    c.file = file;
    std::map<std::string, setter> keys;
    std::vector<std::string> seen;
    std::vector<std::string> sections;
    std::string section;
    bool bad_header = false; // the keys under a header that was refused are not read
    int line_number = 0;
    const auto fail = [&](std::string_view key, const std::string& why) {
        return config_error(file + ":" + std::to_string(line_number) + ": " + (key.empty() ? "" : std::string(key) + ": ") + why);
    };
    const auto read_header = [&](std::string_view line) {
        keys.clear();
        seen.clear();
        bad_header = true;
        if (line.back() != ']')
            throw fail("", "a section header is [daemon], [pool] or [reservoir]");
        section = std::string(trim(line.substr(1, line.size() - 2)));
        if (section != "reservoir" && std::find(sections.begin(), sections.end(), section) != sections.end())
            throw fail("", "a second [" + section + "] section (only [reservoir] repeats)");
        if (section == "daemon")
            keys = daemon_keys(c);
        else if (section == "pool")
            keys = pool_keys(c.pool);
        else if (section == "reservoir") {
            c.reservoirs.push_back({hugezero::reservoir_options{}, line_number});
            keys = reservoir_keys(c.reservoirs.back().options);
        } else
            throw fail("", "unknown section [" + section + "] (use [daemon], [pool] or [reservoir])");
        sections.push_back(section);
        bad_header = false;
    };
    const auto read_key = [&](std::string_view line) {
        const std::size_t equals = line.find('=');
        if (equals == std::string_view::npos)
            throw fail("", "expected key = value, got \"" + std::string(line.substr(0, 80)) + "\"");
        const std::string key(trim(line.substr(0, equals)));
        const std::string_view value = trim(line.substr(equals + 1));
        if (bad_header)
            return; // its header's error says it all
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
    };
    // Every line is read, its error kept, so that every error of the file shows at once.
    std::vector<std::string> errors;
    while (!text.empty()) {
        ++line_number;
        const std::size_t end = text.find('\n');
        const std::string_view line = trim(text.substr(0, end));
        text = end == std::string_view::npos ? std::string_view() : text.substr(end + 1);
        if (line.empty() || line.front() == '#' || line.front() == ';')
            continue;
        try {
            if (line.front() == '[')
                read_header(line);
            else
                read_key(line);
        } catch (const config_error& e) {
            errors.emplace_back(e.what());
        }
    }
    throw_all(errors);
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
/// @throws config_error naming the file and the reservoir's line of each error, a line each.
inline void check_against(const config& c, const hugezero::machine& m)
{
    std::vector<std::string> errors;
    for (std::size_t i = 0; i < c.reservoirs.size(); ++i) {
        const auto& r = c.reservoirs[i];
        const auto at = c.file + ":" + std::to_string(r.line) + ": [reservoir]: ";
        try {
            (void)m.topology().info(r.options.which);
        } catch (const std::invalid_argument& e) {
            errors.push_back(at + e.what());
        }
        for (std::size_t j = 0; j < i; ++j)
            if (c.reservoirs[j].options.which == r.options.which)
                errors.push_back(at + "a second reservoir for " + hugezero_tools::hstate_text(r.options.which) + " (the first is at line "
                                 + std::to_string(c.reservoirs[j].line) + ")");
    }
    throw_all(errors);
}

} // namespace hugezerod

#endif
