/// @file
/// @brief Internals of fd_passing.hpp: the frame of a send_fd() message, and the payload of a
/// lease sent by send_lease().
#ifndef HUGEZERO_DETAIL_FD_FRAME_HPP
#define HUGEZERO_DETAIL_FD_FRAME_HPP

#include <cstdint>
#include <cstring>
#include <iterator>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <sys/socket.h>

#include <hugezero/detail/parse.hpp>
#include <hugezero/error.hpp>
#include <hugezero/lease.hpp>

namespace hugezero::detail {

// The most payload bytes one message carries with its fd (hugezero::fd_payload_limit).
inline constexpr std::size_t fd_payload_limit = 4096;

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
    if (length > fd_payload_limit)
        throw system_error(EBADMSG, where + ": payload length " + std::to_string(length) + " exceeds the limit of "
                                        + std::to_string(fd_payload_limit));
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

} // namespace hugezero::detail

#endif
