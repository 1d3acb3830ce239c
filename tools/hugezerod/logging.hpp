// Where hugezerod's messages and systemd notifications go: the hooks the server is given
// (main.cpp: stderr, with journald's priorities, and sd_notify; tests: their own).
#ifndef HUGEZERO_TOOLS_HUGEZEROD_LOGGING_HPP
#define HUGEZERO_TOOLS_HUGEZEROD_LOGGING_HPP

#include <chrono>
#include <cstdio>
#include <ctime>
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

/// Now as `2026-12-07T06:45:01.123+0000 `: the local time, to the millisecond, with its offset.
inline std::string timestamp_now()
{
    const auto now = std::chrono::system_clock::now();
    const std::time_t seconds = std::chrono::system_clock::to_time_t(now);
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
    std::tm local{};
    ::localtime_r(&seconds, &local);
    char date[32], zone[8];
    std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &local);
    std::strftime(zone, sizeof zone, "%z", &local);
    char out[48];
    std::snprintf(out, sizeof out, "%s.%03d%s ", date, static_cast<int>(ms), zone);
    return out;
}

/// Writes @p message on stderr, each of its lines (a file's errors come together) prefixed:
/// under systemd (journald on stderr, which stamps the time itself) with `<N>`, the line's
/// priority, else with `hugezerod: `, after the time if @p timed (the running daemon's log).
inline void log_to_stderr(level l, const std::string& message, bool timed = false)
{
    static const bool journal = std::getenv("JOURNAL_STREAM") != nullptr;
    const std::string stamp = timed && !journal ? timestamp_now() : std::string();
    const char* word = l == level::error ? "error: " : l == level::warning ? "warning: " : "";
    std::size_t start = 0;
    do {
        const std::size_t end = message.find('\n', start);
        const std::string line = message.substr(start, end == std::string::npos ? std::string::npos : end - start);
        if (journal)
            std::fprintf(stderr, "<%d>%s%s\n", static_cast<int>(l), word, line.c_str());
        else
            std::fprintf(stderr, "%shugezerod: %s%s\n", stamp.c_str(), word, line.c_str());
        start = end == std::string::npos ? std::string::npos : end + 1;
    } while (start != std::string::npos);
}

} // namespace hugezerod

#endif
