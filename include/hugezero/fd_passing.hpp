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

#include <hugezero/detail/fd_frame.hpp>
#include <hugezero/detail/hugetlb_file.hpp>
#include <hugezero/error.hpp>
#include <hugezero/lease.hpp>
#include <hugezero/socket_message.hpp>
#include <hugezero/unique_fd.hpp>

namespace hugezero {

/// The most payload bytes one message carries with its fd.
inline constexpr std::size_t max_fd_payload = detail::fd_payload_limit;

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
    unique_fd fd_;
    std::string payload_;
};


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
    if (const int error = send_message(socket, data, fd); error != 0)
        throw detail::system_error(error, "send_fd: sendmsg of fd " + std::to_string(fd) + " on socket " + std::to_string(socket));
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
    // On a stream, the header first, so as not to swallow the next message's bytes.
    const bool stream = detail::socket_type(socket) == SOCK_STREAM;
    socket_message m;
    if (const int error = receive_message(socket, detail::fd_header_bytes + (stream ? 0 : max_fd_payload), m); error != 0)
        throw detail::system_error(error, "receive_fd: recvmsg on socket " + std::to_string(socket));
    if (m.end)
        return std::nullopt;
    const auto reject = [&](int error, const std::string& why) {
        return detail::system_error(error, "receive_fd on socket " + std::to_string(socket) + ": " + why);
    }; // what came is closed with m
    if (m.fds_dropped)
        throw reject(EBADMSG, "more fds came than one message may carry");
    if (m.fds.size() != 1)
        throw reject(EBADMSG, "expected a message with one fd (sent by send_fd), got " + std::to_string(m.fds.size()) + " fds");
    if (m.truncated)
        throw reject(EMSGSIZE, "the message was longer than a send_fd() message can be");
    std::vector<char> buffer(detail::fd_header_bytes + max_fd_payload);
    std::memcpy(buffer.data(), m.bytes.data(), m.bytes.size());
    const std::uint32_t length = detail::complete_frame(socket, stream, buffer, m.bytes.size());
    return received_fd(m.fds.front().release(), std::string(buffer.data() + detail::fd_header_bytes, length));
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
    return detail::lease_access::make(unique_fd(received->release()),
                                      hstate{node_id(static_cast<unsigned>(node)), *page}, pages, cold, nullptr);
}

} // namespace hugezero

#endif
