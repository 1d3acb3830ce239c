/// @file
/// @brief hugezero::sim::hugetlb_files, the simulated kernel's hugetlb files: what the pool
/// runs on when its machine is simulated.
#ifndef HUGEZERO_SIM_HUGETLB_FILES_HPP
#define HUGEZERO_SIM_HUGETLB_FILES_HPP

#include <csignal>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include <hugezero/detail/signal_counter.hpp>
#include <hugezero/hugetlb_files.hpp>
#include <hugezero/sim/kernel.hpp>

namespace hugezero::sim {

/// The simulated kernel's hugetlb files, so that hugezero::pool runs (deterministically, without
/// root or huge pages) on a sim::kernel: pages come from and go back to the kernel's hstates, a
/// file goes when the last copy of its descriptor is closed, and every call can be made to fail
/// (kernel::fail_next(file_operation, ...), kernel::fail_file_call()). sim::backend provides it.
///
/// A simulated file's descriptor cannot be mapped (see kernel::create_file()); everything else
/// behaves as hugetlb_files says.
class hugetlb_files final : public hugezero::hugetlb_files {
public:
    /// The files of @p k.
    explicit hugetlb_files(std::shared_ptr<kernel> k) : kernel_(std::move(k)) {}

    int create(const std::string& name, page_size page) noexcept override
    {
        (void)name;
        try {
            return kernel_->create_file(page);
        } catch (...) {
            return -ENOMEM;
        }
    }
    int allocate(int fd, page_size page, std::uint64_t first, std::uint64_t count) noexcept override
    {
        (void)page;
        // A signal that arrives from now on interrupts the call, as signal_pending() would.
        const std::sig_atomic_t seen = hugezero::detail::cancel_signals_received;
        const interrupt_probe interrupted = [seen] { return hugezero::detail::cancel_signals_received != seen; };
        return guarded([&] { return kernel_->allocate_file_pages(fd, bound_node_, first, count, interrupted); });
    }
    std::unique_ptr<populate_window> window(int fd, page_size page, std::uint64_t pages, int& error) noexcept override
    {
        (void)page;
        error = guarded([&] { return kernel_->map_file(fd, pages); });
        if (error != 0)
            return nullptr;
        try {
            return std::make_unique<window_on>(kernel_, fd, pages);
        } catch (...) {
            error = ENOMEM;
            return nullptr;
        }
    }
    int scrub(int fd, page_size page, std::uint64_t first, std::uint64_t count) noexcept override
    {
        (void)page;
        return guarded([&] { return kernel_->scrub_file_pages(fd, first, count); });
    }
    int reopen(int fd) noexcept override
    {
        try {
            return kernel_->reopen_file(fd);
        } catch (...) {
            return -ENOMEM;
        }
    }
    int sole_reference(int fd, std::string& holder) noexcept override
    {
        try {
            return kernel_->sole_file_reference(fd, holder);
        } catch (...) {
            return ENOMEM;
        }
    }
    int resize(int fd, page_size page, std::uint64_t pages) noexcept override
    {
        (void)page;
        return guarded([&] { return kernel_->resize_file(fd, pages); });
    }
    file_pages pages_in(int fd, page_size page) noexcept override
    {
        (void)page;
        try {
            return kernel_->file_page_count(fd);
        } catch (...) {
            return {0, ENOMEM};
        }
    }
    std::unique_ptr<memory_binding> bind_calling_thread(node_id node, int& error) noexcept override
    {
        try {
            error = kernel_->check_binding(node);
            if (error != 0)
                return nullptr;
            return std::make_unique<binding>(node);
        } catch (...) {
            error = ENOMEM;
            return nullptr;
        }
    }

private:
    // A window is a mapping: it covers the pages it was made for, whatever the file does later.
    class window_on final : public populate_window {
    public:
        window_on(std::shared_ptr<kernel> k, int fd, std::uint64_t pages) : kernel_(std::move(k)), fd_(fd), pages_(pages) {}
        window_on(const window_on&) = delete;
        window_on& operator=(const window_on&) = delete;
        ~window_on() override { kernel_->unmap_file(); }
        int populate(std::uint64_t first, std::uint64_t count) noexcept override
        {
            if (first + count > pages_)
                return EFAULT;
            return guarded([&] { return kernel_->populate_file_pages(fd_, bound_node_, first, count); });
        }

    private:
        std::shared_ptr<kernel> kernel_;
        int fd_;
        std::uint64_t pages_;
    };

    class binding final : public memory_binding {
    public:
        explicit binding(node_id node) : previous_(std::exchange(bound_node_, node)) {}
        ~binding() override { bound_node_ = previous_; }

    private:
        std::optional<node_id> previous_;
    };

    template <class Call>
    static int guarded(Call&& call) noexcept
    {
        try {
            return call();
        } catch (...) {
            return ENOMEM; // only allocation inside the simulation can throw
        }
    }

    // The node the calling thread's new pages are bound to (set_mempolicy stands for it).
    static inline thread_local std::optional<node_id> bound_node_;

    std::shared_ptr<kernel> kernel_;
};

} // namespace hugezero::sim

#endif
