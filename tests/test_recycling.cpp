// Recycling on this machine's huge pages (root; each test reserves the pages it needs and
// restores nr_hugepages, or skips with the reason): a lease given back is scrubbed and serves
// the next VM warm, every byte zero, without the kernel allocating (and zeroing) its pages
// again; a mapping in another process, an fd in flight in a socket (which /proc cannot show)
// an O_PATH descriptor (which the write lease cannot see; also in a thread with a descriptor
// table of its own, or in a process whose first thread has exited) and a copy of the fd in
// another process each hold the recycling until they are gone; the search for them asks no file
// system about a file (a tenant's FUSE server that never answers cannot stall it). Every
// reservoir here recycles (reservoir_options::recycle: off by default).
#include <doctest/doctest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <optional>
#include <thread>
#include <cstring>
#include <string>

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hugezero/detail/file_holders.hpp>
#include <hugezero/hugezero.hpp>

#include "support/hstates.hpp"
#include "support/hugepages.hpp"
#include "support/pool_pages.hpp"
#include "support/sim_pool.hpp"
#include "support/sizes.hpp"
#include "support/skip.hpp"
#include "support/temp_dir.hpp"
#include "support/threads.hpp"

using namespace hugezero::literals;
using namespace std::chrono_literals;
using hugezero::recycle_status;
using hugezero::test::all_zero;
using hugezero::test::free_pages;
using hugezero::test::node0_1g;
using hugezero::test::node0_2m;
using hugezero::test::fill_then_pause;
using hugezero::test::one_reservoir; // quiet_after_lease 0: the refill does not wait
using resources = hugezero::test::pool_resources;
using hugezero::test::mib;

namespace {

#define REQUIRE_HUGEPAGES(reservation)                                                                       \
    HUGEZERO_SKIP_IF(!hugezero::test::running_as_root(), "needs root to reserve huge pages");                  \
    HUGEZERO_SKIP_IF(!(reservation).ok(), (reservation).reason())

// A tenant process: receives a lease's fd on @p channel, keeps an O_PATH descriptor of its file
// in a second thread, closes @p ready and ends its first thread; the second ends the process once
// @p go closes. Never returns.
[[noreturn]] void keep_o_path_in_second_thread(int channel, int ready, int go)
{
    hugezero::socket_message m;
    if (hugezero::receive_message(channel, 64, m) != 0 || m.fds.size() != 1)
        ::_exit(1);
    struct kept {
        int way_back;
        int go;
    };
    auto* k = new kept{::open(("/proc/self/fd/" + std::to_string(m.fds[0].get())).c_str(), O_PATH | O_CLOEXEC), go};
    m.fds.clear();
    const auto wait_then_end = [](void* arg) -> void* {
        const auto* fds = static_cast<kept*>(arg);
        char byte = 0;
        (void)!::read(fds->go, &byte, 1);
        ::close(fds->way_back);
        ::_exit(0);
    };
    pthread_t keeper{};
    if (k->way_back < 0 || ::pthread_create(&keeper, nullptr, wait_then_end, k) != 0)
        ::_exit(1);
    ::close(ready);
    ::syscall(SYS_exit, 0); // this thread only: no unwinding, no exit handlers
    ::_exit(1);
}

// The state letter of process @p pid's first thread (/proc/PID/stat), or 0.
char leader_state(pid_t pid)
{
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    std::getline(in, line);
    const auto close = line.rfind(')');
    return close == std::string::npos || close + 2 >= line.size() ? '\0' : line[close + 2];
}

// A warm lease of @p bytes of @p h, its every byte written by a tenant (and unmapped again).
hugezero::lease dirtied(hugezero::pool& p, const hugezero::hstate& h, std::uint64_t bytes)
{
    auto got = p.acquire(h, bytes);
    REQUIRE_MESSAGE(got, got.message);
    REQUIRE(got.lease.cold_pages() == 0);
    const auto m = got.lease.map();
    REQUIRE(all_zero(m));
    std::memset(m.data(), 0xa5, m.size());
    return std::move(got.lease);
}

// A pool of one reservoir of @p h, filled, paused (so that the refill leaves the room a lease
// given back needs), retrying every 5 ms.
hugezero::pool_options recycling_pool(const hugezero::hstate& h, std::uint64_t target)
{
    auto options = hugezero::test::recycling(one_reservoir(h, target));
    options.retry_period = 5ms;
    return options;
}

// Resumes @p p and waits until it is filled again; whether the next lease of @p bytes of @p h is
// warm and reads zero.
bool serves_zeroes_again(hugezero::pool& p, const hugezero::hstate& h, std::uint64_t bytes)
{
    p.resume();
    REQUIRE(p.wait_filled(30s));
    auto again = p.acquire(h, bytes);
    REQUIRE_MESSAGE(again, again.message);
    return again.lease.cold_pages() == 0 && all_zero(again.lease.map());
}

// Waits until the pool has taken the file given back off its waiting list and queued its scrub.
bool queued_for_scrub(const hugezero::pool& p, const hugezero::hstate& h, std::uint64_t pages)
{
    return hugezero::test::wait_until([&] { return p.statistics(h).scrubbing_pages == pages; }, 10s);
}

// A FUSE file system that no server answers (mounted on a /dev/fuse descriptor nobody reads):
// any call that asks it about a file, such as stat() through /proc/PID/fd/N, waits until the
// connection is aborted, as a tenant's own FUSE server can make it. Needs root and /dev/fuse.
class silent_fuse {
public:
    silent_fuse()
    {
        device_ = hugezero::unique_fd(::open("/dev/fuse", O_RDWR | O_CLOEXEC));
        if (!device_)
            return;
        const std::string options = "fd=" + std::to_string(device_.get()) + ",rootmode=40000,user_id=0,group_id=0";
        mounted_ = ::mount("hugezero-silent", dir_.path().c_str(), "fuse", MS_NOSUID | MS_NODEV, options.c_str()) == 0;
    }
    silent_fuse(const silent_fuse&) = delete;
    silent_fuse& operator=(const silent_fuse&) = delete;
    ~silent_fuse()
    {
        abort();
        if (mounted_)
            ::umount2(dir_.path().c_str(), MNT_DETACH);
    }
    [[nodiscard]] bool mounted() const noexcept { return mounted_; }
    [[nodiscard]] const std::filesystem::path& root() const noexcept { return dir_.path(); }
    // Closes the device: every call still waiting for an answer ends with ENOTCONN.
    void abort() { device_.reset(); }

private:
    hugezero::test::temp_dir dir_;
    hugezero::unique_fd device_;
    bool mounted_ = false;
};

// The search for the holders of @p fd, abandoned (the FUSE connection aborted to let it end)
// if it takes more than 20 s.
std::optional<hugezero::detail::file_references> holders_within_deadline(int fd, silent_fuse& fuse)
{
    auto search = std::async(std::launch::async, [fd] { return hugezero::detail::find_other_holders(fd); });
    if (search.wait_for(20s) == std::future_status::ready)
        return search.get();
    fuse.abort();
    (void)search.get();
    return std::nullopt;
}

} // namespace

TEST_SUITE("recycling")
{
    TEST_CASE("a recycled lease reads zero and serves the next VM warm, the kernel allocating nothing")
    {
        hugezero::test::hugepage_reservation reservation(2_MiB, 16);
        REQUIRE_HUGEPAGES(reservation);
        const resources before(2_MiB);
        {
            hugezero::pool p(hugezero::machine::open(), recycling_pool(node0_2m, 16 * mib));
            fill_then_pause(p);
            hugezero::lease l = dirtied(p, node0_2m, 16 * mib);
            const std::uint64_t free_with_lease = free_pages(2_MiB);
            const auto r = p.recycle(std::move(l));
            REQUIRE_MESSAGE(r, r.message);
            CHECK(r.pages == 8);
            p.resume();
            REQUIRE(p.wait_filled(10s));
            const auto s = p.statistics(node0_2m);
            CHECK(s.scrubbed_pages == 8);
            CHECK(s.refill_pages == 8); // the first fill only
            CHECK(free_pages(2_MiB) == free_with_lease);
            MESSAGE("scrub: ", s.scrub_bytes_per_second() / 1e9, " GB/s, refill: ", s.refill_bytes_per_second() / 1e9, " GB/s");
            auto again = p.acquire(node0_2m, 16 * mib);
            REQUIRE_MESSAGE(again, again.message);
            CHECK(again.lease.cold_pages() == 0);
            CHECK(all_zero(again.lease.map()));
        }
        before.check_restored();
    }

    TEST_CASE("1 GiB pages: a recycled lease reads zero")
    {
        hugezero::test::hugepage_reservation reservation(1_GiB, 1);
        REQUIRE_HUGEPAGES(reservation);
        const resources before(1_GiB);
        {
            hugezero::pool p(hugezero::machine::open(), recycling_pool(node0_1g, 1_GiB .bytes()));
            fill_then_pause(p, 30s);
            const auto r = p.recycle(dirtied(p, node0_1g, 1_GiB .bytes()));
            REQUIRE_MESSAGE(r, r.message);
            p.resume();
            REQUIRE(p.wait_filled(30s));
            CHECK(p.statistics(node0_1g).refill_pages == 1);
            auto again = p.acquire(node0_1g, 1_GiB .bytes());
            REQUIRE_MESSAGE(again, again.message);
            CHECK(all_zero(again.lease.map()));
        }
        before.check_restored();
    }

    TEST_CASE("a mapping in another process holds the recycling up, and once the process exits, it proceeds")
    {
        hugezero::test::hugepage_reservation reservation(2_MiB, 8);
        REQUIRE_HUGEPAGES(reservation);
        const resources before(2_MiB);
        {
            hugezero::pool p(hugezero::machine::open(), recycling_pool(node0_2m, 8 * mib));
            fill_then_pause(p);
            hugezero::lease l = dirtied(p, node0_2m, 8 * mib);
            int go[2];
            REQUIRE(::pipe2(go, O_CLOEXEC) == 0);
            void* shared = ::mmap(nullptr, l.size(), PROT_READ, MAP_SHARED, l.fd(), 0);
            REQUIRE(shared != MAP_FAILED);
            const int lease_fd = l.fd();
            const pid_t child = ::fork();
            REQUIRE(child >= 0);
            if (child == 0) { // keeps only the mapping: its copy of the lease's fd is closed
                ::close(lease_fd);
                ::close(go[1]);
                char c;
                (void)!::read(go[0], &c, 1);
                ::_exit(0);
            }
            ::close(go[0]);
            ::munmap(shared, l.size());
            const auto deferred = p.recycle(std::move(l));
            CHECK(deferred.status == recycle_status::deferred);
            // The child holds the mapping, and inherited the pool's own fd too: either names it.
            CHECK_MESSAGE(deferred.message.find("process " + std::to_string(child)) != std::string::npos, deferred.message);
            ::close(go[1]);
            int status = 0;
            REQUIRE(::waitpid(child, &status, 0) == child);
            REQUIRE(queued_for_scrub(p, node0_2m, 4));
            CHECK(serves_zeroes_again(p, node0_2m, 8 * mib));
        }
        before.check_restored();
    }

    TEST_CASE("an fd in flight in a socket, which /proc cannot show, holds the recycling up until the socket closes")
    {
        hugezero::test::hugepage_reservation reservation(2_MiB, 8);
        REQUIRE_HUGEPAGES(reservation);
        const resources before(2_MiB);
        {
            hugezero::pool p(hugezero::machine::open(), recycling_pool(node0_2m, 8 * mib));
            fill_then_pause(p);
            hugezero::lease l = dirtied(p, node0_2m, 8 * mib);
            int sockets[2];
            REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sockets) == 0);
            hugezero::send_lease(sockets[0], l); // never received
            const auto deferred = p.recycle(std::move(l));
            CHECK(deferred.status == recycle_status::deferred);
            CHECK(deferred.message == "hugezero: node0/2MiB lease not recycled yet: the file is still in use; it will be once "
                                      "nothing else refers to it");
            ::close(sockets[0]);
            ::close(sockets[1]); // the message and its fd go with the socket
            REQUIRE(queued_for_scrub(p, node0_2m, 4));
            p.resume();
            REQUIRE(p.wait_filled(10s));
        }
        before.check_restored();
    }

    TEST_CASE("a copy of the fd in another process holds the recycling up, and once the process exits, it proceeds")
    {
        hugezero::test::hugepage_reservation reservation(2_MiB, 8);
        REQUIRE_HUGEPAGES(reservation);
        const resources before(2_MiB);
        {
            hugezero::pool p(hugezero::machine::open(), recycling_pool(node0_2m, 8 * mib));
            fill_then_pause(p);
            hugezero::lease l = dirtied(p, node0_2m, 8 * mib);
            int go[2];
            REQUIRE(::pipe2(go, O_CLOEXEC) == 0);
            const pid_t child = ::fork(); // it has a copy of every fd, the lease's too
            REQUIRE(child >= 0);
            if (child == 0) {
                ::close(go[1]);
                char byte = 0;
                (void)::read(go[0], &byte, 1); // async-signal-safe only: this process has threads
                ::_exit(0);
            }
            ::close(go[0]);
            const auto deferred = p.recycle(std::move(l));
            CHECK(deferred.status == recycle_status::deferred);
            CHECK_MESSAGE(deferred.message.find("of process " + std::to_string(child)) != std::string::npos, deferred.message);
            ::close(go[1]); // the child reads end of file and exits
            int status = 0;
            REQUIRE(::waitpid(child, &status, 0) == child);
            REQUIRE(queued_for_scrub(p, node0_2m, 4));
            p.resume();
            REQUIRE(p.wait_filled(10s));
            auto again = p.acquire(node0_2m, 8 * mib);
            REQUIRE_MESSAGE(again, again.message);
            CHECK(again.lease.cold_pages() == 0);
            CHECK(all_zero(again.lease.map()));
        }
        before.check_restored();
    }

    TEST_CASE("an O_PATH descriptor, which the write lease does not see, holds the recycling up until it closes")
    {
        hugezero::test::hugepage_reservation reservation(2_MiB, 8);
        REQUIRE_HUGEPAGES(reservation);
        const resources before(2_MiB);
        {
            hugezero::pool p(hugezero::machine::open(), recycling_pool(node0_2m, 8 * mib));
            fill_then_pause(p);
            hugezero::lease l = dirtied(p, node0_2m, 8 * mib);
            // A tenant that kept a way back in: O_PATH opens nothing, but /proc/self/fd/<it>
            // opens the file again, read-write, after the lease is gone.
            const int way_back = ::open(("/proc/self/fd/" + std::to_string(l.fd())).c_str(), O_PATH | O_CLOEXEC);
            REQUIRE(way_back >= 0);
            const auto deferred = p.recycle(std::move(l));
            CHECK(deferred.status == recycle_status::deferred);
            CHECK_MESSAGE(deferred.message.find("fd " + std::to_string(way_back) + " of process " + std::to_string(::getpid()))
                              != std::string::npos,
                          deferred.message);
            ::close(way_back);
            REQUIRE(queued_for_scrub(p, node0_2m, 4));
            p.resume();
            REQUIRE(p.wait_filled(10s));
        }
        before.check_restored();
    }

    TEST_CASE("an O_PATH descriptor in a thread that unshared its descriptor table holds the recycling up until it closes")
    {
        hugezero::test::hugepage_reservation reservation(2_MiB, 8);
        REQUIRE_HUGEPAGES(reservation);
        const resources before(2_MiB);
        {
            hugezero::pool p(hugezero::machine::open(), recycling_pool(node0_2m, 8 * mib));
            fill_then_pause(p);
            hugezero::lease l = dirtied(p, node0_2m, 8 * mib);
            const std::string path = "/proc/self/fd/" + std::to_string(l.fd());
            std::promise<pid_t> opened;
            std::promise<void> close_it;
            std::thread keeper([&] { // only /proc/PID/task/TID/fd shows its table
                const bool unshared = ::unshare(CLONE_FILES) == 0;
                const int way_back = ::open(path.c_str(), O_PATH | O_CLOEXEC);
                opened.set_value(unshared && way_back >= 0 ? static_cast<pid_t>(::syscall(SYS_gettid)) : -1);
                close_it.get_future().wait();
                ::close(way_back);
            });
            const pid_t tid = opened.get_future().get();
            REQUIRE(tid > 0);
            const auto deferred = p.recycle(std::move(l));
            CHECK(deferred.status == recycle_status::deferred);
            CHECK_MESSAGE(deferred.message.find("of thread " + std::to_string(tid)) != std::string::npos, deferred.message);
            close_it.set_value();
            keeper.join();
            REQUIRE(queued_for_scrub(p, node0_2m, 4));
            p.resume();
            REQUIRE(p.wait_filled(10s));
        }
        before.check_restored();
    }

    TEST_CASE("an O_PATH descriptor in a process whose first thread has exited holds the recycling up until it ends")
    {
        hugezero::test::hugepage_reservation reservation(2_MiB, 8);
        REQUIRE_HUGEPAGES(reservation);
        const resources before(2_MiB);
        // The tenant is forked before the pool starts its threads (ThreadSanitizer does not let a
        // child of a process with threads start one), and gets the lease's fd over a socket.
        int channel[2], ready[2], go[2];
        REQUIRE(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, channel) == 0);
        REQUIRE(::pipe2(ready, O_CLOEXEC) == 0);
        REQUIRE(::pipe2(go, O_CLOEXEC) == 0);
        const pid_t child = ::fork();
        REQUIRE(child >= 0);
        if (child == 0) { // /proc/CHILD/fd lists nothing once its first thread has exited
            ::close(channel[0]);
            ::close(ready[0]);
            ::close(go[1]);
            keep_o_path_in_second_thread(channel[1], ready[1], go[0]);
        }
        ::close(channel[1]);
        ::close(ready[1]);
        ::close(go[0]);
        {
            hugezero::pool p(hugezero::machine::open(), recycling_pool(node0_2m, 8 * mib));
            fill_then_pause(p);
            hugezero::lease l = dirtied(p, node0_2m, 8 * mib);
            REQUIRE(hugezero::send_message(channel[0], "lease", l.fd()) == 0);
            char byte = 0;
            REQUIRE(::read(ready[0], &byte, 1) == 0); // the child's first thread has closed it: exited
            REQUIRE(hugezero::test::wait_until([&] { return leader_state(child) == 'Z'; })); // its other thread lives on
            const auto deferred = p.recycle(std::move(l));
            CHECK_MESSAGE(deferred.status == recycle_status::deferred, deferred.message);
            CHECK_MESSAGE(deferred.message.find("of process " + std::to_string(child)) != std::string::npos, deferred.message);
            ::close(go[1]);
            int status = 0;
            REQUIRE(::waitpid(child, &status, 0) == child);
            REQUIRE(queued_for_scrub(p, node0_2m, 4));
            p.resume();
            REQUIRE(p.wait_filled(10s));
        }
        ::close(channel[0]);
        ::close(ready[0]);
        before.check_restored();
    }

    TEST_CASE("the search for holders asks no file system about a file: a tenant's FUSE server that never answers cannot stall it")
    {
        HUGEZERO_SKIP_IF(!hugezero::test::running_as_root(), "needs root to mount a FUSE file system");
        silent_fuse fuse;
        if (!fuse.mounted() && hugezero::test::required("fuse"))
            FAIL("cannot mount a FUSE file system on /dev/fuse: " << std::strerror(errno));
        HUGEZERO_SKIP_IF(!fuse.mounted(), "cannot mount a FUSE file system on /dev/fuse");
        const hugezero::unique_fd file(::memfd_create("searched", MFD_CLOEXEC));
        REQUIRE(file);
        // A tenant's way into its own file system: an O_PATH open asks the server nothing, a
        // stat() of /proc/PID/fd/N asks it for the attributes and waits for the answer.
        const hugezero::unique_fd stalled(::open(fuse.root().c_str(), O_PATH | O_CLOEXEC));
        REQUIRE(stalled);
        const auto nobody = holders_within_deadline(file.get(), fuse);
        REQUIRE_MESSAGE(nobody, "the search waited for the FUSE server (stat() of the descriptors it looked at)");
        CHECK_MESSAGE(nobody->holder.empty(), nobody->holder);
        // It still finds a holder, behind the stalled descriptor.
        const hugezero::unique_fd copy(::open(("/proc/self/fd/" + std::to_string(file.get())).c_str(), O_RDONLY | O_CLOEXEC));
        REQUIRE(copy);
        const auto found = holders_within_deadline(file.get(), fuse);
        REQUIRE(found);
        CHECK(found->holder == "fd " + std::to_string(copy.get()) + " of process " + std::to_string(::getpid()));
    }

    TEST_CASE("the search for holders finds a descriptor opened through another mount of the same file system")
    {
        HUGEZERO_SKIP_IF(!hugezero::test::running_as_root(), "needs root to mount");
        const hugezero::test::temp_dir top;
        const auto original = top.path() / "original";
        const auto bound = top.path() / "bound";
        std::filesystem::create_directory(original);
        std::filesystem::create_directory(bound);
        REQUIRE(::mount("hugezero-test", original.c_str(), "tmpfs", 0, "size=1m") == 0);
        const bool bind = ::mount(original.c_str(), bound.c_str(), nullptr, MS_BIND, nullptr) == 0;
        {
            const hugezero::unique_fd file(::open((original / "lease").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
            REQUIRE(file);
            REQUIRE(bind);
            // Another mount: /proc/PID/fdinfo gives another mount id, its mountinfo the same device.
            const hugezero::unique_fd other(::open((bound / "lease").c_str(), O_RDONLY | O_CLOEXEC));
            REQUIRE(other);
            const auto found = hugezero::detail::find_other_holders(file.get());
            CHECK(found.holder == "fd " + std::to_string(other.get()) + " of process " + std::to_string(::getpid()));
        }
        if (bind)
            ::umount2(bound.c_str(), MNT_DETACH);
        ::umount2(original.c_str(), MNT_DETACH);
    }

    TEST_CASE("1000 recycle cycles: every lease reads zero, nothing leaks, the kernel allocates nothing")
    {
        // 100 under the sanitizers, which check each of the 8 GB read and written one by one.
        const int cycles = hugezero::test::sanitized_build ? 100 : 1000;
        hugezero::test::hugepage_reservation reservation(2_MiB, 4);
        REQUIRE_HUGEPAGES(reservation);
        const resources before(2_MiB);
        {
            hugezero::pool p(hugezero::machine::open(), recycling_pool(node0_2m, 4 * mib));
            p.start();
            REQUIRE(p.wait_filled(10s));
            int not_zero = 0;
            for (int cycle = 0; cycle < cycles; ++cycle) {
                p.pause(); // else the refill fills the room before the lease comes back
                auto got = p.acquire(node0_2m, 4 * mib);
                REQUIRE_MESSAGE(got, got.message);
                {
                    const auto m = got.lease.map();
                    not_zero += all_zero(m) ? 0 : 1;
                    std::memset(m.data(), cycle & 0xff, m.size());
                }
                const auto r = p.recycle(std::move(got.lease));
                REQUIRE_MESSAGE(r, r.message);
                p.resume();
                REQUIRE(p.wait_filled(10s));
            }
            CHECK(not_zero == 0);
            const auto s = p.statistics(node0_2m);
            CHECK(s.recycled_leases == static_cast<std::uint64_t>(cycles));
            CHECK(s.scrubbed_pages == 2 * static_cast<std::uint64_t>(cycles));
            CHECK(s.refill_pages == 2);
            CHECK(s.cold_pages_served == 0);
        }
        before.check_restored();
    }
}
