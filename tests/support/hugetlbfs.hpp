// A hugetlbfs mount of its own for a test (root): a fresh directory, mounted with one page size,
// unmounted (its files' pages go back) and removed when the test ends.
#ifndef HUGEZERO_TESTS_SUPPORT_HUGETLBFS_HPP
#define HUGEZERO_TESTS_SUPPORT_HUGETLBFS_HPP

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <sys/mount.h>

#include <hugezero/page_size.hpp>

#include "support/temp_dir.hpp"

namespace hugezero::test {

class hugetlbfs_mount {
public:
    explicit hugetlbfs_mount(page_size size)
    {
        const std::string options = "pagesize=" + std::to_string(size.kib()) + "K";
        if (::mount("none", dir_.path().c_str(), "hugetlbfs", 0, options.c_str()) != 0) {
            reason_ = "cannot mount hugetlbfs (" + options + ") on " + dir_.path().string() + ": " + std::strerror(errno);
            return;
        }
        mounted_ = true;
    }
    hugetlbfs_mount(const hugetlbfs_mount&) = delete;
    hugetlbfs_mount& operator=(const hugetlbfs_mount&) = delete;
    ~hugetlbfs_mount()
    {
        if (mounted_ && ::umount2(dir_.path().c_str(), 0) != 0) // busy: the last holder frees it
            (void)::umount2(dir_.path().c_str(), MNT_DETACH);
    }

    [[nodiscard]] bool ok() const { return mounted_; }
    [[nodiscard]] const std::string& reason() const { return reason_; }
    [[nodiscard]] const std::filesystem::path& path() const { return dir_.path(); }

    // The names of the files in it, sorted.
    [[nodiscard]] std::vector<std::string> names() const
    {
        std::vector<std::string> found;
        for (const auto& entry : std::filesystem::directory_iterator(path()))
            found.push_back(entry.path().filename().string());
        std::sort(found.begin(), found.end());
        return found;
    }

private:
    temp_dir dir_;
    bool mounted_ = false;
    std::string reason_;
};

} // namespace hugezero::test

#endif
