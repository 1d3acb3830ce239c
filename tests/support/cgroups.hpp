// cgroup v2 directories for tests that check where hugetlb pages are charged (root): found from
// /proc/self/mounts, made with the hugetlb controller, and removed with every change undone.
#ifndef HUGEZERO_TESTS_SUPPORT_CGROUPS_HPP
#define HUGEZERO_TESTS_SUPPORT_CGROUPS_HPP

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>

#include <unistd.h>

#include <hugezero/page_size.hpp>

#include "support/threads.hpp"

namespace hugezero::test {

// Where cgroup v2 is mounted (on these machines /sys/fs/cgroup/unified, beside the v1
// hierarchies), if it is.
inline std::optional<std::filesystem::path> cgroup2_mount()
{
    std::ifstream mounts("/proc/self/mounts");
    std::string device, where, type;
    std::string rest;
    while (mounts >> device >> where >> type && std::getline(mounts, rest))
        if (type == "cgroup2")
            return std::filesystem::path(where);
    return std::nullopt;
}

inline std::string read_line(const std::filesystem::path& path)
{
    std::ifstream in(path);
    std::string line;
    std::getline(in, line);
    return line;
}

inline bool write_line(const std::filesystem::path& path, const std::string& text)
{
    std::ofstream out(path);
    out << text << '\n';
    out.flush();
    return static_cast<bool>(out);
}

// The cgroup v2 directory this process is in (the "0::" line of /proc/self/cgroup).
inline std::filesystem::path own_cgroup(const std::filesystem::path& mount)
{
    std::ifstream in("/proc/self/cgroup");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind("0::", 0) == 0)
            return mount / std::filesystem::path(line.substr(3)).relative_path();
    return mount;
}

// A new child cgroup of the v2 root with the hugetlb controller, removed on destruction (with
// +hugetlb taken back from the root's subtree_control if this made it so). ok() or reason().
class test_cgroup {
public:
    explicit test_cgroup(const std::string& name)
    {
        const auto mount = cgroup2_mount();
        if (!mount) {
            reason_ = "cgroup v2 is not mounted";
            return;
        }
        root_ = *mount;
        if (read_line(root_ / "cgroup.controllers").find("hugetlb") == std::string::npos) {
            reason_ = "the cgroup v2 hierarchy at " + root_.string() + " has no hugetlb controller";
            return;
        }
        if (read_line(root_ / "cgroup.subtree_control").find("hugetlb") == std::string::npos) {
            if (!write_line(root_ / "cgroup.subtree_control", "+hugetlb")) {
                reason_ = "cannot enable hugetlb in " + (root_ / "cgroup.subtree_control").string();
                return;
            }
            enabled_ = true;
        }
        path_ = root_ / (name + "-" + std::to_string(::getpid()));
        std::error_code error;
        if (!std::filesystem::create_directory(path_, error)) {
            reason_ = "cannot create " + path_.string() + ": " + error.message();
            path_.clear();
            return;
        }
    }
    test_cgroup(const test_cgroup&) = delete;
    test_cgroup& operator=(const test_cgroup&) = delete;
    ~test_cgroup()
    {
        if (!path_.empty()) {
            // A process that left a moment ago (or a helper just reaped) may still be counted.
            (void)wait_until([&] {
                std::error_code error;
                return std::filesystem::remove(path_, error) || !std::filesystem::exists(path_);
            }, std::chrono::seconds(5));
        }
        if (enabled_)
            (void)write_line(root_ / "cgroup.subtree_control", "-hugetlb");
    }

    [[nodiscard]] bool ok() const { return reason_.empty(); }
    [[nodiscard]] const std::string& reason() const { return reason_; }
    [[nodiscard]] const std::filesystem::path& path() const { return path_; }
    [[nodiscard]] const std::filesystem::path& root() const { return root_; }

    // hugetlb.<size>.current: the bytes of huge pages of @p size charged here.
    [[nodiscard]] std::uint64_t charged(page_size size) const
    {
        return std::stoull("0" + read_line(path_ / ("hugetlb." + hugetlb_name(size) + ".current")));
    }
    // Sets hugetlb.<size>.max.
    bool limit(page_size size, std::uint64_t bytes) const
    {
        return write_line(path_ / ("hugetlb." + hugetlb_name(size) + ".max"), std::to_string(bytes));
    }

    // The size as the hugetlb controller names its files: 2MB, 1GB.
    static std::string hugetlb_name(page_size size)
    {
        return size.bytes() >= (std::uint64_t{1} << 30) ? std::to_string(size.bytes() >> 30) + "GB"
                                                        : std::to_string(size.bytes() >> 20) + "MB";
    }

private:
    std::filesystem::path root_;
    std::filesystem::path path_;
    bool enabled_ = false;
    std::string reason_;
};

// Moves this whole process into @p to for its lifetime, and back to where it was.
class process_in_cgroup {
public:
    process_in_cgroup(const std::filesystem::path& root, const std::filesystem::path& to) : from_(own_cgroup(root))
    {
        ok_ = write_line(to / "cgroup.procs", std::to_string(::getpid()));
    }
    process_in_cgroup(const process_in_cgroup&) = delete;
    process_in_cgroup& operator=(const process_in_cgroup&) = delete;
    ~process_in_cgroup()
    {
        if (ok_)
            (void)write_line(from_ / "cgroup.procs", std::to_string(::getpid()));
    }
    [[nodiscard]] bool ok() const { return ok_; }

private:
    std::filesystem::path from_;
    bool ok_ = false;
};

} // namespace hugezero::test

#endif
