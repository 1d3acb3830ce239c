/// @file
/// @brief hugezero::detail::charged_files: the real kernel's hugetlb files, with every page
/// allocated by a helper process in a cgroup, so that it is charged there.
#ifndef HUGEZERO_DETAIL_CHARGED_FILES_HPP
#define HUGEZERO_DETAIL_CHARGED_FILES_HPP

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include <fcntl.h>
#include <sched.h>
#include <sys/syscall.h>

#include <hugezero/detail/lock_rank.hpp>
#include <hugezero/detail/pool/charge_helper.hpp>
#include <hugezero/hugetlb_files.hpp>
#include <hugezero/unique_fd.hpp>

namespace hugezero::detail {

/// Opens the cgroup v2 directory @p dir for clone3(CLONE_INTO_CGROUP) and checks that its
/// pages can be charged there: it is a cgroup v2 directory with the hugetlb controller enabled.
/// @throws std::system_error naming the directory and what is wrong.
inline unique_fd open_charge_cgroup(const std::filesystem::path& dir)
{
    unique_fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fd)
        throw std::system_error(errno, std::generic_category(), "hugezero: cannot open cgroup " + dir.string());
    std::ifstream controllers(dir / "cgroup.controllers");
    if (!controllers)
        throw std::system_error(ENOTDIR, std::generic_category(),
                                "hugezero: " + dir.string() + " is not a cgroup v2 directory (no cgroup.controllers)");
    std::string word;
    bool hugetlb = false;
    while (controllers >> word)
        hugetlb = hugetlb || word == "hugetlb";
    if (!hugetlb)
        throw std::system_error(EOPNOTSUPP, std::generic_category(),
                                "hugezero: the hugetlb controller is not enabled in cgroup " + dir.string()
                                    + " (write +hugetlb to its parent's cgroup.subtree_control)");
    return fd;
}

/// hugetlb_files whose allocate() and populate windows run in helper processes placed in one
/// cgroup (see charge_helper): the pages are charged there. Everything else is @p base's.
/// Helpers start on demand, one per caller at a time, and end with this object.
class charged_files final : public hugetlb_files {
public:
    /// @throws std::system_error naming @p cgroup if it cannot be used, or if the first helper
    /// cannot be placed there (`EBUSY`: it delegates controllers to child cgroups, and cgroup v2
    /// lets no process live in such a one).
    charged_files(std::shared_ptr<hugetlb_files> base, const std::filesystem::path& cgroup)
        : base_(std::move(base)), cgroup_(cgroup), dir_(open_charge_cgroup(cgroup))
    {
        auto first = std::make_unique<charge_helper>(dir_.get());
        if (const int error = first->error(); error != 0)
            throw std::system_error(error, std::generic_category(),
                                    "hugezero: cannot start a process in cgroup " + cgroup.string() + " to charge pages to it");
        idle_.push_back(std::move(first));
    }

    /// The cgroup the pages are charged to.
    [[nodiscard]] const std::filesystem::path& cgroup() const noexcept { return cgroup_; }

    /// How many more pages of @p page the cgroup's hugetlb limits let it be charged: the least
    /// room under `hugetlb.<size>.max` of the cgroup and of each ancestor that has one. The
    /// maximum when no limit is set or none can be read (the kernel's `ENOSPC` then tells).
    [[nodiscard]] std::uint64_t room(page_size page) const noexcept
    {
        std::uint64_t pages = std::numeric_limits<std::uint64_t>::max();
        try {
            const std::string name = "hugetlb." + hugetlb_size_name(page);
            for (std::filesystem::path dir = cgroup_; dir.has_relative_path(); dir = dir.parent_path()) {
                std::ifstream max_file(dir / (name + ".max"));
                std::ifstream current_file(dir / (name + ".current"));
                std::string max;
                std::uint64_t current = 0;
                if (!(max_file >> max) || !(current_file >> current))
                    break; // the hierarchy's root has no limit files
                if (max == "max")
                    continue;
                const std::uint64_t limit = std::stoull(max);
                pages = std::min(pages, (limit > current ? limit - current : 0) / page.bytes());
            }
        } catch (...) {
        }
        return pages;
    }

    /// The size as the hugetlb controller names its files: `2MB`, `1GB`, `64KB`.
    static std::string hugetlb_size_name(page_size page)
    {
        const std::uint64_t kib = page.kib();
        if (kib % (1024 * 1024) == 0)
            return std::to_string(kib / (1024 * 1024)) + "GB";
        if (kib % 1024 == 0)
            return std::to_string(kib / 1024) + "MB";
        return std::to_string(kib) + "KB";
    }

    int create(const std::string& name, page_size page) noexcept override { return base_->create(name, page); }
    int create_in(int dir, const std::string& name, page_size page) noexcept override
    {
        return base_->create_in(dir, name, page);
    }
    int allocate(int fd, page_size page, std::uint64_t first, std::uint64_t count) noexcept override
    {
        return run(charge_op::allocate, fd, page, first, count);
    }
    std::unique_ptr<populate_window> window(int fd, page_size page, std::uint64_t, int& error) noexcept override
    {
        error = 0;
        try {
            return std::make_unique<charged_window>(*this, fd, page);
        } catch (...) {
            error = ENOMEM;
            return nullptr;
        }
    }
    int scrub(int fd, page_size page, std::uint64_t first, std::uint64_t count) noexcept override
    {
        return base_->scrub(fd, page, first, count);
    }
    int reopen(int fd) noexcept override { return base_->reopen(fd); }
    int sole_reference(int fd, std::string& holder) noexcept override { return base_->sole_reference(fd, holder); }
    int resize(int fd, page_size page, std::uint64_t pages) noexcept override { return base_->resize(fd, page, pages); }
    file_pages pages_in(int fd, page_size page) noexcept override { return base_->pages_in(fd, page); }
    std::unique_ptr<memory_binding> bind_calling_thread(node_id node, int& error) noexcept override
    {
        return base_->bind_calling_thread(node, error); // the helper takes the caller's policy on
    }

private:
    struct charged_window final : populate_window {
        charged_window(charged_files& f, int d, page_size p) : files(f), fd(d), page(p) {}
        int populate(std::uint64_t first, std::uint64_t count) noexcept override
        {
            return files.run(charge_op::populate, fd, page, first, count);
        }
        charged_files& files;
        int fd;
        page_size page;
    };

    /// The calling thread's memory policy and CPUs, for the helper to take on.
    static charge_request request_of_caller(charge_op op, page_size page, std::uint64_t first, std::uint64_t count) noexcept
    {
        charge_request r;
        r.op = op;
        r.page_bytes = page.bytes();
        r.first = first;
        r.count = count;
        int mode = 0;
        if (::syscall(SYS_get_mempolicy, &mode, r.policy_nodes, 8 * sizeof(r.policy_nodes), nullptr, 0UL) == 0)
            r.policy_mode = mode;
        r.cpus_valid = ::sched_getaffinity(0, sizeof(r.cpus), &r.cpus) == 0 ? 1 : 0;
        return r;
    }

    int run(charge_op op, int fd, page_size page, std::uint64_t first, std::uint64_t count) noexcept
    {
        std::unique_ptr<charge_helper> helper = borrow();
        if (!helper)
            return ENOMEM;
        if (const int error = helper->error(); error != 0)
            return error;
        const int error = helper->call(request_of_caller(op, page, first, count), fd);
        give_back(std::move(helper));
        return error;
    }

    std::unique_ptr<charge_helper> borrow() noexcept
    {
        try {
            {
                const std::lock_guard lock(mutex_);
                if (!idle_.empty()) {
                    auto helper = std::move(idle_.back());
                    idle_.pop_back();
                    return helper;
                }
            }
            return std::make_unique<charge_helper>(dir_.get()); // started outside the lock
        } catch (...) {
            return nullptr;
        }
    }

    void give_back(std::unique_ptr<charge_helper> helper) noexcept
    {
        if (helper->broken())
            return; // reaped here; the next call starts another
        try {
            const std::lock_guard lock(mutex_);
            idle_.push_back(std::move(helper));
        } catch (...) {
        }
    }

    std::shared_ptr<hugetlb_files> base_;
    std::filesystem::path cgroup_;
    unique_fd dir_;
    ranked_mutex<> mutex_{lock_rank::leaf, "a charged reservoir's idle helpers"}; // guards idle_ only
    std::vector<std::unique_ptr<charge_helper>> idle_;
};

} // namespace hugezero::detail

#endif
