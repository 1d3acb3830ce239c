// Handing fds and leases to another process over a Unix socket (SCM_RIGHTS): the same file
// arrives (close-on-exec), with its payload, on stream and seqpacket sockets; malformed
// messages are refused without leaking the fds that came with them; a lease sent to a child
// process is the same memory on both sides.
#include <doctest/doctest.h>

#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hugezero/hugezero.hpp>

#include "support/hugepages.hpp"
#include "support/sizes.hpp"
#include "support/skip.hpp"

using namespace hugezero::literals;
using hugezero::node_id;
using hugezero::test::mib;

namespace {

std::size_t open_fds()
{
    std::size_t n = 0;
    for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator("/proc/self/fd"))
        ++n;
    return n;
}

struct socket_pair {
    explicit socket_pair(int type)
    {
        int fds[2];
        REQUIRE(::socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, fds) == 0);
        left.reset(fds[0]);
        right.reset(fds[1]);
    }
    hugezero::unique_fd left;
    hugezero::unique_fd right;
};

// One raw sendmsg() of `data` with `fds` attached, for frames send_fd() would never make.
ssize_t send_raw(int socket, std::vector<int> fds, std::string data)
{
    std::vector<char> control(CMSG_SPACE(fds.size() * sizeof(int)));
    iovec io{data.data(), data.size()};
    msghdr message{};
    message.msg_iov = &io;
    message.msg_iovlen = 1;
    message.msg_control = control.data();
    message.msg_controllen = control.size();
    cmsghdr* c = CMSG_FIRSTHDR(&message);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(fds.size() * sizeof(int));
    std::memcpy(CMSG_DATA(c), fds.data(), fds.size() * sizeof(int));
    return ::sendmsg(socket, &message, 0);
}

bool same_file(int a, int b)
{
    struct stat sa {};
    struct stat sb {};
    REQUIRE(::fstat(a, &sa) == 0);
    REQUIRE(::fstat(b, &sb) == 0);
    return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

hugezero::unique_fd plain_memfd()
{
    hugezero::unique_fd fd(::memfd_create("hugezero-test", MFD_CLOEXEC));
    REQUIRE(fd);
    return fd;
}

} // namespace

TEST_SUITE("fd_passing")
{
    TEST_CASE("an fd and its payload arrive, close-on-exec, on stream and seqpacket sockets")
    {
        for (const int type : {SOCK_STREAM, SOCK_SEQPACKET, SOCK_DGRAM}) {
            CAPTURE(type);
            socket_pair sockets(type);
            const auto sent = plain_memfd();
            hugezero::send_fd(sockets.left.get(), sent.get(), "hello");
            hugezero::send_fd(sockets.left.get(), sent.get()); // a second message, no payload
            auto first = hugezero::receive_fd(sockets.right.get());
            REQUIRE(first);
            CHECK(first->payload() == "hello");
            CHECK(same_file(first->fd(), sent.get()));
            CHECK(first->fd() != sent.get());
            CHECK((::fcntl(first->fd(), F_GETFD) & FD_CLOEXEC) != 0);
            auto second = hugezero::receive_fd(sockets.right.get());
            REQUIRE(second);
            CHECK(second->payload().empty());
            CHECK(same_file(second->fd(), sent.get()));
        }
    }

    TEST_CASE("a closed peer is the end, not an error")
    {
        socket_pair sockets(SOCK_STREAM);
        sockets.left.reset();
        CHECK_FALSE(hugezero::receive_fd(sockets.right.get()).has_value());
        CHECK_FALSE(hugezero::receive_lease(sockets.right.get()).has_value());
    }

    TEST_CASE("malformed messages are refused with EBADMSG, and the fds that came are closed")
    {
        socket_pair sockets(SOCK_SEQPACKET);
        const std::size_t before = open_fds();
        SUBCASE("no fd")
        {
            REQUIRE(::send(sockets.left.get(), "\0\0\0\0", 4, 0) == 4);
        }
        SUBCASE("two fds")
        {
            const auto a = plain_memfd();
            const auto b = plain_memfd();
            REQUIRE(send_raw(sockets.left.get(), {a.get(), b.get()}, std::string(4, '\0')) == 4);
        }
        SUBCASE("a bad frame")
        {
            const auto a = plain_memfd();
            hugezero::send_fd(sockets.left.get(), a.get(), "x");
            // Same fd, but a frame that claims more payload than it has.
            REQUIRE(send_raw(sockets.left.get(), {a.get()}, std::string("\x09\0\0\0x", 5)) == 5);
            CHECK(hugezero::receive_fd(sockets.right.get())); // the good one first
        }
        try {
            (void)hugezero::receive_fd(sockets.right.get());
            FAIL("no exception");
        } catch (const std::system_error& e) {
            CHECK(e.code().value() == EBADMSG);
        }
        CHECK(open_fds() == before); // none of the fds that came is left open
    }

    TEST_CASE("receive_lease refuses an fd that is not the lease its payload describes")
    {
        socket_pair sockets(SOCK_SEQPACKET);
        const auto fd = plain_memfd();
        SUBCASE("not a lease payload")
        {
            hugezero::send_fd(sockets.left.get(), fd.get(), "hello");
        }
        SUBCASE("not a hugetlb file")
        {
            hugezero::send_fd(sockets.left.get(), fd.get(), "hugezero-lease 1 node=0 page_kib=2048 pages=1 cold=0");
        }
        try {
            (void)hugezero::receive_lease(sockets.right.get());
            FAIL("no exception");
        } catch (const std::system_error& e) {
            CHECK(e.code().value() == EBADMSG);
            CHECK(std::string(e.what()).find("receive_lease") != std::string::npos);
        }
    }

    TEST_CASE("receive_lease checks what the fd can tell: every page allocated, a node this process can use")
    {
        // A hugetlb memfd with a size but no page: no huge page is needed to make one.
        hugezero::unique_fd empty(::memfd_create("hugezero-test", MFD_CLOEXEC | MFD_HUGETLB | MFD_HUGE_2MB));
        HUGEZERO_SKIP_IF(!empty, "this kernel cannot make hugetlb memfds of 2 MiB pages");
        REQUIRE(::ftruncate(empty.get(), static_cast<off_t>(4 * (2_MiB).bytes())) == 0);
        socket_pair sockets(SOCK_SEQPACKET);
        std::string why;
        SUBCASE("no page allocated")
        {
            hugezero::send_fd(sockets.left.get(), empty.get(), "hugezero-lease 1 node=0 page_kib=2048 pages=4 cold=0");
            why = "the file has 0 of its 4 pages allocated: a lease has all of them";
        }
        SUBCASE("a node no machine this size has")
        {
            hugezero::send_fd(sockets.left.get(), empty.get(), "hugezero-lease 1 node=100000 page_kib=2048 pages=4 cold=0");
            why = "node 100000 is not a node this process can use";
        }
        try {
            (void)hugezero::receive_lease(sockets.right.get());
            FAIL("no exception");
        } catch (const std::system_error& e) {
            CHECK(e.code().value() == EBADMSG);
            INFO(e.what());
            CHECK(std::string(e.what()).find(why) != std::string::npos);
        }
    }

    TEST_CASE("payloads beyond the limit are refused")
    {
        socket_pair sockets(SOCK_SEQPACKET);
        const auto fd = plain_memfd();
        CHECK_THROWS_AS(hugezero::send_fd(sockets.left.get(), fd.get(), std::string(hugezero::max_fd_payload + 1, 'x')),
                        std::invalid_argument);
        sockets.right.reset();
        try {
            hugezero::send_fd(sockets.left.get(), fd.get(), "x");
            FAIL("no exception");
        } catch (const std::system_error& e) {
            CHECK(e.code().value() == EPIPE); // and no SIGPIPE killed us
        }
    }

    TEST_CASE("a lease sent to another process is the same memory there")
    {
        HUGEZERO_SKIP_IF(!hugezero::test::running_as_root(), "needs root to reserve huge pages");
        hugezero::test::hugepage_reservation reservation(2_MiB, 4);
        HUGEZERO_SKIP_IF(!reservation.ok(), reservation.reason());
        hugezero::pool p(hugezero::machine::open());
        auto got = p.acquire(node_id(0), 2_MiB, 8 * mib);
        REQUIRE_MESSAGE(got, got.message);
        socket_pair sockets(SOCK_SEQPACKET);
        const pid_t child = ::fork();
        REQUIRE(child >= 0);
        if (child == 0) {
            // The child: receive the lease, check it, write to every page, answer, exit.
            int status = 1;
            try {
                auto received = hugezero::receive_lease(sockets.right.get());
                if (received && received->size() == 8 * mib && received->page() == 2_MiB
                    && received->node() == node_id(0) && received->cold_pages() == 4) {
                    const auto m = received->map();
                    for (std::uint64_t offset = 0; offset < m.size(); offset += 2 * mib)
                        m.data()[offset] = std::byte{0x42};
                    status = 0;
                }
            } catch (...) {
                status = 2;
            }
            const char answer = static_cast<char>(status);
            (void)::send(sockets.right.get(), &answer, 1, 0);
            ::_exit(status);
        }
        hugezero::send_lease(sockets.left.get(), got.lease);
        char answer = 1;
        CHECK(::recv(sockets.left.get(), &answer, 1, 0) == 1);
        int status = -1;
        REQUIRE(::waitpid(child, &status, 0) == child);
        CHECK(WIFEXITED(status));
        CHECK(WEXITSTATUS(status) == 0);
        CHECK(answer == 0);
        const auto m = got.lease.map();
        for (std::uint64_t offset = 0; offset < m.size(); offset += 2 * mib)
            CHECK(m.data()[offset] == std::byte{0x42});
    }
}
