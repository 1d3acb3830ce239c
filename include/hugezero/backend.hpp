/// @file
/// @brief hugezero::backend, the one small interface between hugezero and "sysfs".
#ifndef HUGEZERO_BACKEND_HPP
#define HUGEZERO_BACKEND_HPP

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <hugezero/hugetlb_files.hpp>

namespace hugezero {

/// What one raw `write()` of a request did.
///
/// ABI.md §3: success, `EINTR` and a short count all mean "the request ended"; only a re-read
/// of the counter tells what was done. So this is reported as is, never retried.
struct write_outcome {
    std::size_t bytes_written = 0; ///< Bytes the write accepted (when `error` is 0).
    int error = 0;                 ///< The write's errno, or 0 when it returned a count.

    /// Whether the write returned a count (possibly short) rather than an error.
    [[nodiscard]] bool succeeded() const noexcept { return error == 0; }
};

/// A handle for writing requests to one attribute, owned by one thread.
///
/// Each writer has its own open file: kernfs serialises operations on one open file, so a
/// shared one would make writers wait for each other and a poller wait behind a long write.
class attribute_writer {
public:
    virtual ~attribute_writer() = default;
    /// Writes @p request with exactly one `write()` call. Never loops, never retries: a short
    /// count or `EINTR` is returned to the caller (re-sending digits would change the request).
    virtual write_outcome write(std::string_view request) = 0;
};

/// A pollable handle on one attribute, for notifications of change.
///
/// Put fd() into an epoll set for events(); after each wake-up call rearm(), which reads the
/// attribute afresh (and, for sysfs, re-arms kernfs's notification by reading at offset 0).
class attribute_watch {
public:
    virtual ~attribute_watch() = default;
    /// The descriptor to poll. Owned by this object.
    [[nodiscard]] virtual int fd() const noexcept = 0;
    /// The epoll events that mean "changed" (`EPOLLPRI` for sysfs, `EPOLLIN` for an eventfd).
    [[nodiscard]] virtual std::uint32_t events() const noexcept = 0;
    /// Re-arms the notification and returns the attribute's current content.
    /// @throws std::system_error naming the attribute if it cannot be read.
    virtual std::string rearm() = 0;
};

/// The interface every source of hugetlb state implements: the real sysfs, or the simulated
/// kernel. Paths are relative to the directory standing for `/sys` (for example
/// `devices/system/node/online`).
///
/// @par Thread safety
/// All member functions may be called concurrently. Each writer and watch they return is
/// used by one thread at a time.
class backend {
public:
    virtual ~backend() = default;

    /// The whole content of the attribute at @p path, read once at offset 0.
    /// @throws std::system_error (with the errno) naming the full path if it cannot be read.
    virtual std::string read(std::string_view path) = 0;

    /// The names in directory @p path (without `.` and `..`), sorted; std::nullopt when the
    /// directory does not exist.
    /// @throws std::system_error naming the full path for any other failure.
    virtual std::optional<std::vector<std::string>> list(std::string_view path) = 0;

    /// Opens @p path for writing requests.
    /// @throws std::system_error naming the full path if it cannot be opened.
    virtual std::unique_ptr<attribute_writer> open_writer(std::string_view path) = 0;

    /// Opens @p path for change notifications; the returned watch is already armed.
    /// @throws std::system_error naming the full path if it cannot be opened.
    virtual std::unique_ptr<attribute_watch> open_watch(std::string_view path) = 0;

    /// How to show @p path to a person: a full path such as `/sys/devices/system/node/online`.
    [[nodiscard]] virtual std::string display_path(std::string_view path) const = 0;

    /// The hugetlb file operations whose pages these counters count, for hugezero::pool: the
    /// real kernel's (kernel_hugetlb_files) unless the backend is a simulation.
    [[nodiscard]] virtual std::shared_ptr<hugetlb_files> files() const { return kernel_hugetlb_files::instance(); }
};

} // namespace hugezero

#endif
