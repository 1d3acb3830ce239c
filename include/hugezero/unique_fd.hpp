/// @file
/// @brief hugezero::unique_fd: the one owner of file descriptors in hugezero and its tools.
#ifndef HUGEZERO_UNIQUE_FD_HPP
#define HUGEZERO_UNIQUE_FD_HPP

#include <cerrno>
#include <utility>

#include <unistd.h>

namespace hugezero {

/// Owns one file descriptor and closes it exactly once.
///
/// Every fd hugezero opens is `O_CLOEXEC` (a VMM forks and execs helpers; our fds must not
/// leak into them). `close()` is never retried on `EINTR`: on Linux the descriptor is released
/// even then, and a retry could close an fd another thread just got (see Android's unique_fd
/// and folly's closeNoInt).
class unique_fd {
public:
    /// Holds no descriptor.
    unique_fd() noexcept = default;
    /// Owns @p fd (-1: none).
    explicit unique_fd(int fd) noexcept : fd_(fd) {}
    unique_fd(const unique_fd&) = delete;
    unique_fd& operator=(const unique_fd&) = delete;
    /// Takes @p other's descriptor; @p other holds none.
    unique_fd(unique_fd&& other) noexcept : fd_(other.release()) {}
    /// Closes the descriptor held, then takes @p other's.
    unique_fd& operator=(unique_fd&& other) noexcept
    {
        if (this != &other)
            reset(other.release());
        return *this;
    }
    /// Closes the descriptor held, if any.
    ~unique_fd() { reset(); }

    /// The descriptor, or -1.
    [[nodiscard]] int get() const noexcept { return fd_; }
    /// Whether a descriptor is held.
    explicit operator bool() const noexcept { return fd_ >= 0; }

    /// Gives up ownership without closing.
    [[nodiscard]] int release() noexcept { return std::exchange(fd_, -1); }

    /// Closes the held descriptor (if any) and takes `fd`. Keeps `errno` as it was, so a
    /// caller can reset() on an error path and still report the errno it is handling.
    void reset(int fd = -1) noexcept
    {
        const int old = std::exchange(fd_, fd);
        if (old >= 0) {
            const int saved = errno;
            ::close(old);
            errno = saved;
        }
    }

private:
    int fd_ = -1;
};

} // namespace hugezero

#endif
