// hugezerod: keeps pre-zeroed huge-page memory ready for any VMM on the host and hands it out
// as leases (fds) over a Unix socket. docs/daemon.md; `hugezerod --help`.
//
//   hugezerod [--config FILE] [--socket PATH] [--metrics ADDRESS] [--ready filled|listening]
//   hugezerod --config FILE --check           check a configuration against this machine
//   hugezerod status [--socket PATH] [--json] [--wait] [--timeout DURATION]
//
// Exit status: 0; 1 when it cannot run (the message says why); 2 for a bad command line or
// configuration (the message names the file, line and key).
#include <csignal>
#include <functional>
#include <optional>
#include <string>

#include <sys/resource.h>
#include <sys/signalfd.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <CLI/CLI.hpp>

#include <hugezero/machine.hpp>
#include <hugezero/version.hpp>

#include "hugezerod/activation.hpp"
#include "hugezerod/check_command.hpp"
#include "hugezerod/config_file.hpp"
#include "hugezerod/logging.hpp"
#include "hugezerod/server.hpp"
#include "hugezerod/status_command.hpp"

namespace {

#ifndef HUGEZERO_DEFAULT_CONFIG
#define HUGEZERO_DEFAULT_CONFIG "/etc/hugezerod/hugezerod.conf"
#endif
constexpr const char* default_config = HUGEZERO_DEFAULT_CONFIG; // the install's sysconfdir

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
    hugezero::unique_fd signal_fd(::signalfd(-1, &signals, SFD_CLOEXEC | SFD_NONBLOCK));
    // Each lease out is an fd here: the soft limit (often 1024) goes up to the hard one.
    rlimit files{};
    if (::getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
        files.rlim_cur = files.rlim_max;
        (void)::setrlimit(RLIMIT_NOFILE, &files);
    }
    hugezero::machine m = hugezero::machine::open();
    hugezerod::check_against(c, m);
    bool activated = false;
    hugezero::unique_fd listener = hugezerod::protocol_socket(c, activated);
    // The socket file it made goes when it ends, whether it served or failed to start (the
    // server's metrics socket likewise); systemd's stays.
    const hugezerod::listening_socket socket_file({}, activated ? std::string() : c.socket);
    hugezerod::server_hooks hooks;
    hooks.log = [](hugezerod::level l, const std::string& message) { hugezerod::log_to_stderr(l, message, true); };
    hooks.notify = [](const std::string& text) { (void)sd_notify(0, text.c_str()); };
    hooks.overrides = overrides;
    {
        hugezerod::server s(std::move(c), std::move(m), std::move(listener), hooks);
        s.run(signal_fd.get());
    }
    return 0;
}

} // namespace

int main(int argc, char** argv)
{
    CLI::App app{"hugezerod: keeps pre-zeroed huge-page memory ready and leases it to VMMs over a Unix socket "
                 "(man hugezerod, man hugezerod.conf)"};
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
    app.set_version_flag("--version", std::string("hugezerod ") + hugezero::version_string, "print the version and exit");
    app.require_subcommand(0, 1);
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e) == 0 ? 0 : 2; // --help: 0; a bad command line: 2
    }
    try {
        if (status_command->parsed())
            return hugezerod::status_command(socket.value_or(hugezerod::protocol::default_socket), json, wait, hugezero_tools::parse_duration(timeout_text));
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
        return check_only ? hugezerod::check_command(c) : serve(std::move(c), overrides);
    } catch (const hugezerod::config_error& e) {
        hugezerod::log_to_stderr(hugezerod::level::error, e.what()); // a file's errors, a line each
        return 2;
    } catch (const std::invalid_argument& e) {
        hugezerod::log_to_stderr(hugezerod::level::error, e.what());
        return 2;
    } catch (const std::exception& e) {
        hugezerod::log_to_stderr(hugezerod::level::error, e.what());
        return 1;
    }
}
