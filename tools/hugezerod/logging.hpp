// Where hugezerod's messages and systemd notifications go: the hooks the server is given
// (main.cpp: stderr, with journald's priorities, and sd_notify; tests: their own).
#ifndef HUGEZERO_TOOLS_HUGEZEROD_LOGGING_HPP
#define HUGEZERO_TOOLS_HUGEZEROD_LOGGING_HPP

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>

namespace hugezerod {

struct config;

/// Log levels (syslog's, as journald reads them from a `<N>` prefix).
enum class level { error = 3, warning = 4, notice = 5, info = 6 };

/// Where the server's messages and systemd notifications go.
struct server_hooks {
    std::function<void(level, const std::string&)> log = [](level, const std::string&) {};
    std::function<void(const std::string&)> notify = [](const std::string&) {};
    std::function<void(config&)> overrides = [](config&) {}; ///< The command line's, applied to a reloaded file too.
};

/// Writes @p message on stderr: under systemd (journald on stderr) with a `<N>` prefix that is
/// the line's priority, else after `hugezerod: `.
inline void log_to_stderr(level l, const std::string& message)
{
    static const bool journal = std::getenv("JOURNAL_STREAM") != nullptr;
    const char* word = l == level::error ? "error: " : l == level::warning ? "warning: " : "";
    if (journal)
        std::fprintf(stderr, "<%d>%s%s\n", static_cast<int>(l), word, message.c_str());
    else
        std::fprintf(stderr, "hugezerod: %s%s\n", word, message.c_str());
}

} // namespace hugezerod

#endif
