/// @file
/// @brief The exceptions hugezero throws besides std::system_error and std::invalid_argument.
#ifndef HUGEZERO_ERROR_HPP
#define HUGEZERO_ERROR_HPP

#include <cerrno>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>

#include <hugezero/detail/parse.hpp>
#include <hugezero/hstate.hpp>

namespace hugezero {

/// A kernel file held content hugezero does not accept (sysfs prints a fixed format; anything
/// else means a different kernel, a broken fake tree, or a bug, and guessing would hide it).
///
/// The message names the file, says what was expected, and shows the content.
class parse_error : public std::runtime_error {
public:
    /// The file at @p path held @p content, rejected because of @p reason.
    parse_error(std::string path, std::string content, std::string reason)
        : std::runtime_error("hugezero: malformed " + path + ": " + reason + "; content: "
                             + detail::quote_content(content)),
          path_(std::move(path)), content_(std::move(content)), reason_(std::move(reason))
    {
    }
    /// The file, as a full path (or the simulated kernel's name for it).
    [[nodiscard]] const std::string& path() const noexcept { return path_; }
    /// The content that was rejected (or a directory entry's name).
    [[nodiscard]] const std::string& content() const noexcept { return content_; }
    /// Why it was rejected.
    [[nodiscard]] const std::string& reason() const noexcept { return reason_; }

private:
    std::string path_;
    std::string content_;
    std::string reason_;
};

/// An hstate cannot be pre-zeroed because the kernel lacks the `zeroable_hugepages` interface.
///
/// This is the normal case on every stock kernel today: the interface is a proposed,
/// unmerged kernel ABI. The message says so and points to the stock-kernel pool.
class zeroing_unsupported : public std::runtime_error {
public:
    /// @p which has no `zeroable_hugepages` file at @p path.
    zeroing_unsupported(const hstate& which, const std::string& path)
        : std::runtime_error("hugezero: cannot pre-zero " + to_string(which)
                             + ": this kernel lacks the zeroable_hugepages pre-zeroing interface (" + path
                             + " does not exist; the interface is a proposed kernel ABI that stock kernels do not "
                               "have). On a stock kernel, use hugezero::pool: it keeps hugetlb memory allocated, "
                               "hence zeroed, ahead of time and leases it to VMs as fds."),
          which_(which)
    {
    }
    /// The hstate that cannot be pre-zeroed.
    [[nodiscard]] const hstate& which() const noexcept { return which_; }

private:
    hstate which_;
};

/// A handle was used after close() or after being moved from: a programming error.
class closed_handle_error : public std::logic_error {
public:
    /// @p what names the handle and the operation.
    explicit closed_handle_error(const std::string& what) : std::logic_error("hugezero: " + what) {}
};

namespace detail {

/// A std::system_error for @p error with a message "hugezero: <what>: <strerror>".
inline std::system_error system_error(int error, const std::string& what)
{
    return std::system_error(error, std::system_category(), "hugezero: " + what);
}

/// The same, for the current errno.
inline std::system_error errno_error(const std::string& what) { return system_error(errno, what); }

} // namespace detail

} // namespace hugezero

#endif
