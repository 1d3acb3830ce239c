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
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hugezero/detail/hugetlb_file.hpp>
#include <hugezero/unique_fd.hpp>

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

namespace charge_child {

// The helper's code runs in a copy of a process whose other threads may have held any lock at
// the copy, the sanitizers' included: it is not instrumented, and it calls the kernel through
// syscall() only, which no sanitizer intercepts (read(), mmap() and the like are).
#if defined(__clang__) || defined(__GNUC__)
#define HUGEZERO_DETAIL_CHILD_CODE __attribute__((no_sanitize("address", "thread", "undefined")))
#else
#define HUGEZERO_DETAIL_CHILD_CODE
#endif

HUGEZERO_DETAIL_CHILD_CODE inline long sys(long number, long a = 0, long b = 0, long c = 0, long d = 0, long e = 0,
                                           long f = 0) noexcept
{
    return ::syscall(number, a, b, c, d, e, f);
}

HUGEZERO_DETAIL_CHILD_CODE inline bool same(const char* a, const char* b, std::size_t n) noexcept
{
    for (std::size_t i = 0; i < n; ++i)
        if (a[i] != b[i])
            return false;
    return true;
}

/// Whether line [@p begin, @p end) of /proc/self/maps is a mapping the helper must drop: a
/// shared one, or a private hugetlb one.
HUGEZERO_DETAIL_CHILD_CODE inline bool must_unmap(const char* begin, const char* end, std::uintptr_t& start,
                                                  std::uintptr_t& stop) noexcept
{
    const char* p = begin;
    std::uintptr_t* values[2] = {&start, &stop};
    for (std::uintptr_t* value : values) {
        *value = 0;
        for (; p < end; ++p) {
            const char c = *p;
            const int digit = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
            if (digit < 0)
                break;
            *value = *value * 16 + static_cast<std::uintptr_t>(digit);
        }
        if (value == &start && (p >= end || *p++ != '-'))
            return false;
    }
    if (p + 5 > end)
        return false;
    if (p[4] == 's') // " rw-s"
        return true;
    static constexpr char hugetlb[] = "anon_hugepage";
    const std::size_t n = sizeof(hugetlb) - 1;
    for (const char* q = p; q + n <= end; ++q)
        if (same(q, hugetlb, n))
            return true;
    return false;
}

/// Unmaps every shared and every hugetlb mapping the helper inherited.
HUGEZERO_DETAIL_CHILD_CODE inline void drop_inherited_mappings() noexcept
{
    const long maps = sys(SYS_openat, AT_FDCWD, reinterpret_cast<long>("/proc/self/maps"), O_RDONLY | O_CLOEXEC);
    if (maps < 0)
        return;
    char buffer[8192];
    std::size_t held = 0;
    for (;;) {
        const long n = sys(SYS_read, maps, reinterpret_cast<long>(buffer + held), static_cast<long>(sizeof(buffer) - held));
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
                sys(SYS_munmap, static_cast<long>(start), static_cast<long>(stop - start));
            line = i + 1;
        }
        if (line == 0 && held == sizeof(buffer))
            line = held; // a line longer than the buffer: no mapping of ours, skip it
        for (std::size_t i = line; i < held; ++i)
            buffer[i - line] = buffer[i];
        held -= line;
    }
    sys(SYS_close, maps);
}

/// Closes every descriptor but @p sock: close_range() (Linux 5.9), else one by one.
HUGEZERO_DETAIL_CHILD_CODE inline void close_all_but(int sock) noexcept
{
    const bool below = sock == 0 || sys(SYS_close_range, 0, sock - 1, 0) == 0;
    const bool above = sys(SYS_close_range, sock + 1, ~0U, 0) == 0;
    if (below && above)
        return;
    struct rlimit64_like {
        std::uint64_t soft;
        std::uint64_t hard;
    } limit{1024, 1024};
    (void)sys(SYS_prlimit64, 0, RLIMIT_NOFILE, 0, reinterpret_cast<long>(&limit));
    for (std::uint64_t fd = 0; fd < limit.soft && fd < (std::uint64_t{1} << 20); ++fd)
        if (static_cast<int>(fd) != sock)
            sys(SYS_close, static_cast<long>(fd));
}

/// Takes on the caller's memory policy (0, or its errno: the pages would land elsewhere) and
/// its CPUs (where the cgroup allows).
HUGEZERO_DETAIL_CHILD_CODE inline int take_on(const charge_request& r) noexcept
{
    long done = 0;
    if (r.policy_mode == 0)
        done = sys(SYS_set_mempolicy, 0, 0, 0);
    else if (r.policy_mode > 0)
        done = sys(SYS_set_mempolicy, r.policy_mode, reinterpret_cast<long>(r.policy_nodes),
                   static_cast<long>(8 * sizeof(r.policy_nodes) + 1));
    if (done != 0 && errno != ENOSYS)
        return errno;
    if (r.cpus_valid != 0)
        (void)sys(SYS_sched_setaffinity, 0, static_cast<long>(sizeof(r.cpus)), reinterpret_cast<long>(&r.cpus));
    return 0;
}

HUGEZERO_DETAIL_CHILD_CODE inline int perform(const charge_request& r, int fd, bool populate_write) noexcept
{
    const auto offset = static_cast<long>(r.first * r.page_bytes);
    const auto length = static_cast<long>(r.count * r.page_bytes);
    if (r.op == charge_op::allocate || !populate_write)
        return sys(SYS_fallocate, fd, 0, offset, length) == 0 ? 0 : errno;
    const long start = sys(SYS_mmap, 0, length, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, offset);
    if (start < 0 && start > -4096)
        return errno;
    int error = 0;
    while (sys(SYS_madvise, start, length, madv_populate_write) != 0) {
        if (errno == EINTR)
            continue; // the pages done stay, the rest is asked for again
        error = errno == EFAULT ? ENOSPC : errno; // EFAULT: the fault would have raised SIGBUS
        break;
    }
    sys(SYS_munmap, start, length);
    return error;
}

HUGEZERO_DETAIL_CHILD_CODE inline bool answer(int sock, int error) noexcept
{
    const charge_reply reply{error};
    return sys(SYS_sendto, sock, reinterpret_cast<long>(&reply), sizeof(reply), MSG_NOSIGNAL, 0, 0)
           == static_cast<long>(sizeof(reply));
}

/// The helper's life: serve requests until the pool closes its end of the socket. Its signal
/// handlers are the defaults (clone3(CLONE_CLEAR_SIGHAND)): no handler of the application runs
/// in it, and a SIGTERM to the tenant's cgroup ends it (the pool then starts another).
HUGEZERO_DETAIL_CHILD_CODE [[noreturn]] inline void serve(int sock, bool populate_write) noexcept
{
    close_all_but(sock);
    drop_inherited_mappings();
    if (!answer(sock, 0)) // ready: nothing inherited is held any more
        sys(SYS_exit_group, 0);
    for (;;) {
        alignas(charge_request) char raw[sizeof(charge_request)]; // not zeroed: no memset() call
        alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int))];
        iovec io{raw, sizeof(raw)};
        msghdr message{};
        message.msg_iov = &io;
        message.msg_iovlen = 1;
        message.msg_control = control;
        message.msg_controllen = sizeof(control);
        const long n = sys(SYS_recvmsg, sock, reinterpret_cast<long>(&message), MSG_CMSG_CLOEXEC);
        if (n < 0 && errno == EINTR)
            continue;
        if (n != static_cast<long>(sizeof(raw)))
            sys(SYS_exit_group, 0); // the pool closed its end (or sent nonsense): done
        const auto& request = *reinterpret_cast<const charge_request*>(raw);
        int fd = -1;
        if (message.msg_controllen >= CMSG_LEN(sizeof(int))) {
            const auto* header = reinterpret_cast<const cmsghdr*>(control);
            if (header->cmsg_level == SOL_SOCKET && header->cmsg_type == SCM_RIGHTS) {
                const auto* data = reinterpret_cast<const char*>(CMSG_DATA(header));
                char* into = reinterpret_cast<char*>(&fd);
                for (std::size_t i = 0; i < sizeof(fd); ++i)
                    into[i] = data[i];
            }
        }
        int error = EBADF;
        if (fd >= 0) {
            error = take_on(request);
            if (error == 0)
                error = perform(request, fd, populate_write);
            sys(SYS_close, fd);
        }
        if (!answer(sock, error))
            sys(SYS_exit_group, 0);
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
        constexpr std::uint64_t clone_clear_sighand = 0x100000000ULL; // Linux 5.5
        constexpr std::uint64_t clone_into_cgroup = 0x200000000ULL;   // Linux 5.7
        const bool populate_write = populate_write_supported(); // probed here, not in the copy
        int pidfd = -1;
        clone3_args args;
        args.flags = clone_pidfd | clone_clear_sighand | clone_into_cgroup;
        args.pidfd = reinterpret_cast<std::uintptr_t>(&pidfd);
        args.exit_signal = 0; // no SIGCHLD: the process's own wait(-1) does not see it
        args.cgroup = static_cast<std::uint64_t>(cgroup_dir);
        const long pid = ::syscall(SYS_clone3, &args, sizeof(args));
        if (pid == 0)
            charge_child::serve(theirs.get(), populate_write);
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
    /// Ends the helper and reaps it. It is killed rather than asked: it holds nothing, and a
    /// helper in a frozen cgroup, or whose socket a forked child of this process still holds,
    /// would never see the end of its socket.
    ~charge_helper()
    {
        socket_.reset();
        if (pidfd_) {
            (void)::syscall(SYS_pidfd_send_signal, pidfd_.get(), SIGKILL, nullptr, 0U);
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

    /// Has the helper do @p r on @p fd; 0 or the errno (`EPIPE`: the helper is gone). A signal
    /// to this thread meanwhile does not cut the wait short (the pool sends none).
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
    // Waits for the helper's answer, or its end (its pidfd turns readable when it exits, even
    // if another process still holds its end of the socket).
    int wait_reply() noexcept
    {
        for (;;) {
            pollfd ready[2] = {{socket_.get(), POLLIN, 0}, {pidfd_.get(), POLLIN, 0}};
            if (::poll(ready, 2, -1) < 0) {
                if (errno == EINTR)
                    continue;
                return gone();
            }
            if ((ready[0].revents & POLLIN) == 0)
                return gone(); // exited, or its socket broke
            charge_reply reply;
            const ssize_t n = ::recv(socket_.get(), &reply, sizeof(reply), MSG_DONTWAIT);
            if (n == static_cast<ssize_t>(sizeof(reply)))
                return reply.error;
            if (n < 0 && (errno == EINTR || errno == EAGAIN))
                continue;
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
