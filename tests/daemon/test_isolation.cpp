// Hostile tenants against hugezerod (root, real 2 MiB pages; label isolation): each tenant is a
// connection of its own that keeps whatever way back into its lease it can, gives the lease
// back, and looks for the next tenant's bytes. With the shipped defaults (recycle = off) a lease
// given back is emptied at once, so nothing kept reaches a page again; a reservoir that
// recycles for trusted users still refuses a file that is out of shape. Each case says which
// probe of the tenant-isolation issue it replays.
#include <doctest/doctest.h>

#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hugezero/socket_message.hpp>

#include "daemon/daemon_process.hpp"
#include "daemon/real_pages.hpp"
#include "support/hugepages.hpp"
#include "support/hugetlbfs.hpp"
#include "support/sizes.hpp"
#include "support/skip.hpp"

using hugezero::test::closed_by_peer;
using hugezero::test::daemon_process;
using hugezero::test::free_2m;
using hugezero::test::wait_until;
using hugezero::test::mib;
using hugezero::unique_fd;
namespace protocol = hugezerod::protocol;

namespace {

// Root and 64 free 2 MiB pages, or a skip.
struct real_pages : hugezero::test::real_pages {
    real_pages() : hugezero::test::real_pages(64) {}
};

const std::string defaults = "[pool]\nquiet_after_lease = 0ms\nretry_period = 20ms\n"
                             "[reservoir]\nnode = 0\npage = 2M\ntarget = 32M\nchunk = 8M\n";
const std::string trusted_recycling = "[daemon]\ntrusted_users = root\n"
                                      "[pool]\nquiet_after_lease = 60min\nretry_period = 20ms\n"
                                      "[reservoir]\nnode = 0\npage = 2M\ntarget = 32M\nchunk = 8M\nrecycle = trusted-peers\n";

protocol::acquire_request warm(std::uint64_t bytes, std::string name = {})
{
    protocol::acquire_request r;
    r.bytes = bytes;
    r.max_cold_pages = 0;
    r.name = std::move(name);
    return r;
}

// Writes @p byte over the first @p bytes of @p fd.
void write_all(int fd, std::uint64_t bytes, unsigned char byte)
{
    void* map = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    REQUIRE(map != MAP_FAILED);
    std::memset(map, byte, bytes);
    ::munmap(map, bytes);
}

// Whether every one of the first @p bytes of @p fd is @p byte.
bool all_bytes_are(int fd, std::uint64_t bytes, unsigned char byte)
{
    void* map = ::mmap(nullptr, bytes, PROT_READ, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED)
        return false;
    const auto* p = static_cast<const unsigned char*>(map);
    bool same = true;
    for (std::uint64_t i = 0; i < bytes && same; ++i)
        same = p[i] == byte;
    ::munmap(map, bytes);
    return same;
}

struct stat stat_of(int fd)
{
    struct stat st {};
    REQUIRE(::fstat(fd, &st) == 0);
    return st;
}

// Opens the file behind @p fd again, read-write, through /proc/self/fd (how a tenant turns an
// O_PATH descriptor back into a file it can map).
unique_fd reopen(int fd)
{
    return unique_fd(::open(("/proc/self/fd/" + std::to_string(fd)).c_str(), O_RDWR | O_CLOEXEC));
}

} // namespace

TEST_SUITE("isolation")
{
    TEST_CASE("case 1: an O_PATH descriptor kept in flight in a socket reaches an emptied file, never the next tenant's")
    {
        real_pages pages;
        if (!pages.ok)
            return;
        {
            daemon_process d(defaults);
            REQUIRE_MESSAGE(d.wait_ready(), d.log());
            int kept[2];
            REQUIRE(::socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, kept) == 0);
            const unique_fd in_flight_end(kept[0]), receive_end(kept[1]);
            hugezerod::client a(d.socket());
            {
                auto g = a.acquire(warm(8 * mib));
                write_all(g.fd.get(), 8 * mib, 0xa1);
                const unique_fd path_only(::open(("/proc/self/fd/" + std::to_string(g.fd.get())).c_str(), O_PATH | O_CLOEXEC));
                REQUIRE(path_only);
                REQUIRE(hugezero::send_message(in_flight_end.get(), "x", path_only.get()) == 0); // no /proc search sees it
                g.fd.reset();
                CHECK(a.release(g.info.id) == "emptied");
            }
            hugezerod::client b(d.socket());
            auto theirs = b.acquire(warm(8 * mib));
            write_all(theirs.fd.get(), 8 * mib, 0xb2);

            hugezero::socket_message back;
            REQUIRE(hugezero::receive_message(receive_end.get(), 16, back) == 0);
            REQUIRE(back.fds.size() == 1);
            const unique_fd again = reopen(back.fds[0].get());
            REQUIRE(again);
            CHECK(stat_of(again.get()).st_ino != stat_of(theirs.fd.get()).st_ino);
            CHECK(stat_of(again.get()).st_size == 0);
            CHECK(stat_of(again.get()).st_blocks == 0);
            CHECK(all_bytes_are(theirs.fd.get(), 8 * mib, 0xb2)); // nothing of A's reached B either
            CHECK(d.stop().exit_code == 0);
        }
        pages.check_none_lost();
    }

    TEST_CASE("case 1: a tenant that still maps its lease when it gives it back loses the mapping, it never sees another's pages")
    {
        real_pages pages;
        if (!pages.ok)
            return;
        {
            daemon_process d(defaults);
            REQUIRE_MESSAGE(d.wait_ready(), d.log());
            hugezerod::client a(d.socket());
            auto g = a.acquire(warm(8 * mib));
            int go[2], mapped[2];
            REQUIRE(::pipe2(go, O_CLOEXEC) == 0);
            REQUIRE(::pipe2(mapped, O_CLOEXEC) == 0);
            const pid_t tenant = ::fork();
            REQUIRE(tenant >= 0);
            if (tenant == 0) { // maps the lease, waits until it was given back, then reads it
                ::close(go[1]);
                ::close(mapped[0]);
                auto* map = static_cast<volatile unsigned char*>(
                    ::mmap(nullptr, 8 * mib, PROT_READ | PROT_WRITE, MAP_SHARED, g.fd.get(), 0));
                if (map == MAP_FAILED)
                    ::_exit(2);
                map[0] = 0xa1;
                ::close(mapped[1]); // mapped and written: the test may give the lease back
                char byte = 0;
                (void)!::read(go[0], &byte, 1);
                // The file is empty: a load from the mapping would raise SIGBUS (which the
                // sanitizers catch for themselves), a system call that reads it fails with EFAULT.
                int sink[2];
                if (::pipe(sink) != 0)
                    ::_exit(4);
                const ssize_t n = ::write(sink[1], const_cast<const unsigned char*>(map), 1);
                ::_exit(n < 0 && errno == EFAULT ? 0 : 3);
            }
            ::close(go[0]);
            ::close(mapped[1]);
            char byte = 0;
            REQUIRE(::read(mapped[0], &byte, 1) == 0);
            ::close(mapped[0]);
            const int go_on = go[1];
            g.fd.reset();
            CHECK(a.release(g.info.id) == "emptied");
            hugezerod::client b(d.socket());
            auto theirs = b.acquire(warm(8 * mib));
            write_all(theirs.fd.get(), 8 * mib, 0xb2);
            ::close(go_on);
            int status = 0;
            REQUIRE(::waitpid(tenant, &status, 0) == tenant);
            CHECK(WIFEXITED(status));
            CHECK(WEXITSTATUS(status) == 0); // its mapping reaches no page
            CHECK(d.stop().exit_code == 0);
        }
        pages.check_none_lost();
    }

    TEST_CASE("case 2: pages spliced into a pipe before the lease was given back stay the tenant's own bytes")
    {
        real_pages pages;
        if (!pages.ok)
            return;
        {
            daemon_process d(defaults);
            REQUIRE_MESSAGE(d.wait_ready(), d.log());
            int pipe_fds[2];
            REQUIRE(::pipe2(pipe_fds, O_CLOEXEC) == 0);
            const unique_fd read_end(pipe_fds[0]), write_end(pipe_fds[1]);
            constexpr std::size_t spliced = 64 * 1024; // a pipe's default capacity
            hugezerod::client a(d.socket());
            {
                auto g = a.acquire(warm(8 * mib));
                void* map = ::mmap(nullptr, 8 * mib, PROT_READ | PROT_WRITE, MAP_SHARED, g.fd.get(), 0);
                REQUIRE(map != MAP_FAILED);
                std::memset(map, 0xa1, 8 * mib);
                iovec v{map, spliced};
                REQUIRE(::vmsplice(write_end.get(), &v, 1, 0) == static_cast<ssize_t>(spliced));
                ::munmap(map, 8 * mib);
                g.fd.reset();
                CHECK(a.release(g.info.id) == "emptied");
            }
            hugezerod::client b(d.socket());
            std::vector<hugezerod::granted_lease> theirs; // every page the reservoir has left
            for (int i = 0; i < 3; ++i) {
                theirs.push_back(b.acquire(warm(8 * mib)));
                write_all(theirs.back().fd.get(), 8 * mib, 0xb2);
            }
            std::string got(spliced, '\0');
            REQUIRE(::read(read_end.get(), got.data(), spliced) == static_cast<ssize_t>(spliced));
            CHECK(got == std::string(spliced, '\xa1'));
            CHECK(d.stop().exit_code == 0);
        }
        pages.check_none_lost();
    }

    TEST_CASE("case 3: a named lease with a second link is emptied: the other name reaches no page, and the name is free again")
    {
        real_pages pages;
        if (!pages.ok)
            return;
        for (const std::string& config : {defaults, trusted_recycling}) {
            CAPTURE(config);
            const hugezero::test::hugetlbfs_mount mount(hugezero::page_2mib);
            REQUIRE_MESSAGE(mount.ok(), mount.reason());
            daemon_process d(config + "directory = " + mount.path().string() + "\n");
            REQUIRE_MESSAGE(d.wait_ready(), d.log());
            const auto second = mount.path() / "kept-by-a";
            hugezerod::client a(d.socket());
            {
                auto g = a.acquire(warm(8 * mib, "vm-42"));
                REQUIRE(g.info.path == (mount.path() / "vm-42").string());
                write_all(g.fd.get(), 8 * mib, 0xa1);
                REQUIRE(::link(g.info.path.c_str(), second.c_str()) == 0);
                g.fd.reset();
                // Recycling on, the pool proves the file unused, then finds its second name.
                CHECK(a.release(g.info.id) == (config == defaults ? "emptied" : "unusable"));
            }
            struct stat st {};
            REQUIRE(::stat(second.c_str(), &st) == 0);
            CHECK(st.st_size == 0);
            CHECK(st.st_blocks == 0);
            CHECK(st.st_nlink == 1); // its own name only: the lease's is gone
            hugezerod::client b(d.socket());
            auto theirs = b.acquire(warm(8 * mib, "vm-42"));
            CHECK(stat_of(theirs.fd.get()).st_ino != st.st_ino);
            CHECK(all_bytes_are(theirs.fd.get(), 8 * mib, 0));
            ::unlink(second.c_str());
            theirs.fd.reset();
            CHECK(d.stop().exit_code == 0);
        }
        pages.check_none_lost();
    }

    TEST_CASE("case 4: a lease grown, written past its end and holed is emptied, and the next lease is whole and zero")
    {
        real_pages pages;
        if (!pages.ok)
            return;
        for (const std::string& config : {defaults, trusted_recycling}) {
            CAPTURE(config);
            daemon_process d(config);
            REQUIRE_MESSAGE(d.wait_ready(), d.log());
            hugezerod::client a(d.socket());
            {
                auto g = a.acquire(warm(8 * mib));
                REQUIRE(::ftruncate(g.fd.get(), 10 * mib) == 0); // one page more
                write_all(g.fd.get(), 10 * mib, 0xa1);
                REQUIRE(::fallocate(g.fd.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 2 * mib) == 0);
                g.fd.reset();
                // Recycling on, the pool proves the file unused, then finds it out of shape.
                CHECK(a.release(g.info.id) == (config == defaults ? "emptied" : "unusable"));
                CHECK(d.reservoir("recycled_leases") == 0);
            }
            hugezerod::client b(d.socket());
            for (int i = 0; i < 3; ++i) { // whichever file comes: whole, and zero
                auto theirs = b.acquire(warm(8 * mib));
                CHECK(stat_of(theirs.fd.get()).st_size == static_cast<off_t>(8 * mib));
                CHECK(stat_of(theirs.fd.get()).st_blocks * 512 == static_cast<blkcnt_t>(8 * mib));
                CHECK(all_bytes_are(theirs.fd.get(), 8 * mib, 0));
            }
            CHECK(d.stop().exit_code == 0);
        }
        pages.check_none_lost();
    }

    TEST_CASE("case 5: a daemon killed with a named lease out: the next one refuses the name while the VM holds it, then reclaims the file")
    {
        real_pages pages;
        if (!pages.ok)
            return;
        {
            const hugezero::test::hugetlbfs_mount mount(hugezero::page_2mib);
            REQUIRE_MESSAGE(mount.ok(), mount.reason());
            daemon_process d(defaults + "directory = " + mount.path().string() + "\n");
            REQUIRE_MESSAGE(d.wait_ready(), d.log());
            int go[2];
            REQUIRE(::pipe2(go, O_CLOEXEC) == 0);
            pid_t vm = -1;
            {
                hugezerod::client a(d.socket());
                auto g = a.acquire(warm(8 * mib, "vm-42"));
                vm = ::fork(); // the VM: maps its RAM and runs until told
                REQUIRE(vm >= 0);
                if (vm == 0) {
                    ::close(a.fd());
                    void* map = ::mmap(nullptr, 8 * mib, PROT_READ | PROT_WRITE, MAP_SHARED, g.fd.get(), 0);
                    ::close(go[1]);
                    char byte = 0;
                    (void)!::read(go[0], &byte, 1);
                    ::_exit(map == MAP_FAILED ? 1 : 0);
                }
                CHECK(d.stop(SIGKILL).exit_code != 0); // a crash: nothing given back
            }
            ::close(go[0]);
            d.start(); // the next daemon, on the same directory
            REQUIRE_MESSAGE(d.wait_ready(), d.log());
            CHECK(wait_until([&] { return d.reservoir("waiting_pages") == 4; })); // watched
            hugezerod::client b(d.socket());
            try {
                (void)b.acquire(warm(8 * mib, "vm-42"));
                FAIL("a name in use was served again");
            } catch (const hugezerod::client_error& e) {
                CHECK(e.code() == EEXIST);
                CHECK_MESSAGE(std::string(e.what()).find("held by fd ") != std::string::npos, e.what());
                CHECK_MESSAGE(std::string(e.what()).find("of process " + std::to_string(vm)) != std::string::npos, e.what());
            }
            ::close(go[1]); // the VM ends
            int status = 0;
            REQUIRE(::waitpid(vm, &status, 0) == vm);
            CHECK(wait_until([&] { return d.reservoir("waiting_pages") == 0; }));
            CHECK(wait_until([&] { return mount.names().size() == 4; })); // the ready files only: vm-42 is gone
            auto again = b.acquire(warm(8 * mib, "vm-42"));
            CHECK(all_bytes_are(again.fd.get(), 8 * mib, 0));
            again.fd.reset();
            CHECK(d.stop().exit_code == 0);
        }
        pages.check_none_lost();
    }

    TEST_CASE("case 6: one user's connections are bounded (max_clients_per_user), and an idle one is closed (idle_timeout)")
    {
        real_pages pages;
        if (!pages.ok)
            return;
        daemon_process d("[daemon]\nmax_clients_per_user = 3\nidle_timeout = 300ms\n" + defaults);
        REQUIRE_MESSAGE(d.wait_ready(), d.log());
        hugezerod::client holder(d.socket());
        auto g = holder.acquire(warm(2 * mib)); // holds a lease: never idle
        hugezerod::client first(d.socket()), second(d.socket());
        hugezerod::client third(d.socket()); // one too many: refused at once, before it asks
        try {
            (void)third.status();
            FAIL("a fourth connection of one uid was served");
        } catch (const hugezerod::client_error& e) {
            CHECK(e.code() == EBUSY);
            CHECK_MESSAGE(std::string(e.what()).find("uid 0 has 3 connections open already (max_clients_per_user)")
                              != std::string::npos,
                          e.what());
        }
        // The two that hold nothing and ask nothing are closed once idle_timeout passes.
        CHECK(closed_by_peer(first.fd()));
        CHECK(closed_by_peer(second.fd()));
        CHECK(holder.status().daemon.at("leases") == "1"); // the lease holder was not
        CHECK(hugezero::test::metric(d.metrics(), "hugezerod_idle_connections_closed_total") >= 2);
        hugezerod::client again(d.socket()); // room again
        CHECK(again.status().daemon.at("leases") == "1");
        CHECK(d.stop().exit_code == 0);
    }

    TEST_CASE("case 7: after a small lease the default chunk no longer keeps a larger warm-only lease cold for good")
    {
        real_pages pages;
        if (!pages.ok)
            return;
        daemon_process d("[pool]\nquiet_after_lease = 0ms\nretry_period = 20ms\n[reservoir]\nnode = 0\npage = 2M\ntarget = 32M\n");
        REQUIRE_MESSAGE(d.wait_ready(), d.log());
        hugezerod::client a(d.socket());
        auto small = a.acquire(warm(2 * mib));
        small.fd.reset();
        CHECK(a.release(small.info.id) == "emptied");
        const auto filled = [&] { return d.reservoir("ready_pages") == 16; };
        REQUIRE(wait_until(filled)); // in one-page files: the chunk followed the small lease
        hugezerod::client b(d.socket());
        try {
            (void)b.acquire(warm(32 * mib));
            FAIL("a 32 MiB lease was warm from one-page files");
        } catch (const hugezerod::client_error& e) {
            CHECK(e.code() == EAGAIN);
        }
        REQUIRE(wait_until(filled)); // reshaped: one file of 16 pages
        auto large = b.acquire(warm(32 * mib));
        CHECK(large.info.cold == 0);
        large.fd.reset();
        CHECK(d.stop().exit_code == 0);
    }

    TEST_CASE("case 10: a tenant with 20000 descriptors giving back 24 leases it keeps open costs no search, and the refill goes on")
    {
        real_pages pages;
        if (!pages.ok)
            return;
        {
            daemon_process d(defaults);
            REQUIRE_MESSAGE(d.wait_ready(), d.log());
            int ready[2], go[2];
            REQUIRE(::pipe2(ready, O_CLOEXEC) == 0);
            REQUIRE(::pipe2(go, O_CLOEXEC) == 0);
            const pid_t tenant = ::fork();
            REQUIRE(tenant >= 0);
            if (tenant == 0) { // 20000 descriptors, and every lease kept open after it is given back
                ::close(ready[0]);
                ::close(go[1]);
                rlimit limit{};
                int failures = ::getrlimit(RLIMIT_NOFILE, &limit);
                limit.rlim_cur = limit.rlim_max; // as many as it may: 20000 where the hard limit allows
                failures += ::setrlimit(RLIMIT_NOFILE, &limit);
                const rlim_t many = std::min<rlim_t>(20000, limit.rlim_max - 64);
                for (rlim_t i = 0; i < many && failures == 0; ++i)
                    failures += ::open("/dev/null", O_RDONLY) < 0 ? 1 : 0;
                std::vector<unique_fd> kept;
                try {
                    hugezerod::client c(d.socket());
                    protocol::acquire_request any;
                    any.bytes = 2 * mib; // cold pages allowed
                    for (int i = 0; i < 24; ++i) {
                        auto g = c.acquire(any);
                        kept.push_back(std::move(g.fd));
                        const std::string status = c.release(g.info.id);
                        if (status != "emptied") {
                            std::cerr << "tenant: lease " << i << " given back: " << status << '\n';
                            ++failures;
                        }
                    }
                } catch (const std::exception& e) {
                    std::cerr << "tenant: " << e.what() << '\n';
                    ++failures;
                }
                (void)!::write(ready[1], &failures, sizeof failures);
                char byte = 0;
                (void)!::read(go[0], &byte, 1);
                ::_exit(0);
            }
            ::close(ready[1]);
            ::close(go[0]);
            int failures = -1;
            REQUIRE(::read(ready[0], &failures, sizeof failures) == static_cast<ssize_t>(sizeof failures));
            CHECK(failures == 0);
            CHECK(wait_until([&] { return d.reservoir("ready_pages") == 16 && d.reservoir("waiting_pages") == 0; }));
            CHECK(d.status().daemon.at("jobs") == "0");
            ::close(go[1]);
            ::close(ready[0]);
            REQUIRE(::waitpid(tenant, nullptr, 0) == tenant);
            CHECK(d.stop().exit_code == 0);
        }
        pages.check_none_lost();
    }

    TEST_CASE("case 8: acquires of more than the node has, asked again and again, leave the refill alone")
    {
        real_pages pages;
        if (!pages.ok)
            return;
        // A lease would keep the whole pool quiet for an hour: a refusal must not.
        daemon_process d("[daemon]\nready = listening\n[pool]\nquiet_after_lease = 60min\nretry_period = 20ms\nrefill_rate = 16M\n"
                         "[reservoir]\nnode = 0\npage = 2M\ntarget = 32M\nchunk = 8M\n");
        REQUIRE_MESSAGE(d.wait_ready(), d.log());
        hugezerod::client tenant(d.socket());
        protocol::acquire_request huge;
        huge.bytes = std::uint64_t{1} << 40;
        const auto filled = [&] { return d.reservoir("ready_pages") == 16; };
        bool refilled = false;
        for (int i = 0; i < 400 && !refilled; ++i) { // one acquire every 10 ms while the refill takes 2 s
            try {
                (void)tenant.acquire(huge);
                FAIL("a 1 TiB lease was granted");
            } catch (const hugezerod::client_error& e) {
                REQUIRE_MESSAGE(e.code() == ENOSPC, e.what());
            }
            refilled = wait_until(filled, std::chrono::milliseconds(10));
        }
        CHECK_MESSAGE((refilled || wait_until(filled)), d.log());
        CHECK(d.stop().exit_code == 0);
    }

    TEST_CASE("case 9: leases released while their fds are kept tie up no page, and one user's leases are bounded over its connections")
    {
        real_pages pages;
        if (!pages.ok)
            return;
        {
            daemon_process d("[daemon]\nmax_leases_per_user = 4\n[pool]\nquiet_after_lease = 60min\n"
                             "[reservoir]\nnode = 0\npage = 2M\ntarget = 32M\nchunk = 2M\n");
            REQUIRE_MESSAGE(d.wait_ready(), d.log());
            const std::uint64_t free_filled = free_2m();
            hugezerod::client a(d.socket());
            std::vector<unique_fd> kept;
            for (int i = 0; i < 8; ++i) { // each released with its fd kept: twice the lease limit
                auto g = a.acquire(warm(2 * mib));
                kept.push_back(std::move(g.fd));
                CHECK(a.release(g.info.id) == "emptied");
            }
            CHECK(free_2m() == free_filled + 8); // every page back to the kernel, fds kept or not
            hugezerod::client b(d.socket());
            std::vector<hugezerod::granted_lease> held;
            for (int i = 0; i < 2; ++i)
                held.push_back(a.acquire(warm(2 * mib)));
            for (int i = 0; i < 2; ++i)
                held.push_back(b.acquire(warm(2 * mib)));
            try {
                (void)b.acquire(warm(2 * mib));
                FAIL("a fifth lease of one uid was granted");
            } catch (const hugezerod::client_error& e) {
                CHECK(e.code() == EBUSY);
                CHECK_MESSAGE(std::string(e.what()).find("(max_leases_per_user)") != std::string::npos, e.what());
            }
            CHECK(d.stop().exit_code == 0);
        }
        {
            daemon_process d("[daemon]\nmax_bytes_per_user = 6M\n" + defaults);
            REQUIRE_MESSAGE(d.wait_ready(), d.log());
            hugezerod::client a(d.socket()), b(d.socket());
            const auto first = a.acquire(warm(4 * mib));
            try {
                (void)b.acquire(warm(4 * mib));
                FAIL("a uid got more bytes than max_bytes_per_user");
            } catch (const hugezerod::client_error& e) {
                CHECK(e.code() == EDQUOT);
                CHECK_MESSAGE(std::string(e.what()).find("would exceed its max_bytes_per_user of 6291456") != std::string::npos, e.what());
            }
            CHECK(b.acquire(warm(2 * mib)).info.pages == 1); // what is left
            CHECK(d.stop().exit_code == 0);
        }
        pages.check_none_lost();
    }

    TEST_CASE("case 11: the command hugezero-run starts, and everything it starts, orphans included, cannot connect with the launcher's credentials")
    {
        real_pages pages;
        if (!pages.ok)
            return;
        daemon_process d(defaults);
        REQUIRE_MESSAGE(d.wait_ready(), d.log());
        const hugezero::test::temp_dir out;
        // A child of the command asks for a status; then an orphan does (its parent exits first:
        // it is reparented to the launcher's process, the subreaper, not to init).
        const std::string script = R"(
"$1" status --socket "$2" >/dev/null 2>"$3/direct.err"; echo "direct=$?"
sh -c 'parent=$$; sh -c "while kill -0 $parent 2>/dev/null; do :; done; \"\$0\" status --socket \"\$1\" >/dev/null 2>\"\$2/orphan.err\"; echo orphan=\$? >\"\$2/orphan.tmp\"; mv \"\$2/orphan.tmp\" \"\$2/orphan\"" "$0" "$1" "$2" & exit 0' "$1" "$2" "$3"
while [ ! -e "$3/orphan" ]; do :; done
cat "$3/orphan"
)";
        const auto held = hugezero::test::run_process({HUGEZERO_RUN, "--socket", d.socket(), "--size", "2M", "-q", "--", "/bin/sh", "-c",
                                                       script, "sh", HUGEZERO_DAEMON, d.socket(), out.path().string()});
        CHECK_MESSAGE(held.exit_code == 0, held.err);
        CHECK(held.out == "direct=1\norphan=1\n");
        for (const char* who : {"direct.err", "orphan.err"}) {
            const std::string err = hugezero::test::file_text(out.path() / who);
            CHECK_MESSAGE(err.find("was started by a process that said hold") != std::string::npos, who << ": " << err);
        }
        // The operator's choice: a full connection, and no such refusal.
        const auto full = hugezero::test::run_process({HUGEZERO_RUN, "--socket", d.socket(), "--size", "2M", "-q", "--full-connection",
                                                       "--", HUGEZERO_DAEMON, "status", "--socket", d.socket()});
        CHECK_MESSAGE(full.exit_code == 0, full.err);
        CHECK(d.stop().exit_code == 0);
    }
}
