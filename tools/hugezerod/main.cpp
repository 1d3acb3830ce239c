// hugezerod: keeps pre-zeroed huge-page memory ready for any VMM on the host and hands it out
// as leases (fds) over a Unix socket. docs/daemon.md; `hugezerod --help`.
//
//   hugezerod [--config FILE] [--socket PATH] [--metrics ADDRESS] [--ready filled|listening]
//   hugezerod --config FILE --check           check a configuration against this machine
//   hugezerod status [--socket PATH] [--json] [--wait] [--timeout DURATION]
//
// Exit status: 0; 1 when it cannot run (the message says why); 2 for a bad command line or
// configuration (the message names the file, line and key).
#include <chrono>
#include <csignal>
#include <functional>
#include <filesystem>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <string>
#include <thread>

#include <sys/resource.h>
#include <sys/signalfd.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <hugezero/machine.hpp>

#include "client.hpp"
#include "config.hpp"
#include "server.hpp"

namespace {

#ifndef HUGEZERO_DEFAULT_CONFIG
#define HUGEZERO_DEFAULT_CONFIG "/etc/hugezerod/hugezerod.conf"
#endif
constexpr const char* default_config = HUGEZERO_DEFAULT_CONFIG; // the install's sysconfdir

void log_line(hugezerod::level l, const std::string& message)
{
    // Under systemd (journald on stderr) a "<N>" prefix is the line's priority.
    static const bool journal = std::getenv("JOURNAL_STREAM") != nullptr;
    const char* word = l == hugezerod::level::error     ? "error: "
                       : l == hugezerod::level::warning ? "warning: "
                                                        : "";
    if (journal)
        std::fprintf(stderr, "<%d>%s%s\n", static_cast<int>(l), word, message.c_str());
    else
        std::fprintf(stderr, "hugezerod: %s%s\n", word, message.c_str());
}

// The protocol socket: systemd's (socket activation, LISTEN_FDS) or one made at the path.
hugezero_tools::owned_fd protocol_socket(const hugezerod::config& c, bool& activated)
{
    const int n = sd_listen_fds(1);
    if (n < 0)
        throw hugezerod::socket_error(std::string("LISTEN_FDS: ") + std::strerror(-n));
    activated = n > 0;
    if (n == 0)
        return hugezerod::listen_unix(c.socket, SOCK_SEQPACKET, c.socket_mode, c.socket_group);
    if (n > 1)
        throw hugezerod::socket_error("systemd passed " + std::to_string(n) + " sockets; hugezerod takes one (its .socket unit's ListenSequentialPacket=)");
    if (sd_is_socket_unix(SD_LISTEN_FDS_START, SOCK_SEQPACKET, 1, nullptr, 0) <= 0)
        throw hugezerod::socket_error("the socket systemd passed is not a listening Unix SOCK_SEQPACKET socket (ListenSequentialPacket=)");
    ::fcntl(SD_LISTEN_FDS_START, F_SETFD, FD_CLOEXEC);
    ::fcntl(SD_LISTEN_FDS_START, F_SETFL, ::fcntl(SD_LISTEN_FDS_START, F_GETFL) | O_NONBLOCK);
    return hugezero_tools::owned_fd(SD_LISTEN_FDS_START);
}

int serve(hugezerod::config c, const std::function<void(hugezerod::config&)>& overrides)
{
    // Blocked before any thread starts, so that every thread inherits it: the loop alone
    // takes them, from its signalfd.
    sigset_t signals;
    sigemptyset(&signals);
    for (const int s : {SIGHUP, SIGTERM, SIGINT})
        sigaddset(&signals, s);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);
    std::signal(SIGPIPE, SIG_IGN);
    hugezero_tools::owned_fd signal_fd(::signalfd(-1, &signals, SFD_CLOEXEC | SFD_NONBLOCK));
    // Each lease out is an fd here: the soft limit (often 1024) goes up to the hard one.
    rlimit files{};
    if (::getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
        files.rlim_cur = files.rlim_max;
        (void)::setrlimit(RLIMIT_NOFILE, &files);
    }
    hugezero::machine m = hugezero::machine::open();
    hugezerod::check_against(c, m);
    bool activated = false;
    hugezero_tools::owned_fd listener = protocol_socket(c, activated);
    // The socket file it made goes when it ends, whether it served or failed to start (the
    // server's metrics socket likewise); systemd's stays.
    const hugezerod::listening_socket socket_file({}, activated ? std::string() : c.socket);
    hugezerod::server_hooks hooks;
    hooks.log = log_line;
    hooks.notify = [](const std::string& text) { (void)sd_notify(0, text.c_str()); };
    hooks.overrides = overrides;
    {
        hugezerod::server s(std::move(c), std::move(m), std::move(listener), hooks);
        s.run(signal_fd.get());
    }
    return 0;
}

int check(const hugezerod::config& c)
{
    const hugezero::machine m = hugezero::machine::open();
    hugezerod::check_against(c, m);
    if (c.metrics.rfind("tcp:", 0) == 0) {
        try {
            (void)hugezerod::tcp_address(c.metrics);
        } catch (const hugezerod::socket_error& e) {
            throw hugezerod::config_error(c.file + ": metrics: " + e.what());
        }
    }
    for (const auto& r : c.reservoirs)
        for (const auto& dir : {r.options.cgroup, r.options.directory})
            if (!dir.empty() && !std::filesystem::is_directory(dir))
                throw hugezerod::config_error(c.file + ":" + std::to_string(r.line) + ": [reservoir]: " + dir.string()
                                              + " is not a directory");
    std::cout << c.file << ": ok: socket " << c.socket << ", metrics " << (c.metrics.empty() ? "off" : c.metrics) << ", "
              << c.reservoirs.size() << " reservoirs\n";
    for (const auto& r : c.reservoirs)
        std::cout << "  " << hugezero::to_string(r.options.which) << ": target " << r.options.target_bytes << " bytes, floor "
                  << r.options.floor_pages << " pages" << (r.options.cgroup.empty() ? "" : ", cgroup " + r.options.cgroup.string())
                  << (r.options.directory.empty() ? "" : ", directory " + r.options.directory.string()) << '\n';
    return 0;
}

nlohmann::json as_json(const std::map<std::string, std::string>& words)
{
    nlohmann::json out = nlohmann::json::object();
    for (const auto& [k, v] : words) {
        if (const auto n = hugezero_tools::parse_number(v))
            out[k] = *n;
        else
            out[k] = v;
    }
    return out;
}

bool all_settled(const hugezerod::protocol::status_reply& s) { return s.daemon.count("filled") != 0 && s.daemon.at("filled") == "1"; }

std::string reservoir_line(const std::map<std::string, std::string>& r)
{
    const auto get = [&](const char* k) { return r.count(k) != 0 ? r.at(k) : std::string("?"); };
    const double target = std::stod(get("target_pages") == "?" ? "0" : get("target_pages"));
    const double ready = std::stod(get("ready_pages") == "?" ? "0" : get("ready_pages"));
    char percent[16];
    std::snprintf(percent, sizeof percent, "%.0f%%", target > 0 ? 100.0 * ready / target : 100.0);
    return "node" + get("node") + " " + get("page_kib") + "kB: " + get("ready_pages") + "/" + get("target_pages") + " pages ("
           + percent + "), " + get("state") + ", " + get("leases_out") + " leases out, served " + get("warm_pages_served")
           + " warm and " + get("cold_pages_served") + " cold pages";
}

int status(const std::string& socket, bool json, bool wait, std::chrono::nanoseconds timeout)
{
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    hugezerod::client c(socket, std::chrono::seconds(30));
    auto s = c.status();
    while (wait && !all_settled(s)) {
        for (const auto& r : s.reservoirs)
            std::cerr << "hugezerod status: filling: " << reservoir_line(r) << '\n';
        if (std::chrono::steady_clock::now() > deadline) {
            std::cerr << "hugezerod status: the reservoirs did not fill within the timeout\n";
            return 1;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(500)); // a poll for a human, not a synchronisation
        s = c.status();
    }
    if (json) {
        nlohmann::json out{{"daemon", as_json(s.daemon)}, {"reservoirs", nlohmann::json::array()}};
        for (const auto& r : s.reservoirs)
            out["reservoirs"].push_back(as_json(r));
        std::cout << out.dump(2) << '\n';
        return 0;
    }
    const auto get = [&](const char* k) { return s.daemon.count(k) != 0 ? s.daemon.at(k) : std::string("?"); };
    std::cout << "hugezerod " << get("version") << ": " << (all_settled(s) ? "filled" : "filling") << ", " << get("clients")
              << " clients, " << get("leases") << " leases, pre-zeroing " << get("prezero") << '\n';
    for (const auto& r : s.reservoirs)
        std::cout << "  " << reservoir_line(r) << '\n';
    return 0;
}

} // namespace

int main(int argc, char** argv)
{
    CLI::App app{"hugezerod: keeps pre-zeroed huge-page memory ready and leases it to VMMs over a Unix socket "
                 "(docs/daemon.md)"};
    std::string config_file;
    std::optional<std::string> socket, metrics, ready;
    bool check_only = false;
    app.add_option("-c,--config", config_file, std::string("the configuration file (default ") + default_config + " if it exists)");
    app.add_option("--socket", socket, "the protocol's Unix socket (overrides [daemon] socket)");
    app.add_option("--metrics", metrics, "unix:/PATH, tcp:127.0.0.1:PORT or off (overrides [daemon] metrics)");
    app.add_option("--ready", ready, "when to tell systemd READY=1: filled or listening (overrides [daemon] ready)")
        ->check(CLI::IsMember({"filled", "listening"}));
    app.add_flag("--check", check_only, "check the configuration against this machine and exit (0: good, 2: not)");
    auto* status_command = app.add_subcommand("status", "show the daemon's reservoirs and leases");
    bool json = false, wait = false;
    std::string timeout_text = "10min";
    status_command->add_option("--socket", socket, "the daemon's socket");
    status_command->add_flag("--json", json, "print JSON");
    status_command->add_flag("--wait", wait, "show progress until the reservoirs are filled (or held)");
    status_command->add_option("--timeout", timeout_text, "give up waiting after this long (default 10min)");
    app.require_subcommand(0, 1);
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e) == 0 ? 0 : 2; // --help: 0; a bad command line: 2
    }
    try {
        if (status_command->parsed())
            return status(socket.value_or(hugezerod::config{}.socket), json, wait, hugezero_tools::parse_duration(timeout_text));
        if (config_file.empty() && ::access(default_config, F_OK) == 0)
            config_file = default_config;
        // The flags override the file, checked as its keys are, and again at each reload.
        const auto overrides = [socket, metrics, ready](hugezerod::config& c) {
            if (socket)
                hugezerod::set_daemon_key(c, "socket", *socket, "--socket");
            if (metrics)
                hugezerod::set_daemon_key(c, "metrics", *metrics, "--metrics");
            if (ready)
                hugezerod::set_daemon_key(c, "ready", *ready, "--ready");
        };
        hugezerod::config c = config_file.empty() ? hugezerod::config{} : hugezerod::load_config(config_file);
        overrides(c);
        return check_only ? check(c) : serve(std::move(c), overrides);
    } catch (const hugezerod::config_error& e) {
        log_line(hugezerod::level::error, e.what());
        return 2;
    } catch (const std::invalid_argument& e) {
        log_line(hugezerod::level::error, e.what());
        return 2;
    } catch (const std::exception& e) {
        log_line(hugezerod::level::error, e.what());
        return 1;
    }
}
