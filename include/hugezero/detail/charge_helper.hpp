/// @file
/// @brief hugezero::detail::charge_helper: a process placed in a cgroup that allocates hugetlb
/// pages for the pool, so that their hugetlb charge goes to that cgroup.
#ifndef HUGEZERO_DETAIL_CHARGE_HELPER_HPP
#define HUGEZERO_DETAIL_CHARGE_HELPER_HPP

#include <cerrno>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hugezero/detail/hugetlb_file.hpp>
#include <hugezero/detail/unique_fd.hpp>

namespace hugezero::detail {

// Why a process: the kernel charges a hugetlb page to the cgroup of the process that allocates
// it, and the hugetlb controller is a domain controller: every thread of a process is in the
// process's cgroup. So the pages of a reservoir charged to a tenant's cgroup are allocated by a
// helper process started in that cgroup (clone3(CLONE_INTO_CGROUP): it never runs elsewhere),
// which gets each file over a socket, allocates or faults in the pages asked for, and closes
// its descriptor again. The charge stays with the page, whoever holds the file later.
//
// The helper is a copy of a multi-threaded process that does not exec (a header-only library
// has no program to exec): it calls nothing but system calls, on its own stack, and allocates
// nothing. It first drops what it inherited and must not keep: every descriptor but its
// socket, and every shared or hugetlb mapping (which would keep the pool's and the caller's
// files referenced, and make a lease look held by another process).

/// What the pool asks a helper to do with the file sent with the request.
enum class charge_op : std::uint32_t {
    allocate = 1, ///< fallocate() the pages, as hugetlb_files::allocate().
    populate = 2, ///< map the pages and fault them in, as a populate_window.
};

/// One request: the pages, and the caller's memory policy and CPUs, which the helper takes on
/// first so that the pages land where the caller's own would.
struct charge_request {
    charge_op op = charge_op::allocate;
    std::int32_t policy_mode = -1; ///< The caller's get_mempolicy() mode; -1: leave as it is.
    std::uint64_t page_bytes = 0;
    std::uint64_t first = 0;
    std::uint64_t count = 0;
    unsigned long policy_nodes[16] = {}; ///< Up to 1024 nodes.
    cpu_set_t cpus{};
    std::uint8_t cpus_valid = 0;
};

/// A helper's answer: 0 or the errno of the operation.
struct charge_reply {
    std::int32_t error = 0;
};

/// The signal a caller forwards to its helper when it is itself interrupted while it waits
/// (a stop()): it cuts a fallocate() short as it would have cut the caller's.
inline constexpr int charge_interrupt_signal = SIGURG;

namespace charge_child {

// The helper's code runs in a copy of a process whose other threads may have held the
// sanitizers' locks at the copy: ThreadSanitizer does not instrument it.
#if defined(__clang__) || defined(__GNUC__)
#define HUGEZERO_DETAIL_CHILD_CODE __attribute__((no_sanitize("thread")))
#else
#define HUGEZERO_DETAIL_CHILD_CODE
#endif

inline void ignore_signal(int) noexcept {}

/// Whether line [@p begin, @p end) of /proc/self/maps is a mapping the helper must drop: a
/// shared one, or a private hugetlb one.
HUGEZERO_DETAIL_CHILD_CODE inline bool must_unmap(const char* begin, const char* end, std::uintptr_t& start, std::uintptr_t& stop) noexcept
{
    const char* p = begin;
    start = 0;
    stop = 0;
    const auto hex = [&](std::uintptr_t& value) {
        for (; p < end; ++p) {
            const char c = *p;
            const int digit = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
            if (digit < 0)
                return;
            value = value * 16 + static_cast<std::uintptr_t>(digit);
        }
    };
    hex(start);
    if (p >= end || *p++ != '-')
        return false;
    hex(stop);
    if (p + 5 > end)
        return false;
    if (p[4] == 's') // " rw-s"
        return true;
    static constexpr char hugetlb[] = "anon_hugepage";
    const std::size_t n = sizeof(hugetlb) - 1;
    for (const char* q = p; q + n <= end; ++q)
        if (std::memcmp(q, hugetlb, n) == 0)
            return true;
    return false;
}

/// Unmaps every shared and every hugetlb mapping the helper inherited.
HUGEZERO_DETAIL_CHILD_CODE inline void drop_inherited_mappings() noexcept
{
    const int maps = static_cast<int>(::syscall(SYS_openat, AT_FDCWD, "/proc/self/maps", O_RDONLY | O_CLOEXEC));
    if (maps < 0)
        return;
    char buffer[8192];
    std::size_t held = 0;
    for (;;) {
        const ssize_t n = ::read(maps, buffer + held, sizeof(buffer) - held);
        if (n <= 0)
            break;
        held += static_cast<std::size_t>(n);
        std::size_t line = 0;
        for (std::size_t i = 0; i < held; ++i) {
            if (buffer[i] != '\n')
                continue;
            std::uintptr_t start = 0;
            std::uintptr_t stop = 0;
            if (must_unmap(buffer + line, buffer + i, start, stop) && stop > start)
                ::munmap(reinterpret_cast<void*>(start), stop - start);
            line = i + 1;
        }
        if (line == 0 && held == sizeof(buffer))
            held = 0; // a line longer than the buffer: no mapping of ours, skip it
        std::memmove(buffer, buffer + line, held - line);
        held -= line;
    }
    ::close(maps);
}

/// Takes on the caller's memory policy and CPUs.
HUGEZERO_DETAIL_CHILD_CODE inline void take_on(const charge_request& r) noexcept
{
    if (r.policy_mode == 0)
        ::syscall(SYS_set_mempolicy, 0, nullptr, 0UL);
    else if (r.policy_mode > 0)
        ::syscall(SYS_set_mempolicy, r.policy_mode, r.policy_nodes, 8 * sizeof(r.policy_nodes) + 1);
    if (r.cpus_valid != 0)
        ::sched_setaffinity(0, sizeof(r.cpus), &r.cpus);
}

HUGEZERO_DETAIL_CHILD_CODE inline int perform(const charge_request& r, int fd) noexcept
{
    const std::uint64_t offset = r.first * r.page_bytes;
    const std::uint64_t length = r.count * r.page_bytes;
    if (r.op == charge_op::allocate || !populate_write_supported())
        return ::fallocate(fd, 0, static_cast<off_t>(offset), static_cast<off_t>(length)) == 0 ? 0 : errno;
    void* start = ::mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, static_cast<off_t>(offset));
    if (start == MAP_FAILED)
        return errno;
    const int error = populate_range(static_cast<std::byte*>(start), length);
    ::munmap(start, length);
    return error;
}

/// The helper's life: serve requests until the pool closes its end of the socket.
HUGEZERO_DETAIL_CHILD_CODE [[noreturn]] inline void serve(int sock) noexcept
{
    if (sock > 0)
        ::syscall(SYS_close_range, 0U, static_cast<unsigned>(sock - 1), 0U);
    ::syscall(SYS_close_range, static_cast<unsigned>(sock + 1), ~0U, 0U);
    drop_inherited_mappings();
    struct sigaction action {};
    action.sa_handler = ignore_signal; // no SA_RESTART: a forwarded stop cuts a fallocate() short
    ::sigaction(charge_interrupt_signal, &action, nullptr);
    sigset_t unblocked;
    ::sigemptyset(&unblocked);
    ::sigaddset(&unblocked, charge_interrupt_signal);
    ::sigprocmask(SIG_UNBLOCK, &unblocked, nullptr);
    const charge_reply ready{0}; // the parent waits for it: nothing inherited is held any more
    if (::send(sock, &ready, sizeof(ready), MSG_NOSIGNAL) != static_cast<ssize_t>(sizeof(ready)))
        ::_exit(0);
    for (;;) {
        charge_request request;
        alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
        iovec io{&request, sizeof(request)};
        msghdr message{};
        message.msg_iov = &io;
        message.msg_iovlen = 1;
        message.msg_control = control;
        message.msg_controllen = sizeof(control);
        const ssize_t n = ::recvmsg(sock, &message, MSG_CMSG_CLOEXEC);
        if (n < 0 && errno == EINTR)
            continue;
        if (n != static_cast<ssize_t>(sizeof(request)))
            ::_exit(0); // the pool closed its end (or sent nonsense): done
        const cmsghdr* header = CMSG_FIRSTHDR(&message);
        int fd = -1;
        if (header != nullptr && header->cmsg_level == SOL_SOCKET && header->cmsg_type == SCM_RIGHTS)
            std::memcpy(&fd, CMSG_DATA(header), sizeof(fd));
        charge_reply reply{EBADF};
        if (fd >= 0) {
            take_on(request);
            reply.error = perform(request, fd);
            ::close(fd);
        }
        if (::send(sock, &reply, sizeof(reply), MSG_NOSIGNAL) != static_cast<ssize_t>(sizeof(reply)))
            ::_exit(0);
    }
}

} // namespace charge_child

#undef HUGEZERO_DETAIL_CHILD_CODE

/// clone3()'s arguments (<linux/sched.h>, which conflicts with <sched.h> in some libcs).
struct clone3_args {
    std::uint64_t flags = 0;
    std::uint64_t pidfd = 0;
    std::uint64_t child_tid = 0;
    std::uint64_t parent_tid = 0;
    std::uint64_t exit_signal = 0;
    std::uint64_t stack = 0;
    std::uint64_t stack_size = 0;
    std::uint64_t tls = 0;
    std::uint64_t set_tid = 0;
    std::uint64_t set_tid_size = 0;
    std::uint64_t cgroup = 0;
};

/// One helper process in a cgroup, and the pool's end of its socket. Not thread-safe: the
/// pool lends each to one caller at a time (charged_files).
class charge_helper {
public:
    /// Starts a helper in the cgroup v2 directory open as @p cgroup_dir; check error().
    explicit charge_helper(int cgroup_dir) noexcept
    {
        int pair[2];
        if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0) {
            error_ = errno;
            return;
        }
        unique_fd ours(pair[0]);
        unique_fd theirs(pair[1]);
        constexpr std::uint64_t clone_pidfd = 0x1000;
        constexpr std::uint64_t clone_into_cgroup = 0x200000000ULL;
        int pidfd = -1;
        clone3_args args;
        args.flags = clone_pidfd | clone_into_cgroup;
        args.pidfd = reinterpret_cast<std::uintptr_t>(&pidfd);
        args.exit_signal = 0; // no SIGCHLD: the process's own wait(-1) does not see it
        args.cgroup = static_cast<std::uint64_t>(cgroup_dir);
        const long pid = ::syscall(SYS_clone3, &args, sizeof(args));
        if (pid == 0)
            charge_child::serve(theirs.get());
        if (pid < 0) {
            error_ = errno;
            return;
        }
        socket_ = std::move(ours);
        pidfd_ = unique_fd(pidfd);
        theirs.reset();
        if (wait_reply() != 0) // it died before it was ready
            error_ = ECHILD;
    }
    charge_helper(const charge_helper&) = delete;
    charge_helper& operator=(const charge_helper&) = delete;
    /// Closes the socket (the helper exits) and reaps the helper.
    ~charge_helper()
    {
        socket_.reset();
        if (pidfd_) {
            constexpr idtype_t p_pidfd = static_cast<idtype_t>(3);
            siginfo_t info{};
            while (::waitid(p_pidfd, static_cast<id_t>(pidfd_.get()), &info, WEXITED | __WALL) != 0 && errno == EINTR) {
            }
        }
    }

    /// 0, or why the helper could not be started.
    [[nodiscard]] int error() const noexcept { return error_; }
    /// Whether the helper is gone (it died, or broke the protocol): start another.
    [[nodiscard]] bool broken() const noexcept { return broken_ || error_ != 0; }

    /// Has the helper do @p r on @p fd; 0 or the errno (`EPIPE`: the helper is gone). If this
    /// thread is interrupted meanwhile, the helper is too.
    int call(const charge_request& r, int fd) noexcept
    {
        alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
        iovec io{const_cast<charge_request*>(&r), sizeof(r)};
        msghdr message{};
        message.msg_iov = &io;
        message.msg_iovlen = 1;
        message.msg_control = control;
        message.msg_controllen = sizeof(control);
        cmsghdr* header = CMSG_FIRSTHDR(&message);
        header->cmsg_level = SOL_SOCKET;
        header->cmsg_type = SCM_RIGHTS;
        header->cmsg_len = CMSG_LEN(sizeof(int));
        std::memcpy(CMSG_DATA(header), &fd, sizeof(fd));
        ssize_t sent = 0;
        while ((sent = ::sendmsg(socket_.get(), &message, MSG_NOSIGNAL)) < 0 && errno == EINTR) {
        }
        if (sent != static_cast<ssize_t>(sizeof(r)))
            return gone();
        return wait_reply();
    }

private:
    int wait_reply() noexcept
    {
        charge_reply reply;
        for (;;) {
            const ssize_t n = ::recv(socket_.get(), &reply, sizeof(reply), 0);
            if (n == static_cast<ssize_t>(sizeof(reply)))
                return reply.error;
            if (n < 0 && errno == EINTR) {
                ::syscall(SYS_pidfd_send_signal, pidfd_.get(), charge_interrupt_signal, nullptr, 0U);
                continue;
            }
            return gone();
        }
    }

    int gone() noexcept
    {
        broken_ = true;
        return EPIPE;
    }

    unique_fd socket_;
    unique_fd pidfd_;
    int error_ = 0;
    bool broken_ = false;
};

} // namespace hugezero::detail

#endif
