// The QEMU recipe of docs/qemu.md, run for real: a lease from the pool becomes a VM's RAM.
//
// QEMU (Debian 12: 7.2) starts paused (-S) with the lease fd inherited as fd 100 and named
// /proc/self/fd/100 in a shared memory-backend-file. Over QMP (on an inherited socketpair: no
// path, no waiting for a socket file) we ask for its memory: the backend's size and mem-path,
// the guest's base memory. /proc/<qemu>/smaps shows the lease's memfd mapped with 2 MiB pages.
// Then the guest runs (its firmware starts) and its writes show up in the lease, as mapped by
// this test: the VM runs on the leased memory.
#include <doctest/doctest.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hugezero/hugezero.hpp>

#include "support/hugepages.hpp"
#include "support/hugetlbfs.hpp"
#include "support/json.hpp"
#include "support/sizes.hpp"
#include "support/skip.hpp"
#include "support/temp_dir.hpp"
#include "support/threads.hpp"

extern char** environ; // NOLINT

using namespace hugezero::literals;
using namespace std::chrono_literals;
using hugezero::node_id;
using hugezero::test::mib;
namespace json = hugezero::test::json;

namespace {

constexpr int lease_fd_in_qemu = 100;
constexpr int qmp_fd_in_qemu = 101;

std::optional<std::string> find_qemu()
{
#ifdef HUGEZERO_QEMU
    if (::access(HUGEZERO_QEMU, X_OK) == 0)
        return std::string(HUGEZERO_QEMU);
#endif
    for (const char* candidate : {"/usr/bin/qemu-system-x86_64", "/usr/local/bin/qemu-system-x86_64"})
        if (::access(candidate, X_OK) == 0)
            return std::string(candidate);
    return std::nullopt;
}

// KVM when this machine can give it to us, else TCG (slower, same memory path);
// $HUGEZERO_QEMU_ACCEL overrides (e.g. tcg, to test what a machine without KVM does).
std::string accelerator()
{
    if (const char* forced = std::getenv("HUGEZERO_QEMU_ACCEL"); forced != nullptr && *forced != '\0')
        return forced;
    const int fd = ::open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return "tcg";
    ::close(fd);
    return "kvm";
}

// The QEMU command line of docs/qemu.md, for a lease of `megabytes` MiB at `mem_path`
// (/proc/self/fd/100 for the lease inherited as fd 100, or a named reservoir's path).
std::vector<std::string> qemu_command(const std::string& qemu, std::uint64_t megabytes, const std::string& mem_path)
{
    const std::string size = std::to_string(megabytes) + "M";
    return {qemu,
            "-S",
            "-nographic",
            "-nodefaults",
            "-display",
            "none",
            "-accel",
            accelerator(),
            "-machine",
            "q35,memory-backend=ram0",
            "-m",
            size,
            "-object",
            "memory-backend-file,id=ram0,size=" + size + ",mem-path=" + mem_path + ",share=on",
            "-chardev",
            "socket,id=qmp,fd=" + std::to_string(qmp_fd_in_qemu),
            "-mon",
            "chardev=qmp,mode=control"};
}

// QEMU running with the lease as fd 100 and one end of a socketpair as fd 101; killed if the
// test ends before it quits.
class qemu_process {
public:
    qemu_process(const std::vector<std::string>& argv, int lease_fd, int qmp_fd, const std::string& log)
    {
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        // dup2 onto a new number clears FD_CLOEXEC there: only these two fds reach QEMU.
        posix_spawn_file_actions_adddup2(&actions, lease_fd, lease_fd_in_qemu);
        posix_spawn_file_actions_adddup2(&actions, qmp_fd, qmp_fd_in_qemu);
        posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
        posix_spawnattr_t attributes;
        posix_spawnattr_init(&attributes);
        sigset_t none;
        sigemptyset(&none);
        sigset_t all;
        sigfillset(&all);
        posix_spawnattr_setsigmask(&attributes, &none);
        posix_spawnattr_setsigdefault(&attributes, &all);
        posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
        std::vector<char*> args;
        for (const auto& a : argv)
            args.push_back(const_cast<char*>(a.c_str()));
        args.push_back(nullptr);
        const int rc = ::posix_spawn(&pid_, argv.at(0).c_str(), &actions, &attributes, args.data(), environ);
        posix_spawn_file_actions_destroy(&actions);
        posix_spawnattr_destroy(&attributes);
        if (rc != 0)
            throw std::system_error(rc, std::system_category(), "posix_spawn " + argv.at(0));
    }
    qemu_process(const qemu_process&) = delete;
    qemu_process& operator=(const qemu_process&) = delete;
    ~qemu_process()
    {
        if (pid_ > 0 && !reaped_) {
            ::kill(pid_, SIGKILL);
            int status = 0;
            ::waitpid(pid_, &status, 0);
        }
    }
    [[nodiscard]] pid_t pid() const noexcept { return pid_; }
    // Waits for the exit (with a deadline); returns the wait status.
    std::optional<int> wait_exit(std::chrono::milliseconds timeout)
    {
        int status = 0;
        const bool exited = hugezero::test::wait_until([&] { return ::waitpid(pid_, &status, WNOHANG) == pid_; }, timeout);
        if (!exited)
            return std::nullopt;
        reaped_ = true;
        return status;
    }

private:
    pid_t pid_ = -1;
    bool reaped_ = false;
};

// A QMP client on a connected stream socket: one JSON object per line.
class qmp_client {
public:
    explicit qmp_client(int fd) : fd_(fd) {}

    json::value read_message(std::chrono::milliseconds timeout = 20s)
    {
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        for (;;) {
            if (const auto end = buffer_.find('\n'); end != std::string::npos) {
                std::string line = buffer_.substr(0, end);
                buffer_.erase(0, end + 1);
                return json::parse(line);
            }
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
            if (left.count() <= 0)
                throw std::runtime_error("QMP: no message from QEMU in time; got so far: " + buffer_);
            pollfd p{fd_, POLLIN, 0};
            if (::poll(&p, 1, static_cast<int>(left.count())) < 0 && errno != EINTR)
                throw std::system_error(errno, std::system_category(), "poll QMP socket");
            if ((p.revents & (POLLIN | POLLHUP)) == 0)
                continue;
            char chunk[4096];
            const ssize_t n = ::read(fd_, chunk, sizeof chunk);
            if (n <= 0)
                throw std::runtime_error("QMP: QEMU closed the connection; got so far: " + buffer_);
            buffer_.append(chunk, static_cast<std::size_t>(n));
        }
    }

    // Sends a command and returns its "return" value (events in between are skipped).
    json::value execute(const std::string& command, const std::string& arguments = {})
    {
        std::string message = R"({"execute":")" + command + '"';
        if (!arguments.empty())
            message += R"(,"arguments":)" + arguments;
        message += "}\n";
        REQUIRE(::write(fd_, message.data(), message.size()) == static_cast<ssize_t>(message.size()));
        for (;;) {
            json::value reply = read_message();
            if (reply.has("error"))
                FAIL("QMP ", command, " failed: ", reply["error"]["desc"].as_string());
            if (reply.has("return"))
                return reply["return"];
        }
    }

private:
    int fd_;
    std::string buffer_;
};

// The smaps entry of the mapping of inode `inode` in process `pid`, named with `name`: its
// header line and fields.
std::string smaps_entry(pid_t pid, ino_t inode, const std::string& name)
{
    std::ifstream in("/proc/" + std::to_string(pid) + "/smaps");
    std::string line;
    std::string entry;
    bool inside = false;
    while (std::getline(in, line)) {
        const bool header = !line.empty() && line.find(':') > line.find(' ');
        if (header) {
            if (inside)
                break;
            std::istringstream fields(line);
            std::string range, perms, offset, device;
            unsigned long long node = 0;
            fields >> range >> perms >> offset >> device >> node;
            inside = node == inode && line.find(name) != std::string::npos;
        }
        if (inside)
            entry += line + '\n';
    }
    return entry;
}

bool any_nonzero(const std::byte* p, std::uint64_t length)
{
    for (std::uint64_t i = 0; i < length; ++i)
        if (p[i] != std::byte{0})
            return true;
    return false;
}

// Runs QEMU (paused) with @p lease as its RAM, opened at @p mem_path: QMP must report the leased
// file as the guest's RAM, QEMU must map it (shown as @p maps_name) with 2 MiB pages, and the
// guest's writes must land in it.
void check_vm_runs_on(const std::string& qemu, const hugezero::lease& lease, const std::string& mem_path,
                      const std::string& maps_name)
{
    const std::uint64_t megabytes = lease.size() / mib;
    struct stat lease_stat {};
    REQUIRE(::fstat(lease.fd(), &lease_stat) == 0);
    const auto memory = lease.map(); // the test's view of the guest's RAM

    int pair[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) == 0);
    hugezero::unique_fd ours(pair[0]);
    hugezero::unique_fd theirs(pair[1]);
    hugezero::test::temp_dir dir;
    const std::string log = (dir.path() / "qemu.log").string();
    const auto argv = qemu_command(qemu, megabytes, mem_path);
    std::string command_line;
    for (const auto& a : argv)
        command_line += a + ' ';
    MESSAGE("running: ", command_line);
    qemu_process vm(argv, lease.fd(), theirs.get(), log);
    theirs.reset();
    const auto qemu_log = [&] {
        std::ifstream in(log);
        return std::string(std::istreambuf_iterator<char>(in), {});
    };
    INFO("QEMU's output: ", qemu_log());

    qmp_client qmp(ours.get());
    const json::value greeting = qmp.read_message();
    REQUIRE(greeting.has("QMP"));
    qmp.execute("qmp_capabilities");
    CHECK(qmp.execute("query-status")["status"].as_string() == "prelaunch");

    // The memory backend is the leased file, of the lease's size, shared.
    const json::value memdevs = qmp.execute("query-memdev");
    REQUIRE(memdevs.as_array().size() == 1);
    const json::value& ram = memdevs.as_array()[0];
    CHECK(ram["id"].as_string() == "ram0");
    CHECK(ram["size"].as_u64() == megabytes * mib);
    CHECK(std::get<bool>(ram["share"].data));
    CHECK(qmp.execute("qom-get", R"({"path":"/objects/ram0","property":"mem-path"})").as_string()
          == mem_path);
    CHECK(qmp.execute("query-memory-size-summary")["base-memory"].as_u64() == megabytes * mib);

    // QEMU maps the leased memfd itself, with 2 MiB pages.
    const std::string entry = smaps_entry(vm.pid(), lease_stat.st_ino, maps_name);
    INFO("smaps: ", entry);
    REQUIRE_FALSE(entry.empty());
    CHECK(entry.find("rw-s") != std::string::npos);
    CHECK(entry.find("\nSize:             262144 kB\n") != std::string::npos);
    CHECK(entry.find("\nKernelPageSize:     2048 kB\n") != std::string::npos);

    // Let the guest run: its firmware writes the interrupt vectors and BIOS data area in
    // low memory, and those writes land in the lease, seen through our own mapping.
    CHECK_FALSE(any_nonzero(memory.data(), mib));
    qmp.execute("cont");
    CHECK(hugezero::test::wait_until([&] { return any_nonzero(memory.data(), mib); }, 30s));
    qmp.execute("quit");
    const auto status = vm.wait_exit(20s);
    REQUIRE(status.has_value());
    CHECK(WIFEXITED(*status));
    CHECK(WEXITSTATUS(*status) == 0);
}

} // namespace

TEST_SUITE("qemu")
{
    TEST_CASE("QEMU boots on a leased fd: QMP reports the leased file as guest RAM")
    {
        const auto qemu = find_qemu();
        HUGEZERO_SKIP_UNLESS_REQUIRED("qemu", !qemu, "qemu-system-x86_64 is not installed (Debian package qemu-system-x86)");
        HUGEZERO_SKIP_UNLESS_REQUIRED("qemu", !hugezero::test::running_as_root(), "needs root to reserve huge pages");
        constexpr std::uint64_t megabytes = 256;
        hugezero::test::hugepage_reservation reservation(2_MiB, megabytes / 2 + 8);
        HUGEZERO_SKIP_UNLESS_REQUIRED("qemu", !reservation.ok(), reservation.reason());

        hugezero::pool_options options;
        options.reservoirs.push_back({{node_id(0), 2_MiB}, megabytes * mib, 0, 0});
        hugezero::pool pool(hugezero::machine::open(), options);
        pool.start();
        REQUIRE(pool.wait_filled(20s));
        auto got = pool.acquire(node_id(0), 2_MiB, megabytes * mib);
        REQUIRE_MESSAGE(got, got.message);
        CHECK(got.lease.cold_pages() == 0);
        check_vm_runs_on(*qemu, got.lease, "/proc/self/fd/" + std::to_string(lease_fd_in_qemu), "/memfd:hugezero-");
    }

    TEST_CASE("QEMU boots on a named lease's path: mem-path= opens the file the pool named for the VM")
    {
        const auto qemu = find_qemu();
        HUGEZERO_SKIP_UNLESS_REQUIRED("qemu", !qemu, "qemu-system-x86_64 is not installed (Debian package qemu-system-x86)");
        HUGEZERO_SKIP_UNLESS_REQUIRED("qemu", !hugezero::test::running_as_root(), "needs root to reserve huge pages");
        constexpr std::uint64_t megabytes = 256;
        hugezero::test::hugepage_reservation reservation(2_MiB, megabytes / 2 + 8);
        HUGEZERO_SKIP_UNLESS_REQUIRED("qemu", !reservation.ok(), reservation.reason());
        const hugezero::test::hugetlbfs_mount mount(2_MiB);
        REQUIRE_MESSAGE(mount.ok(), mount.reason());

        hugezero::pool_options options;
        options.reservoirs.push_back({{node_id(0), 2_MiB}, megabytes * mib, 0, 0});
        options.reservoirs[0].directory = mount.path();
        hugezero::pool pool(hugezero::machine::open(), options);
        pool.start();
        REQUIRE(pool.wait_filled(20s));
        hugezero::acquire_options as_vm;
        as_vm.name = "vm-qemu";
        auto got = pool.acquire(hugezero::hstate{node_id(0), 2_MiB}, megabytes * mib, as_vm);
        REQUIRE_MESSAGE(got, got.message);
        CHECK(got.lease.cold_pages() == 0);
        REQUIRE(got.lease.path() == mount.path() / "vm-qemu");
        check_vm_runs_on(*qemu, got.lease, got.lease.path().string(), got.lease.path().string());
    }
}
