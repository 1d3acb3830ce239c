// A hugezerod started by a test: its configuration in a temporary directory, its log in a
// file there (a pipe could fill and stall it), its socket and metrics socket beside them.
#ifndef HUGEZERO_TESTS_DAEMON_DAEMON_PROCESS_HPP
#define HUGEZERO_TESTS_DAEMON_DAEMON_PROCESS_HPP

#include <algorithm>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hugezerod/listeners.hpp"
#include "protocol/client.hpp"
#include "support/subprocess.hpp"
#include "support/temp_dir.hpp"
#include "support/threads.hpp"

namespace hugezero::test {

/// The text of a file.
inline std::string file_text(const std::filesystem::path& p)
{
    std::ifstream in(p);
    std::ostringstream out;
    out << in.rdbuf();
    return out.str();
}

/// Fetches @p path over HTTP from the Unix stream socket @p socket; returns the body (empty
/// on failure).
/// Runs @p ask (a client's requests) in a child process of uid and gid @p id: "served" if it
/// returned, the daemon's refusal as "<errno> <message>", or "setuid failed".
inline std::string asked_as(unsigned id, const std::function<void()>& ask)
{
    int result[2];
    if (::pipe2(result, O_CLOEXEC) != 0)
        throw std::system_error(errno, std::system_category(), "pipe2");
    const pid_t child = ::fork();
    if (child == 0) {
        ::close(result[0]);
        std::string answer = "setuid failed";
        if (::setgid(id) == 0 && ::setuid(id) == 0) {
            try {
                ask();
                answer = "served";
            } catch (const hugezerod::client_error& e) {
                answer = std::to_string(e.code()) + " " + e.what();
            }
        }
        (void)!::write(result[1], answer.data(), answer.size());
        ::_exit(0);
    }
    ::close(result[1]);
    std::string answer;
    char buffer[512];
    for (ssize_t n; (n = ::read(result[0], buffer, sizeof buffer)) > 0;)
        answer.append(buffer, static_cast<std::size_t>(n));
    ::close(result[0]);
    ::waitpid(child, nullptr, 0);
    return answer;
}

inline std::string http_get(const std::string& socket, const std::string& path = "/metrics")
{
    try {
        auto [s, error] = hugezerod::connect_unix(socket, SOCK_STREAM);
        if (error != 0)
            return {};
        const std::string request = "GET " + path + " HTTP/1.0\r\nHost: localhost\r\n\r\n";
        if (::send(s.get(), request.data(), request.size(), MSG_NOSIGNAL) < 0)
            return {};
        std::string response;
        char buffer[4096];
        for (ssize_t n; (n = ::recv(s.get(), buffer, sizeof buffer, 0)) > 0;)
            response.append(buffer, static_cast<std::size_t>(n));
        const std::size_t body = response.find("\r\n\r\n");
        return body == std::string::npos ? std::string() : response.substr(body + 4);
    } catch (const std::exception&) {
        return {};
    }
}

/// The value of the sample @p name (with its labels, exactly as printed) in metrics @p text.
inline std::optional<double> metric(const std::string& text, const std::string& name)
{
    std::istringstream lines(text);
    for (std::string line; std::getline(lines, line);)
        if (line.rfind(name + " ", 0) == 0)
            return std::stod(line.substr(name.size() + 1));
    return std::nullopt;
}

/// A socket standing in for systemd's NOTIFY_SOCKET: it keeps what the daemon sends.
class notify_socket {
public:
    notify_socket() : fd_(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)), path_((dir_.path() / "notify").string())
    {
        const sockaddr_un a = hugezerod::unix_address(path_);
        if (!fd_ || ::bind(fd_.get(), reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0)
            throw std::runtime_error("cannot bind the notify socket " + path_);
    }

    /// The daemon's environment entry.
    [[nodiscard]] std::string env() const { return "NOTIFY_SOCKET=" + path_; }

    /// Waits up to @p timeout (0: takes only what is queued) for a message holding @p needle;
    /// returns it, or empty. Every message received is kept (all()).
    std::string wait_for(std::string_view needle, std::chrono::milliseconds timeout)
    {
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        for (;;) {
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
            pollfd p{fd_.get(), POLLIN, 0};
            if (::poll(&p, 1, static_cast<int>(std::max<std::int64_t>(left.count(), 0))) != 1)
                return {};
            char buffer[4096];
            const ssize_t n = ::recv(fd_.get(), buffer, sizeof buffer, 0);
            if (n <= 0)
                continue;
            messages_.emplace_back(buffer, static_cast<std::size_t>(n));
            if (messages_.back().find(needle) != std::string::npos)
                return messages_.back();
        }
    }

    /// Every message received, each followed by '|'.
    [[nodiscard]] std::string all() const
    {
        std::string out;
        for (const auto& m : messages_)
            out += m + "|";
        return out;
    }

private:
    temp_dir dir_;
    hugezero::unique_fd fd_;
    std::string path_;
    std::vector<std::string> messages_;
};

/// A hugezerod serving the configuration written to dir()/hugezerod.conf.
class daemon_process {
public:
    /// Its [reservoir] sections and any other lines: the [daemon] section's socket and
    /// metrics keys come first, pointing into the directory.
    explicit daemon_process(const std::string& sections, const std::vector<std::string>& env = {},
                            const std::string& daemon_extra = "")
    {
        ::chmod(dir_.path().c_str(), 0755); // a peer of another uid may reach the socket
        write_config(sections, daemon_extra);
        start(env);
    }
    daemon_process(const daemon_process&) = delete;
    daemon_process& operator=(const daemon_process&) = delete;

    [[nodiscard]] std::filesystem::path dir() const { return dir_.path(); }
    [[nodiscard]] std::string socket() const { return (dir_.path() / "hugezerod.sock").string(); }
    [[nodiscard]] std::string metrics_socket() const { return (dir_.path() / "metrics.sock").string(); }
    [[nodiscard]] std::string config_path() const { return (dir_.path() / "hugezerod.conf").string(); }
    [[nodiscard]] pid_t pid() const { return process_->pid(); }
    [[nodiscard]] std::string log() const { return file_text(dir_.path() / "hugezerod.log"); }

    /// Rewrites the configuration (for a SIGHUP). A [daemon] section at the start of
    /// @p sections joins the one this writes (a file has one).
    void write_config(std::string sections, std::string daemon_extra = "")
    {
        const std::string daemon_header = "[daemon]\n";
        if (sections.rfind(daemon_header, 0) == 0) {
            const std::size_t next = sections.find("\n[", daemon_header.size() - 1);
            const std::size_t end = next == std::string::npos ? sections.size() : next + 1;
            daemon_extra += sections.substr(daemon_header.size(), end - daemon_header.size());
            sections.erase(0, end);
        }
        std::ofstream(config_path()) << "[daemon]\nsocket = " << socket() << "\nmetrics = unix:" << metrics_socket()
                                     << "\nsocket_mode = 0666\n" << daemon_extra << "\n" << sections;
    }

    /// Starts it (again); returns once its socket answers a status request.
    void start(const std::vector<std::string>& env = {})
    {
        // It dies with the test (PR_SET_PDEATHSIG through util-linux's setpriv): a test that
        // crashes must not leave a daemon holding huge pages behind.
        process_ = std::make_unique<child_process>(
            std::vector<std::string>{"/usr/bin/setpriv", "--pdeathsig", "KILL", "--", "/bin/sh", "-c",
                                     "exec \"$0\" --config \"$1\" 2>>\"$2\"", HUGEZERO_DAEMON, config_path(),
                                     (dir_.path() / "hugezerod.log").string()},
            env);
        (void)wait_until([&] {
            try {
                hugezerod::client c(socket());
                (void)c.status();
                return true;
            } catch (const std::exception&) {
                return ::kill(process_->pid(), 0) != 0 ? true : false; // it died: stop waiting
            }
        });
    }

    /// Whether it answered.
    [[nodiscard]] bool serving() const
    {
        try {
            hugezerod::client c(socket());
            (void)c.status();
            return true;
        } catch (const std::exception&) {
            return false;
        }
    }

    /// Waits until it says every reservoir is filled (or held).
    [[nodiscard]] bool wait_ready() const
    {
        return wait_until([&] { return status().daemon.at("ready") == "1"; }, std::chrono::seconds(30));
    }

    /// A status from a connection of its own.
    [[nodiscard]] hugezerod::protocol::status_reply status() const
    {
        hugezerod::client c(socket());
        return c.status();
    }

    /// A number of its first reservoir's status line.
    [[nodiscard]] std::uint64_t reservoir(const std::string& key) const { return std::stoull(status().reservoirs.at(0).at(key)); }

    /// Whether it is at rest: only the asking connection open, no job running (a recycle
    /// looks through /proc), the reservoir at its target and nothing out or waiting; then
    /// @p fds is its open fds (fds= of that status).
    [[nodiscard]] bool at_rest(std::uint64_t& fds) const
    {
        const auto s = status();
        const auto& r = s.reservoirs.at(0);
        fds = std::stoull(s.daemon.at("fds"));
        return s.daemon.at("clients") == "1" && s.daemon.at("jobs") == "0" && r.at("ready_pages") == r.at("target_pages")
               && r.at("filling_pages") == "0" && r.at("scrubbing_pages") == "0" && r.at("waiting_pages") == "0"
               && r.at("leases_out") == "0";
    }

    /// Its open fds at rest: the fewest of five statuses at rest (a pool thread may hold one
    /// for a moment, reading a counter), or 0 if it did not come to rest within 60 s.
    [[nodiscard]] std::uint64_t fds_at_rest() const
    {
        std::uint64_t fewest = ~std::uint64_t{0};
        for (int i = 0; i < 5; ++i) {
            std::uint64_t fds = 0;
            if (!wait_until([&] { return at_rest(fds); }, std::chrono::seconds(60)))
                return 0;
            fewest = std::min(fewest, fds);
        }
        return fewest;
    }

    /// Whether it comes to rest with at most @p fds open fds within 60 s (a leak never does).
    [[nodiscard]] bool fds_back_to(std::uint64_t fds) const
    {
        return wait_until([&] {
            std::uint64_t now = 0;
            return at_rest(now) && now <= fds;
        }, std::chrono::seconds(60));
    }

    /// What its fds are, one per line (for a message when the count is off).
    [[nodiscard]] std::string fd_listing() const
    {
        std::string out;
        std::error_code e;
        for (const auto& entry : std::filesystem::directory_iterator("/proc/" + std::to_string(pid()) + "/fd", e))
            out += entry.path().filename().string() + " -> " + std::filesystem::read_symlink(entry.path(), e).string() + "\n";
        return out;
    }

    /// Its metrics text.
    [[nodiscard]] std::string metrics() const { return http_get(metrics_socket()); }

    /// Sends @p signo and waits for it to end; its exit status.
    process_result stop(int signo = SIGTERM)
    {
        process_->send(signo);
        return process_->wait(std::chrono::seconds(60));
    }

    void send(int signo) const { process_->send(signo); }

private:
    temp_dir dir_;
    std::unique_ptr<child_process> process_;
};

} // namespace hugezero::test

#endif
