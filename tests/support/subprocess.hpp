// Running a program as a child process for contract tests: arguments, environment additions,
// stdout and stderr captured, a signal sent on cue, exit status and timing reported.
#ifndef HUGEZERO_TESTS_SUPPORT_SUBPROCESS_HPP
#define HUGEZERO_TESTS_SUPPORT_SUBPROCESS_HPP

#include <cerrno>
#include <chrono>
#include <csignal>
#include <fstream>
#include <functional>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ; // NOLINT

namespace hugezero::test {

struct process_result {
    int exit_code = -1;   // the exit status, or -1 if killed by a signal
    int signal = 0;       // the signal that killed it, or 0
    std::string out;
    std::string err;
};

// A running child with stdout and stderr going to pipes.
class child_process {
public:
    child_process(const std::vector<std::string>& argv, const std::vector<std::string>& extra_env = {})
    {
        int out_pipe[2];
        int err_pipe[2];
        if (::pipe2(out_pipe, O_CLOEXEC) != 0 || ::pipe2(err_pipe, O_CLOEXEC) != 0)
            throw std::system_error(errno, std::system_category(), "pipe2");
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_adddup2(&actions, out_pipe[1], STDOUT_FILENO);
        posix_spawn_file_actions_adddup2(&actions, err_pipe[1], STDERR_FILENO);
        std::vector<char*> args;
        for (const auto& a : argv)
            args.push_back(const_cast<char*>(a.c_str()));
        args.push_back(nullptr);
        std::vector<std::string> env_storage;
        for (char** e = environ; *e != nullptr; ++e)
            env_storage.emplace_back(*e);
        for (const auto& e : extra_env)
            env_storage.push_back(e);
        std::vector<char*> env;
        for (auto& e : env_storage)
            env.push_back(e.data());
        env.push_back(nullptr);
        // The child starts with the default signal mask and dispositions, whatever the test's.
        posix_spawnattr_t attributes;
        posix_spawnattr_init(&attributes);
        sigset_t empty;
        sigemptyset(&empty);
        sigset_t all;
        sigfillset(&all);
        posix_spawnattr_setsigmask(&attributes, &empty);
        posix_spawnattr_setsigdefault(&attributes, &all);
        posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
        const int rc = ::posix_spawn(&pid_, argv.at(0).c_str(), &actions, &attributes, args.data(), env.data());
        posix_spawn_file_actions_destroy(&actions);
        posix_spawnattr_destroy(&attributes);
        ::close(out_pipe[1]);
        ::close(err_pipe[1]);
        out_ = out_pipe[0];
        err_ = err_pipe[0];
        if (rc != 0)
            throw std::system_error(rc, std::system_category(), "posix_spawn " + argv.at(0));
    }
    child_process(const child_process&) = delete;
    child_process& operator=(const child_process&) = delete;
    ~child_process()
    {
        if (pid_ > 0 && !reaped_) {
            ::kill(pid_, SIGKILL);
            int status = 0;
            ::waitpid(pid_, &status, 0);
        }
        ::close(out_);
        ::close(err_);
    }

    [[nodiscard]] pid_t pid() const noexcept { return pid_; }

    // Whether the child has blocked @p signo (it reads it from a signalfd then): the cue that it
    // is ready to handle it, read from /proc rather than guessed with a sleep.
    [[nodiscard]] bool blocks_signal(int signo) const
    {
        std::ifstream status("/proc/" + std::to_string(pid_) + "/status");
        std::string line;
        while (std::getline(status, line))
            if (line.rfind("SigBlk:", 0) == 0) {
                const unsigned long long mask = std::stoull(line.substr(7), nullptr, 16);
                return ((mask >> (signo - 1)) & 1ULL) != 0;
            }
        return false;
    }

    void send(int signo) const { ::kill(pid_, signo); }

    // Reads both pipes to the end and reaps the child; fails if it takes longer than @p timeout.
    process_result wait(std::chrono::milliseconds timeout = std::chrono::seconds(60))
    {
        process_result result;
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        bool out_open = true;
        bool err_open = true;
        while (out_open || err_open) {
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
            if (left.count() <= 0)
                throw std::runtime_error("child process did not finish in time");
            pollfd fds[2] = {{out_open ? out_ : -1, POLLIN, 0}, {err_open ? err_ : -1, POLLIN, 0}};
            if (::poll(fds, 2, static_cast<int>(left.count())) < 0 && errno != EINTR)
                throw std::system_error(errno, std::system_category(), "poll");
            char buffer[4096];
            if (out_open && (fds[0].revents & (POLLIN | POLLHUP)) != 0) {
                const ssize_t n = ::read(out_, buffer, sizeof buffer);
                if (n > 0)
                    result.out.append(buffer, static_cast<std::size_t>(n));
                else
                    out_open = false;
            }
            if (err_open && (fds[1].revents & (POLLIN | POLLHUP)) != 0) {
                const ssize_t n = ::read(err_, buffer, sizeof buffer);
                if (n > 0)
                    result.err.append(buffer, static_cast<std::size_t>(n));
                else
                    err_open = false;
            }
        }
        int status = 0;
        ::waitpid(pid_, &status, 0);
        reaped_ = true;
        if (WIFEXITED(status))
            result.exit_code = WEXITSTATUS(status);
        else if (WIFSIGNALED(status))
            result.signal = WTERMSIG(status);
        return result;
    }

private:
    pid_t pid_ = -1;
    int out_ = -1;
    int err_ = -1;
    bool reaped_ = false;
};

inline process_result run_process(const std::vector<std::string>& argv, const std::vector<std::string>& extra_env = {})
{
    child_process child(argv, extra_env);
    return child.wait();
}

} // namespace hugezero::test

#endif
