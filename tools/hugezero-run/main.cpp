// hugezero-run: asks hugezerod for a lease and runs a command (a VMM) on it. The lease is
// inherited as fd N (--fd, default 3); in the command's arguments {fd} becomes N, {path}
// becomes /proc/self/fd/N (or the lease's file path from a named reservoir), {bytes} its size.
//
//   hugezero-run --node 0 --size 8G -- qemu-system-x86_64 -m 8G
//       -object memory-backend-file,id=m,size=8G,mem-path={path},share=on -machine memory-backend=m ...
//
// The connection to the daemon is inherited too (as --hold-fd, default --fd + 1): the
// lease follows the command's process, and goes back to the daemon when it exits (emptied:
// its pages back to the kernel). The connection said hold first, so the command cannot use
// it, and the launcher's credentials, to ask for more: neither on it nor on a connection of
// its own (the daemon refuses the launcher's line of processes while it holds; the launcher is
// their subreaper) (--full-connection keeps it a protocol connection, for a command that
// speaks to the daemon itself). Exit status: the command's;
// 1 when no lease can be had (the message says why); 2 for a bad command line.
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <chrono>
#include <cstring>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <CLI/CLI.hpp>

#include <hugezero/page_size.hpp>
#include <hugezero/version.hpp>

#include "common/units.hpp"
#include "protocol/client.hpp"

namespace {

std::string substitute(std::string arg, const std::vector<std::pair<std::string, std::string>>& values)
{
    for (const auto& [key, value] : values)
        for (std::size_t at = arg.find(key); at != std::string::npos; at = arg.find(key, at + value.size()))
            arg.replace(at, key.size(), value);
    return arg;
}

// Moves @p fd to @p number (inheritable), or fails naming it.
void place(int fd, int number, const char* what)
{
    if (fd == number) {
        ::fcntl(fd, F_SETFD, 0);
        return;
    }
    if (::dup2(fd, number) < 0)
        throw std::runtime_error(std::string("cannot put the ") + what + " at fd " + std::to_string(number) + ": " + std::strerror(errno));
}

} // namespace

int main(int argc, char** argv)
{
    CLI::App app{"hugezero-run: runs a command on a lease of pre-zeroed huge-page memory from hugezerod (man hugezero-run)"};
    std::string socket = hugezerod::protocol::default_socket, size_text, page_text = "2M", name;
    unsigned node = 0;
    int lease_fd = 3;
    std::optional<int> hold_fd;
    bool allow_cold = false;
    std::optional<std::uint64_t> max_cold;
    bool quiet = false;
    bool full_connection = false;
    std::string timeout_text = "2min";
    std::vector<std::string> command;
    app.add_option("--socket", socket, "the daemon's socket")->capture_default_str();
    app.add_option("--node", node, "the NUMA node of the memory")->capture_default_str();
    app.add_option("--size", size_text, "the lease's size: 8G, 512M, ... (rounded up to whole pages)")->required();
    app.add_option("--page-size", page_text, "the huge page size: 2M or 1G")->capture_default_str();
    app.add_option("--name", name, "the lease's file name (in /proc/<pid>/maps; a named reservoir's file)");
    app.add_flag("--allow-cold", allow_cold, "take the pages the reservoir lacks cold (allocated and zeroed now, on the start path)");
    app.add_option("--max-cold", max_cold, "with --allow-cold: at most this many cold pages");
    app.add_option("--fd", lease_fd, "the fd number the command inherits the lease as")->capture_default_str()->check(CLI::Range(3, 1 << 20));
    app.add_option("--hold-fd", hold_fd, "the fd number the command inherits the daemon connection as (default: --fd + 1)")
        ->check(CLI::Range(3, 1 << 20));
    app.add_flag("--full-connection", full_connection,
                 "hand the command a connection that may still acquire and release (default: it only holds the lease)");
    app.add_flag("-q,--quiet", quiet, "say nothing about the lease");
    app.add_option("--timeout", timeout_text, "give up when the daemon has not answered within this long (a cold lease takes time)")
        ->capture_default_str();
    app.add_option("command", command, "the command and its arguments ({fd}, {path}, {bytes} substituted)")->required();
    app.set_version_flag("--version", std::string("hugezero-run ") + hugezero::version_string, "print the version and exit");
    app.allow_extras(false);
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e) == 0 ? 0 : 2; // --help: 0; a bad command line: 2
    }
    hugezerod::protocol::acquire_request r;
    std::chrono::milliseconds timeout{0};
    try {
        r.node = hugezero::node_id(node);
        r.page = hugezero::page_size::parse(page_text);
        r.bytes = hugezero_tools::parse_bytes(size_text);
        if (r.bytes == 0)
            throw std::invalid_argument("--size must be at least 1 byte");
        r.name = name;
        if (max_cold && !allow_cold)
            throw std::invalid_argument("--max-cold needs --allow-cold");
        timeout = std::chrono::duration_cast<std::chrono::milliseconds>(hugezero_tools::parse_duration(timeout_text));
        if (hold_fd && *hold_fd == lease_fd)
            throw std::invalid_argument("--hold-fd and --fd must differ");
        r.max_cold_pages = allow_cold ? max_cold : std::optional<std::uint64_t>(0);
    } catch (const std::invalid_argument& e) {
        std::cerr << "hugezero-run: " << e.what() << '\n';
        return 2;
    }
    try {
        hugezerod::client c(socket, timeout);
        hugezerod::granted_lease g = c.acquire(r);
        const auto& info = g.info;
        if (!quiet)
            std::cerr << "hugezero-run: lease " << info.id << ": " << hugezero_tools::count_text(info.pages, "page") << " of " << hugezero_tools::size_text(info.page_kib * 1024) << " on node "
                      << info.node << ", " << info.cold << " of them cold" << (info.cold > 0 ? " (allocated and zeroed just now)" : "")
                      << (info.path.empty() ? "" : ", " + info.path) << '\n';
        if (!full_connection) {
            // Whatever the command starts stays below it (orphans are reparented to it, not to
            // init), so the daemon can tell them all by their line and refuse them a connection
            // of their own with the launcher's credentials. The attribute survives exec.
            (void)::prctl(PR_SET_CHILD_SUBREAPER, 1UL, 0UL, 0UL, 0UL);
            try {
                (void)c.hold();
            } catch (const hugezerod::client_error& e) { // the lease goes back as we exit
                std::cerr << "hugezero-run: the daemon would not make the connection hold-only: " << e.what()
                          << (e.code() == EINVAL ? " (a daemon older than hold: --full-connection hands the command a full connection)" : "")
                          << '\n';
                return 1;
            }
        }
        const int connection = hold_fd.value_or(lease_fd + 1);
        // Both out of the way first: either target may be the other's number now. The copies
        // out of the way close at exec (FD_CLOEXEC), the placed ones stay.
        const int above = std::max({lease_fd, connection, 63}) + 1; // above both targets
        const int lease_high = ::fcntl(g.fd.get(), F_DUPFD_CLOEXEC, above);
        const int connection_high = ::fcntl(c.fd(), F_DUPFD_CLOEXEC, above);
        if (lease_high < 0 || connection_high < 0)
            throw std::runtime_error(std::string("cannot duplicate the lease's fd: ") + std::strerror(errno));
        place(lease_high, lease_fd, "lease");
        place(connection_high, connection, "daemon connection");
        const std::string path = info.path.empty() ? "/proc/self/fd/" + std::to_string(lease_fd) : info.path;
        const std::vector<std::pair<std::string, std::string>> values = {
            {"{fd}", std::to_string(lease_fd)}, {"{path}", path}, {"{bytes}", std::to_string(info.pages * info.page_kib * 1024)}};
        std::vector<std::string> args;
        for (const auto& a : command)
            args.push_back(substitute(a, values));
        std::vector<char*> argv_out;
        for (auto& a : args)
            argv_out.push_back(a.data());
        argv_out.push_back(nullptr);
        ::execvp(argv_out[0], argv_out.data());
        std::cerr << "hugezero-run: cannot run " << args[0] << ": " << std::strerror(errno) << '\n';
        return 127;
    } catch (const hugezerod::client_error& e) {
        std::cerr << "hugezero-run: no lease of " << size_text << " on node " << node << ": " << e.what()
                  << (e.code() == EAGAIN && !allow_cold ? " (--allow-cold takes the missing pages cold)" : "") << '\n';
        return 1;
    } catch (const std::exception& e) {
        std::cerr << "hugezero-run: " << e.what() << '\n';
        return 1;
    }
}
