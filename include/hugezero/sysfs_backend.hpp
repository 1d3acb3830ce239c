/// @file
/// @brief hugezero::sysfs_backend, the real kernel's sysfs (or a tree standing for it).
#ifndef HUGEZERO_SYSFS_BACKEND_HPP
#define HUGEZERO_SYSFS_BACKEND_HPP

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <dirent.h>
#include <fcntl.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <hugezero/backend.hpp>
#include <hugezero/error.hpp>
#include <hugezero/unique_fd.hpp>

namespace hugezero {

/// The real sysfs, rooted at a directory that stands for `/sys`.
///
/// The root is opened once; every path is resolved with `openat` from that directory fd
/// (like hwloc's `HWLOC_FSROOT`), so a golden tree or a FUSE mount works exactly as `/sys`.
/// Attributes are read with one `pread` at offset 0, requests are written with exactly one
/// raw `write()`, and watches poll the attribute's own fd for `EPOLLPRI` (ABI.md §3).
class sysfs_backend final : public backend {
public:
    /// The root named by `HUGEZERO_SYSFS_ROOT` when it is set and not empty, else `/sys`.
    static std::filesystem::path default_root()
    {
        const char* root = std::getenv("HUGEZERO_SYSFS_ROOT");
        return (root != nullptr && *root != '\0') ? std::filesystem::path(root) : std::filesystem::path("/sys");
    }

    /// Opens @p root, the directory standing for `/sys`.
    /// @throws std::system_error naming @p root if it cannot be opened as a directory.
    explicit sysfs_backend(std::filesystem::path root = default_root()) : root_(std::move(root))
    {
        root_fd_.reset(::open(root_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
        if (!root_fd_)
            throw detail::errno_error("open sysfs root " + root_.string());
    }

    /// The directory standing for `/sys`.
    [[nodiscard]] const std::filesystem::path& root() const noexcept { return root_; }

    std::string read(std::string_view path) override
    {
        const unique_fd fd = open_at(path, O_RDONLY, "open");
        return read_at_zero(fd.get(), display_path(path));
    }

    std::optional<std::vector<std::string>> list(std::string_view path) override
    {
        unique_fd fd(::openat(root_fd_.get(), std::string(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        if (!fd) {
            if (errno == ENOENT)
                return std::nullopt;
            throw detail::errno_error("open directory " + display_path(path));
        }
        DIR* dir = ::fdopendir(fd.get());
        if (dir == nullptr)
            throw detail::errno_error("list directory " + display_path(path));
        (void)fd.release(); // closedir() owns it now
        const std::unique_ptr<DIR, int (*)(DIR*)> closer(dir, &::closedir);
        std::vector<std::string> names;
        errno = 0;
        while (const dirent* entry = ::readdir(dir)) {
            const std::string_view name = entry->d_name;
            if (name != "." && name != "..")
                names.emplace_back(name);
            errno = 0;
        }
        if (errno != 0)
            throw detail::errno_error("list directory " + display_path(path));
        std::sort(names.begin(), names.end());
        return names;
    }

    std::unique_ptr<attribute_writer> open_writer(std::string_view path) override
    {
        return std::make_unique<writer>(open_at(path, O_WRONLY, "open for writing"));
    }

    std::unique_ptr<attribute_watch> open_watch(std::string_view path) override
    {
        auto result = std::make_unique<watch>(open_at(path, O_RDONLY, "open for watching"), display_path(path));
        (void)result->rearm(); // a fresh kernfs fd reports "changed" until it is read once
        return result;
    }

    [[nodiscard]] std::string display_path(std::string_view path) const override
    {
        return (root_ / std::filesystem::path(path)).string();
    }

private:
    // sysfs attributes are at most one page; a buffer larger than that shows oversize content.
    static constexpr std::size_t max_attribute_size = 4096;

    class writer final : public attribute_writer {
    public:
        explicit writer(unique_fd fd) : fd_(std::move(fd)) {}
        write_outcome write(std::string_view request) override
        {
            const ssize_t written = ::write(fd_.get(), request.data(), request.size());
            if (written < 0)
                return {0, errno};
            return {static_cast<std::size_t>(written), 0};
        }

    private:
        unique_fd fd_;
    };

    class watch final : public attribute_watch {
    public:
        watch(unique_fd fd, std::string display) : fd_(std::move(fd)), display_(std::move(display)) {}
        [[nodiscard]] int fd() const noexcept override { return fd_.get(); }
        // Only EPOLLPRI: kernfs files are always EPOLLIN|EPOLLOUT, registering those would spin.
        [[nodiscard]] std::uint32_t events() const noexcept override { return EPOLLPRI; }
        std::string rearm() override { return read_at_zero(fd_.get(), display_); }

    private:
        unique_fd fd_;
        std::string display_;
    };

    unique_fd open_at(std::string_view path, int flags, const char* action) const
    {
        unique_fd fd(::openat(root_fd_.get(), std::string(path).c_str(), flags | O_CLOEXEC));
        if (!fd)
            throw detail::errno_error(std::string(action) + " " + display_path(path));
        return fd;
    }

    // pread at offset 0 (a plain read() at EOF would not re-arm kernfs notification).
    static std::string read_at_zero(int fd, const std::string& display)
    {
        std::array<char, max_attribute_size + 1> buffer; // NOLINT: filled by pread
        ssize_t got = 0;
        do
            got = ::pread(fd, buffer.data(), buffer.size(), 0);
        while (got < 0 && errno == EINTR); // reads are idempotent: retrying is safe
        if (got < 0)
            throw detail::errno_error("read " + display);
        std::string content(buffer.data(), static_cast<std::size_t>(got));
        if (content.size() > max_attribute_size)
            throw parse_error(display, content, "longer than a sysfs attribute can be (4096 bytes)");
        return content;
    }

    std::filesystem::path root_;
    unique_fd root_fd_;
};

} // namespace hugezero

#endif
