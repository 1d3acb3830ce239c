// The FUSE emulator itself (tests/emulator/fuse_sysfs.hpp), checked with raw system calls: what a
// program sees through the kernel must be what kernfs gives for /sys (ABI.md §3): every pread
// reaches the file system, a zeroing write blocks in the kernel and several writers run at once,
// a signal to a writer ends its write with EINTR at a page boundary (FUSE_INTERRUPT), poll
// reports POLLPRI|POLLERR from a change until the next read at offset 0, and so on. Then the
// standalone program. The other emulator suites run hugezero's own code through it.
#include <doctest/doctest.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <fstream>
#include <string>
#include <thread>

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hugezero/hugezero.hpp>

#include "emulator/fuse_sysfs.hpp"
#include "support/hstates.hpp"
#include "support/subprocess.hpp"
#include "support/temp_dir.hpp"
#include "support/threads.hpp"

using namespace hugezero::literals;
using namespace std::chrono_literals;
using hugezero::hstate;
using hugezero::node_id;
using hugezero::unique_fd;
using clock_type = std::chrono::steady_clock;
using hugezero::test::node0_1g;
using hugezero::test::node0_2m;
using hugezero::test::node1_2m;

namespace {

std::string attribute(const hstate& h, std::string_view name)
{
    return hugezero::detail::paths::join(hugezero::detail::paths::node_hstate_dir(h), name);
}

// A simulated kernel mounted in a temporary directory; files are opened with raw open(2).
struct mounted {
    explicit mounted(hugezero::sim::machine_builder builder) : kernel(builder.build()), mount(kernel, dir.path()) {}
    std::shared_ptr<hugezero::sim::kernel> kernel;
    hugezero::test::temp_dir dir;
    hugezero::test::fuse_sysfs mount;

    [[nodiscard]] std::string path(const std::string& relative) const { return (dir.path() / relative).string(); }
    [[nodiscard]] unique_fd open(const std::string& relative, int flags) const
    {
        return unique_fd(::open(path(relative).c_str(), flags | O_CLOEXEC));
    }
};

// The whole content at offset 0, or "error <errno>".
std::string pread_all(int fd)
{
    char buffer[4097];
    const ssize_t n = ::pread(fd, buffer, sizeof buffer, 0);
    return n < 0 ? "error " + std::to_string(errno) : std::string(buffer, static_cast<std::size_t>(n));
}

// What poll(2) reports for @p fd at once, asking for everything kernfs can report.
short poll_now(int fd)
{
    pollfd p{fd, POLLIN | POLLOUT | POLLPRI, 0};
    REQUIRE(::poll(&p, 1, 0) >= 0);
    return p.revents;
}

bool mounted_at(const std::filesystem::path& where)
{
    std::ifstream mounts("/proc/mounts");
    std::string device;
    std::string point;
    std::string type;
    std::string rest;
    while (mounts >> device >> point >> type && std::getline(mounts, rest))
        if (point == where.string())
            return type == "fuse.hugezero-sysfs";
    return false;
}

// A handler for SIGUSR1 that does nothing, installed without SA_RESTART for one scope, so that a
// signal makes a blocked system call return EINTR.
class no_op_sigusr1 {
public:
    no_op_sigusr1()
    {
        struct sigaction action {};
        action.sa_handler = [](int) {};
        sigemptyset(&action.sa_mask);
        REQUIRE(::sigaction(SIGUSR1, &action, &previous_) == 0);
    }
    no_op_sigusr1(const no_op_sigusr1&) = delete;
    no_op_sigusr1& operator=(const no_op_sigusr1&) = delete;
    ~no_op_sigusr1() { ::sigaction(SIGUSR1, &previous_, nullptr); }

private:
    struct sigaction previous_ {};
};

// A write made in a thread of its own, whose result and duration are kept.
class background_write {
public:
    background_write(int fd, std::string request)
        : thread_([this, fd, request] {
              handle_ = ::pthread_self();
              started_ = true;
              const auto start = clock_type::now();
              result_ = ::write(fd, request.data(), request.size());
              error_ = errno;
              took_ = clock_type::now() - start;
          })
    {
        REQUIRE(hugezero::test::wait_until([this] { return started_.load(); }));
    }
    void signal(int signo) { ::pthread_kill(handle_, signo); }
    void join() { thread_.join(); }
    [[nodiscard]] ssize_t result() const { return result_; }
    [[nodiscard]] int error() const { return error_; }
    [[nodiscard]] clock_type::duration took() const { return took_; }

private:
    std::atomic<bool> started_{false};
    pthread_t handle_{};
    ssize_t result_ = 0;
    int error_ = 0;
    clock_type::duration took_{};
    std::thread thread_; // last: the members above exist before it starts
};

} // namespace

TEST_SUITE("emulator")
{
    TEST_CASE("the file system is mounted as fuse.hugezero-sysfs and gone after unmount")
    {
        hugezero::test::temp_dir dir;
        {
            hugezero::test::fuse_sysfs mount(hugezero::sim::machine_builder().pages(2_MiB, 4).build(), dir.path());
            CHECK(mounted_at(dir.path()));
            CHECK(std::filesystem::is_directory(dir.path() / "devices/system/node/node0/hugepages/hugepages-2048kB"));
            mount.unmount();
            CHECK_FALSE(mount);
            CHECK_FALSE(mounted_at(dir.path()));
        }
        CHECK(std::filesystem::is_empty(dir.path()));
    }

    TEST_CASE("every pread at offset 0 reaches the file system: no page cache hides a change")
    {
        mounted m(hugezero::sim::machine_builder().pages(2_MiB, 8));
        const unique_fd fd = m.open(attribute(node0_2m, "free_hugepages"), O_RDONLY);
        REQUIRE(fd);
        CHECK(pread_all(fd.get()) == "8\n");
        const auto reads = m.mount.counts().reads;
        m.kernel->allocate(node0_2m, 3);
        CHECK(pread_all(fd.get()) == "5\n");
        CHECK(pread_all(fd.get()) == "5\n");
        CHECK(m.mount.counts().reads == reads + 2);
        struct stat st {};
        REQUIRE(::fstat(fd.get(), &st) == 0);
        CHECK(st.st_size == 4096); // as sysfs reports any attribute
        CHECK((st.st_mode & 0777) == 0444);
    }

    TEST_CASE("a zeroing write blocks in the kernel for the zeroing time, and writers of one attribute run at once")
    {
        mounted m(hugezero::sim::machine_builder().pages(1_GiB, 4).page_cost(1_GiB, 100ms).without_page_size(2_MiB));
        const std::string zeroable = attribute(node0_1g, "zeroable_hugepages");
        const unique_fd first = m.open(zeroable, O_WRONLY);
        const unique_fd second = m.open(zeroable, O_WRONLY);
        REQUIRE(first);
        REQUIRE(second);
        background_write a(first.get(), "2");
        background_write b(second.get(), "2");
        // Both are in the kernel at once: kernfs does not serialise different open files.
        CHECK(hugezero::test::wait_until([&] { return m.kernel->counts(node0_1g).zeroing == 2; }, 5s));
        a.join();
        b.join();
        CHECK(a.result() == 1);
        CHECK(b.result() == 1);
        CHECK(a.took() >= 190ms);
        CHECK(b.took() >= 190ms);
        CHECK(m.kernel->counts(node0_1g).zeroed == 4);
        CHECK(m.mount.counts().writes == 2);
    }

    TEST_CASE("a signal to a blocked writer reaches the file system as FUSE_INTERRUPT: EINTR at a page boundary")
    {
        mounted m(hugezero::sim::machine_builder().pages(1_GiB, 8).page_cost(1_GiB, 50ms).without_page_size(2_MiB));
        const no_op_sigusr1 handler;
        const unique_fd fd = m.open(attribute(node0_1g, "zeroable_hugepages"), O_WRONLY);
        REQUIRE(fd);
        background_write w(fd.get(), "8");
        REQUIRE(hugezero::test::wait_until([&] { return m.kernel->counts(node0_1g).zeroed >= 1; }, 5s));
        const auto signalled_at = clock_type::now();
        w.signal(SIGUSR1);
        w.join();
        const auto latency = clock_type::now() - signalled_at;
        MESSAGE("write returned " << std::chrono::duration<double, std::milli>(latency).count() << " ms after the signal");
        CHECK(w.result() == -1);
        CHECK(w.error() == EINTR);
        CHECK(latency < 50ms + 10ms + hugezero::test::scheduling_slack); // the page in progress, then the interrupted reply
        CHECK(m.mount.counts().interrupted_writes == 1);
        const auto stats = m.kernel->statistics(node0_1g);
        CHECK(stats.writes_interrupted == 1);
        CHECK(m.kernel->counts(node0_1g).zeroing == 0);
        CHECK(m.kernel->counts(node0_1g).zeroed == stats.pages_zeroed_by_writes);
        CHECK(stats.pages_zeroed_by_writes < 8);
    }

    TEST_CASE("the other signal behaviours of ABI.md: success with partial progress, or a restart")
    {
        for (const auto policy : {hugezero::sim::signal_policy::partial_success, hugezero::sim::signal_policy::restart}) {
            CAPTURE(static_cast<int>(policy));
            mounted m(hugezero::sim::machine_builder().pages(1_GiB, 6).page_cost(1_GiB, 40ms).on_signal(policy).without_page_size(2_MiB));
            const no_op_sigusr1 handler;
            const unique_fd fd = m.open(attribute(node0_1g, "zeroable_hugepages"), O_WRONLY);
            REQUIRE(fd);
            background_write w(fd.get(), "3");
            REQUIRE(hugezero::test::wait_until([&] { return m.kernel->counts(node0_1g).zeroed >= 1; }, 5s));
            w.signal(SIGUSR1);
            w.join();
            CHECK(w.result() == 1); // a success either way: only the counter tells what was done
            const auto stats = m.kernel->statistics(node0_1g);
            if (policy == hugezero::sim::signal_policy::partial_success) {
                CHECK(stats.writes_interrupted == 1);
                CHECK(stats.pages_zeroed_by_writes < 3);
            } else {
                CHECK(stats.writes_restarted == 1); // FUSE interrupts a request once: one restart
                CHECK(stats.pages_zeroed_by_writes > 3);
            }
        }
    }

    TEST_CASE("poll follows kernfs: POLLPRI and POLLERR from a change until a read at offset 0")
    {
        mounted m(hugezero::sim::machine_builder().in_use_pages(2_MiB, 4));
        const unique_fd fd = m.open(attribute(node0_2m, "zeroable_hugepages"), O_RDONLY);
        REQUIRE(fd);
        const short always = POLLIN | POLLOUT;
        const short changed = POLLIN | POLLOUT | POLLPRI | POLLERR;
        CHECK(poll_now(fd.get()) == changed); // a fresh file polls as changed until read once
        CHECK(pread_all(fd.get()) == "0\n");
        CHECK(poll_now(fd.get()) == always);
        m.kernel->release(node0_2m, 2);
        CHECK(poll_now(fd.get()) == changed);
        CHECK(poll_now(fd.get()) == changed); // until re-read
        // A read that does not start at offset 0 does not re-arm (kernfs re-arms in show()).
        char byte = 0;
        CHECK(::pread(fd.get(), &byte, 1, 1) == 1);
        CHECK(byte == '\n');
        CHECK(poll_now(fd.get()) == changed);
        CHECK(pread_all(fd.get()) == "2\n");
        CHECK(poll_now(fd.get()) == always);
        // Another open file of the same attribute has its own state.
        const unique_fd other = m.open(attribute(node0_2m, "zeroable_hugepages"), O_RDONLY);
        CHECK(poll_now(other.get()) == changed);
        CHECK(poll_now(fd.get()) == always);
    }

    TEST_CASE("epoll: level-triggered EPOLLPRI repeats until re-read, edge-triggered fires once per change")
    {
        mounted m(hugezero::sim::machine_builder().in_use_pages(2_MiB, 8));
        const std::string zeroable = attribute(node0_2m, "zeroable_hugepages");
        const unique_fd level = m.open(zeroable, O_RDONLY);
        const unique_fd edge = m.open(zeroable, O_RDONLY);
        (void)pread_all(level.get());
        (void)pread_all(edge.get());
        const unique_fd level_ep(::epoll_create1(EPOLL_CLOEXEC));
        const unique_fd edge_ep(::epoll_create1(EPOLL_CLOEXEC));
        epoll_event registration{};
        registration.events = EPOLLPRI;
        REQUIRE(::epoll_ctl(level_ep.get(), EPOLL_CTL_ADD, level.get(), &registration) == 0);
        registration.events = EPOLLPRI | EPOLLET;
        REQUIRE(::epoll_ctl(edge_ep.get(), EPOLL_CTL_ADD, edge.get(), &registration) == 0);
        epoll_event got{};
        CHECK(::epoll_wait(level_ep.get(), &got, 1, 0) == 0);
        CHECK(::epoll_wait(edge_ep.get(), &got, 1, 0) == 0);
        // A change from another thread wakes a blocked epoll_wait (fuse_lowlevel_notify_poll).
        std::jthread releaser([&] {
            std::this_thread::sleep_for(50ms); // so that the wait below really blocks first
            m.kernel->release(node0_2m, 1);
        });
        REQUIRE(::epoll_wait(level_ep.get(), &got, 1, 5000) == 1);
        CHECK((got.events & EPOLLPRI) != 0);
        CHECK(m.mount.counts().poll_notifications >= 1);
        CHECK(::epoll_wait(level_ep.get(), &got, 1, 0) == 1); // level-triggered: again
        CHECK(::epoll_wait(edge_ep.get(), &got, 1, 0) == 1);
        CHECK(::epoll_wait(edge_ep.get(), &got, 1, 0) == 0);  // edge-triggered: once
        CHECK(pread_all(level.get()) == "1\n");
        CHECK(::epoll_wait(level_ep.get(), &got, 1, 0) == 0); // re-armed
        m.kernel->release(node0_2m, 1);
        CHECK(::epoll_wait(edge_ep.get(), &got, 1, 5000) == 1);
        CHECK(::epoll_wait(level_ep.get(), &got, 1, 5000) == 1);
    }

    TEST_CASE("kernfs serialises one open file: a read waits behind a long write on the same fd")
    {
        mounted m(hugezero::sim::machine_builder().pages(1_GiB, 2).page_cost(1_GiB, 300ms).without_page_size(2_MiB));
        const std::string zeroable = attribute(node0_1g, "zeroable_hugepages");
        const unique_fd shared = m.open(zeroable, O_RDWR);
        const unique_fd separate = m.open(zeroable, O_RDONLY);
        REQUIRE(shared);
        background_write w(shared.get(), "2");
        REQUIRE(hugezero::test::wait_until([&] { return m.kernel->counts(node0_1g).zeroing == 1; }, 5s));
        auto start = clock_type::now();
        CHECK(pread_all(separate.get()) == "1\n"); // one page taken, one left: at once
        CHECK(clock_type::now() - start < 40ms + hugezero::test::scheduling_slack);
        start = clock_type::now();
        CHECK(pread_all(shared.get()) == "0\n"); // after the write
        CHECK(clock_type::now() - start >= 50ms);
        w.join();
        CHECK(w.result() == 1);
    }

    TEST_CASE("opening a read-only attribute for writing fails with EACCES, even for root")
    {
        mounted m(hugezero::sim::machine_builder().pages(2_MiB, 4));
        for (const char* name : {"free_hugepages", "nr_hugepages", "surplus_hugepages"}) {
            CAPTURE(name);
            errno = 0;
            CHECK_FALSE(m.open(attribute(node0_2m, name), O_WRONLY));
            CHECK(errno == EACCES);
        }
        CHECK(m.open(attribute(node0_2m, "zeroable_hugepages"), O_WRONLY));
    }

    TEST_CASE("planned faults reach the caller through the kernel with their errno")
    {
        mounted m(hugezero::sim::machine_builder().pages(2_MiB, 4));
        const std::string zeroable = attribute(node0_2m, "zeroable_hugepages");
        m.kernel->fail_next(zeroable, hugezero::sim::operation::open, EPERM);
        errno = 0;
        CHECK_FALSE(m.open(zeroable, O_RDONLY));
        CHECK(errno == EPERM);
        const unique_fd fd = m.open(zeroable, O_RDWR);
        REQUIRE(fd);
        m.kernel->fail_next(zeroable, hugezero::sim::operation::read, EIO);
        CHECK(pread_all(fd.get()) == "error " + std::to_string(EIO));
        CHECK(pread_all(fd.get()) == "4\n");
        m.kernel->fail_next(zeroable, hugezero::sim::operation::write, ENOMEM);
        CHECK(::write(fd.get(), "1", 1) == -1);
        CHECK(errno == ENOMEM);
        CHECK(::write(fd.get(), "1", 1) == 1);
        CHECK(::write(fd.get(), "9", 1) == -1); // more than is zeroable
        CHECK(errno == EINVAL);
        CHECK(::write(fd.get(), "max", 3) == 3);
        CHECK(pread_all(fd.get()) == "0\n");
    }

    TEST_CASE("an open attribute whose node goes offline fails with ENODEV, also after the node comes back")
    {
        mounted m(hugezero::sim::machine_builder().nodes(2).pages(2_MiB, 4));
        const std::string zeroable = attribute(node1_2m, "zeroable_hugepages");
        const unique_fd before = m.open(zeroable, O_RDWR);
        REQUIRE(before);
        m.kernel->set_online(node_id(1), false);
        CHECK_FALSE(std::filesystem::exists(m.path(zeroable)));
        CHECK(pread_all(before.get()) == "error " + std::to_string(ENODEV));
        CHECK(::write(before.get(), "1", 1) == -1);
        CHECK(errno == ENODEV);
        CHECK((poll_now(before.get()) & POLLPRI) != 0); // as kernfs_fop_poll on a removed node
        m.kernel->set_online(node_id(1), true);
        CHECK(pread_all(before.get()) == "error " + std::to_string(ENODEV)); // a new node, not this one
        const unique_fd after = m.open(zeroable, O_RDONLY);
        REQUIRE(after);
        CHECK(pread_all(after.get()) == "4\n");
    }

    TEST_CASE("unmounting while a file is still open does not hang: the file then fails")
    {
        auto m = std::make_unique<mounted>(hugezero::sim::machine_builder().pages(2_MiB, 4));
        const unique_fd fd = m->open(attribute(node0_2m, "free_hugepages"), O_RDONLY);
        REQUIRE(fd);
        const auto start = clock_type::now();
        m->mount.unmount();
        CHECK(clock_type::now() - start < 2s);
        CHECK_FALSE(mounted_at(m->dir.path()));
        CHECK(pread_all(fd.get()).rfind("error ", 0) == 0);
    }

#ifdef ZERO_ALL_NODES
    TEST_CASE("the standalone emulator serves zero_all_nodes and unmounts on SIGTERM")
    {
        hugezero::test::temp_dir dir;
        hugezero::test::child_process emulator({EMULATOR_PROGRAM, dir.path().string(), "--sim-nodes", "1", "--sim-pages",
                                                "1G=0", "--sim-pages", "2M=64", "--sim-page-cost", "2M=100us"});
        REQUIRE(hugezero::test::wait_until([&] { return mounted_at(dir.path()); }, 10s));
        const auto run = hugezero::test::run_process({ZERO_ALL_NODES, "--sysfs-root", dir.path().string(), "--json"});
        INFO(run.err);
        CHECK(run.exit_code == 0);
        CHECK(run.out.find(R"("status":"complete","pages_zeroed":64,)") == 1);
        emulator.send(SIGTERM);
        const auto result = emulator.wait(10s);
        INFO(result.err);
        CHECK(result.exit_code == 0);
        CHECK(result.out.find("unmounted") != std::string::npos);
        CHECK_FALSE(mounted_at(dir.path()));
    }
#endif
}
