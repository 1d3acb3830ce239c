/// @file
/// @brief Handing a file descriptor (a lease) to another process over a Unix socket
/// (`SCM_RIGHTS`).
#ifndef HUGEZERO_FD_PASSING_HPP
#define HUGEZERO_FD_PASSING_HPP

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <limits>
#include <optional>
#include <ostream>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <hugezero/detail/hugetlb_file.hpp>
#include <hugezero/detail/parse.hpp>
#include <hugezero/detail/unique_fd.hpp>
#include <hugezero/error.hpp>
#include <hugezero/lease.hpp>

namespace hugezero {

/// The most payload bytes one message carries with its fd.
inline constexpr std::size_t max_fd_payload = 4096;

/// A file descriptor received from another process, with the payload sent along with it.
///
/// Owns the fd (received with `O_CLOEXEC`). Move-only; fd() and release() on a closed one
/// throw hugezero::closed_handle_error.
///
/// @par Thread safety
/// Distinct objects are independent; one object must not be changed while another thread uses it.
class received_fd {
public:
    /// An empty (closed) one.
    received_fd() noexcept = default;
    /// Owns @p fd, which came with @p payload.
    received_fd(int fd, std::string payload) noexcept : fd_(fd), payload_(std::move(payload)) {}

    /// Whether it holds an fd.
    explicit operator bool() const noexcept { return static_cast<bool>(fd_); }
    /// The fd. @throws hugezero::closed_handle_error if closed.
    [[nodiscard]] int fd() const
    {
        if (!fd_)
            throw closed_handle_error("received_fd::fd() on a closed received_fd");
        return fd_.get();
    }
    /// The bytes sent along with it (possibly empty).
    [[nodiscard]] const std::string& payload() const noexcept { return payload_; }
    /// Gives up ownership: the caller closes the fd. @throws hugezero::closed_handle_error if closed.
    [[nodiscard]] int release()
    {
        if (!fd_)
            throw closed_handle_error("received_fd::release() on a closed received_fd");
        return fd_.release();
    }
    /// Closes the fd now. Does nothing if already closed.
    void close() noexcept { fd_.reset(); }

    /// Prints e.g. `fd 9 with 52 payload bytes` or `received_fd (closed)`.
    friend std::ostream& operator<<(std::ostream& out, const received_fd& r)
    {
        if (!r)
            return out << "received_fd (closed)";
        return out << "fd " << r.fd_.get() << " with " << r.payload_.size() << " payload bytes";
    }

private:
    detail::unique_fd fd_;
    std::string payload_;
};

namespace detail {

// Every message is a 4-byte little-endian payload length, then the payload; the fd rides on
// the first byte. The length makes the framing work on SOCK_STREAM as on SOCK_SEQPACKET and
// SOCK_DGRAM, and guarantees at least one byte of data (ancillary data needs one).
constexpr std::size_t fd_header_bytes = 4;

inline int socket_type(int socket) noexcept
{
    int type = 0;
    socklen_t length = sizeof type;
    return ::getsockopt(socket, SOL_SOCKET, SO_TYPE, &type, &length) == 0 ? type : -1;
}

inline void close_received_fds(msghdr& message) noexcept
{
    for (cmsghdr* c = CMSG_FIRSTHDR(&message); c != nullptr; c = CMSG_NXTHDR(&message, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        const std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (std::size_t i = 0; i < count; ++i) {
            int fd = -1;
            std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
            ::close(fd);
        }
    }
}

/// The one fd that @p message (received on @p socket) carried, in one `SCM_RIGHTS` message.
/// @throws std::system_error (`EBADMSG`, `EMSGSIZE`) for any other shape, closing what came.
inline unique_fd take_the_fd(msghdr& message, int socket)
{
    int fd = -1;
    std::size_t fds = 0;
    for (cmsghdr* c = CMSG_FIRSTHDR(&message); c != nullptr; c = CMSG_NXTHDR(&message, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            fds += (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            std::memcpy(&fd, CMSG_DATA(c), sizeof fd);
        }
    const auto reject = [&](int error, const std::string& why) {
        close_received_fds(message);
        return system_error(error, "receive_fd on socket " + std::to_string(socket) + ": " + why);
    };
    if ((message.msg_flags & MSG_CTRUNC) != 0)
        throw reject(EBADMSG, "more fds came than one message may carry");
    if (fds != 1)
        throw reject(EBADMSG, "expected a message with one fd (sent by send_fd), got " + std::to_string(fds) + " fds");
    if ((message.msg_flags & MSG_TRUNC) != 0)
        throw reject(EMSGSIZE, "the message was longer than a send_fd() message can be");
    return unique_fd(fd);
}

/// Completes the frame whose first @p got bytes are in @p buffer (a stream may deliver the
/// header in pieces, and always leaves the payload to read) and checks it.
/// @return the payload's length. @throws std::system_error (`EBADMSG`) for a malformed frame.
inline std::uint32_t complete_frame(int socket, bool stream, std::vector<char>& buffer, std::size_t got)
{
    const std::string where = "receive_fd on socket " + std::to_string(socket);
    const auto read_more = [&](std::size_t want) {
        while (got < want) {
            const ssize_t more = ::recv(socket, buffer.data() + got, want - got, 0);
            if (more < 0 && errno == EINTR)
                continue;
            if (more < 0)
                throw errno_error("receive_fd: recv on socket " + std::to_string(socket));
            if (more == 0)
                throw system_error(EBADMSG, where + ": the peer closed the connection in the middle of a message");
            got += static_cast<std::size_t>(more);
        }
    };
    if (stream)
        read_more(fd_header_bytes);
    if (got < fd_header_bytes)
        throw system_error(EBADMSG, where + ": a message of " + std::to_string(got) + " bytes is too short to be from send_fd()");
    std::uint32_t length = 0;
    for (std::size_t i = 0; i < fd_header_bytes; ++i)
        length |= static_cast<std::uint32_t>(static_cast<unsigned char>(buffer[i])) << (8 * i);
    if (length > max_fd_payload)
        throw system_error(EBADMSG, where + ": payload length " + std::to_string(length) + " exceeds the limit of "
                                        + std::to_string(max_fd_payload));
    if (stream)
        read_more(fd_header_bytes + length);
    if (got != fd_header_bytes + length)
        throw system_error(EBADMSG, where + ": the frame says " + std::to_string(length) + " payload bytes, the message has "
                                        + std::to_string(got - fd_header_bytes));
    return length;
}

// The leases' payload: "hugezero-lease 1 node=<n> page_kib=<k> pages=<p> cold=<c>".
inline std::string lease_payload(const lease& l)
{
    std::ostringstream out;
    out << "hugezero-lease 1 node=" << l.node().value() << " page_kib=" << l.page().kib() << " pages=" << l.pages()
        << " cold=" << l.cold_pages();
    return out.str();
}

/// The numbers of a payload made by lease_payload().
struct lease_payload_numbers {
    std::uint64_t node = 0;     ///< The node number.
    std::uint64_t page_kib = 0; ///< The page size in KiB.
    std::uint64_t pages = 0;    ///< The lease's pages.
    std::uint64_t cold = 0;     ///< Of those, allocated cold.
};

/// Parses exactly what lease_payload() writes: the words in order, one space apart, decimal
/// digits only (no sign, no extra space, no overflow). Empty if @p text is anything else.
inline std::optional<lease_payload_numbers> lease_payload_fields(std::string_view text)
{
    constexpr std::string_view prefix = "hugezero-lease 1 ";
    if (text.substr(0, prefix.size()) != prefix)
        return std::nullopt;
    text.remove_prefix(prefix.size());
    lease_payload_numbers n;
    const std::pair<std::string_view, std::uint64_t*> fields[] = {
        {"node=", &n.node}, {"page_kib=", &n.page_kib}, {"pages=", &n.pages}, {"cold=", &n.cold}};
    for (std::size_t i = 0; i < std::size(fields); ++i) {
        const auto& [key, value] = fields[i];
        if (text.substr(0, key.size()) != key)
            return std::nullopt;
        text.remove_prefix(key.size());
        const std::size_t end = i + 1 < std::size(fields) ? text.find(' ') : text.size();
        if (end == std::string_view::npos)
            return std::nullopt;
        const auto parsed = parse_decimal(text.substr(0, end));
        if (!parsed)
            return std::nullopt;
        *value = *parsed;
        text.remove_prefix(end == text.size() ? end : end + 1);
    }
    return n;
}

} // namespace detail

/// Sends @p fd (a duplicate arrives; @p fd stays open here) and @p payload over the connected
/// Unix socket @p socket, in one message. Works on `SOCK_STREAM`, `SOCK_SEQPACKET` and
/// `SOCK_DGRAM`; never raises `SIGPIPE`.
/// @throws std::invalid_argument if @p payload is longer than max_fd_payload.
/// @throws std::system_error with sendmsg()'s errno (`EPIPE`: the peer closed its end).
inline void send_fd(int socket, int fd, std::string_view payload = {})
{
    if (payload.size() > max_fd_payload)
        throw std::invalid_argument("hugezero: send_fd: a payload of " + std::to_string(payload.size())
                                    + " bytes is longer than the limit of " + std::to_string(max_fd_payload));
    std::string data(detail::fd_header_bytes, '\0');
    const auto length = static_cast<std::uint32_t>(payload.size());
    for (std::size_t i = 0; i < detail::fd_header_bytes; ++i)
        data[i] = static_cast<char>((length >> (8 * i)) & 0xff);
    data.append(payload);
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    iovec io{data.data(), data.size()};
    msghdr message{};
    message.msg_iov = &io;
    message.msg_iovlen = 1;
    message.msg_control = control;
    message.msg_controllen = sizeof control;
    cmsghdr* c = CMSG_FIRSTHDR(&message);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
    std::size_t sent = 0;
    while (sent < data.size()) {
        const ssize_t n = ::sendmsg(socket, &message, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            throw detail::errno_error("send_fd: sendmsg of fd " + std::to_string(fd) + " on socket " + std::to_string(socket));
        }
        sent += static_cast<std::size_t>(n);
        // A stream socket may take part of the data: the rest goes without the fd.
        io.iov_base = data.data() + sent;
        io.iov_len = data.size() - sent;
        message.msg_control = nullptr;
        message.msg_controllen = 0;
    }
}

/// Receives one message sent by send_fd() on @p socket: the fd (with `O_CLOEXEC`) and its
/// payload. Blocks until a message comes (or fails with `EAGAIN` on a non-blocking socket). On
/// a stream socket it reads exactly one message, never into the next: use a blocking socket
/// there, since a payload still in transit is waited for.
/// @return the fd and payload; empty if the peer closed the connection (end of file).
/// @throws std::system_error with recvmsg()'s errno; `EBADMSG` for a message without exactly
/// one fd or with a malformed frame (any fd that came with it is closed); `EMSGSIZE` if the
/// payload was cut short.
inline std::optional<received_fd> receive_fd(int socket)
{
    std::vector<char> buffer(detail::fd_header_bytes + max_fd_payload);
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)] = {};
    iovec io{buffer.data(), buffer.size()};
    msghdr message{};
    message.msg_iov = &io;
    message.msg_iovlen = 1;
    message.msg_control = control;
    message.msg_controllen = sizeof control;
    const bool stream = detail::socket_type(socket) == SOCK_STREAM;
    // On a stream, read the header first so as not to swallow the next message's bytes.
    if (stream)
        io.iov_len = detail::fd_header_bytes;
    ssize_t n = 0;
    do
        n = ::recvmsg(socket, &message, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        throw detail::errno_error("receive_fd: recvmsg on socket " + std::to_string(socket));
    if (n == 0 && message.msg_controllen == 0)
        return std::nullopt;
    detail::unique_fd fd = detail::take_the_fd(message, socket);
    const std::uint32_t length = detail::complete_frame(socket, stream, buffer, static_cast<std::size_t>(n));
    return received_fd(fd.release(), std::string(buffer.data() + detail::fd_header_bytes, length));
}

/// Sends lease @p l over @p socket: its fd, with its node, page size, pages and cold pages as
/// payload, for receive_lease(). The lease stays open here: the pages go back to the kernel
/// when both sides have closed it (and unmapped it).
/// @throws hugezero::closed_handle_error if @p l is closed; otherwise as send_fd().
inline void send_lease(int socket, const lease& l) { send_fd(socket, l.fd(), detail::lease_payload(l)); }

/// Receives a lease sent by send_lease(): a lease handle of its own, not tied to any pool.
///
/// It checks what the fd itself can tell: that it is a hugetlb file of the page size the
/// payload says, of exactly the size it says, with every one of its pages allocated, and that
/// the node it names is one this process may use. It cannot check, and so believes the sender
/// about, which node the pages are really on (map the lease and ask move_pages(2) if that
/// matters) and that they are zero: receive leases only from a peer you trust with your
/// guest's memory (check it with `SO_PEERCRED`).
/// @return the lease; empty if the peer closed the connection.
/// @throws std::system_error as receive_fd(), and `EBADMSG` if the payload is not a lease's or
/// the fd does not match it.
inline std::optional<lease> receive_lease(int socket)
{
    auto received = receive_fd(socket);
    if (!received)
        return std::nullopt;
    const std::string& text = received->payload();
    const auto bad = [&](const std::string& why) {
        return detail::system_error(EBADMSG, "receive_lease on socket " + std::to_string(socket) + ": " + why
                                                 + "; payload: \"" + text + "\"");
    };
    const auto fields = detail::lease_payload_fields(text);
    if (!fields)
        throw bad("not a lease sent by send_lease()");
    const auto [node, page_kib, pages, cold] = *fields;
    if (node > std::numeric_limits<unsigned>::max())
        throw bad("node number out of range");
    std::optional<page_size> page;
    try {
        page = page_size::from_kib(page_kib);
    } catch (const std::invalid_argument&) {
        throw bad("invalid page size");
    }
    if (cold > pages)
        throw bad("more cold pages than pages");
    if (detail::node_allowed(node) == false)
        throw bad("node " + std::to_string(node) + " is not a node this process can use");
    if (!detail::is_hugetlb_file(received->fd(), *page))
        throw bad("the fd is not a hugetlb file of " + to_string(*page) + " pages");
    struct stat st {};
    if (::fstat(received->fd(), &st) != 0)
        throw detail::errno_error("receive_lease: fstat of the received fd");
    if (pages > std::numeric_limits<std::uint64_t>::max() / page->bytes()
        || static_cast<std::uint64_t>(st.st_size) != pages * page->bytes())
        throw bad("the file has " + std::to_string(st.st_size) + " bytes, not " + std::to_string(pages) + " pages");
    const auto [allocated, error] = detail::pages_in_file(received->fd(), *page);
    if (error != 0)
        throw detail::system_error(error, "receive_lease: fstat of the received fd");
    if (allocated != pages)
        throw bad("the file has " + std::to_string(allocated) + " of its " + std::to_string(pages)
                  + " pages allocated: a lease has all of them");
    return detail::lease_access::make(detail::unique_fd(received->release()),
                                      hstate{node_id(static_cast<unsigned>(node)), *page}, pages, cold, nullptr);
}

} // namespace hugezero

#endif
