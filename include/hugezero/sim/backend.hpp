/// @file
/// @brief hugezero::sim::backend, the simulated kernel as a hugezero::backend, in process.
#ifndef HUGEZERO_SIM_BACKEND_HPP
#define HUGEZERO_SIM_BACKEND_HPP

#include <cerrno>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <hugezero/backend.hpp>
#include <hugezero/detail/signal_counter.hpp>
#include <hugezero/error.hpp>
#include <hugezero/sim/hugetlb_files.hpp>
#include <hugezero/sim/kernel.hpp>
#include <hugezero/sim/sysfs_view.hpp>
#include <hugezero/unique_fd.hpp>

namespace hugezero::sim {

/// The simulated kernel served in process: what hugezero::machine uses when a test or a demo
/// wants a kernel with `zeroable_hugepages`.
///
/// A write runs the simulated zeroing in the writing thread, which sees the cancellation
/// signals hugezero's own handler receives (a real kernel would see any signal). Each watch
/// gets its own eventfd, since a regular file cannot be epolled.
class backend final : public hugezero::backend {
public:
    /// A backend over @p k.
    explicit backend(std::shared_ptr<kernel> k)
        : view_(k), files_(std::make_shared<sim::hugetlb_files>(std::move(k)))
    {
    }

    /// The kernel behind the backend.
    [[nodiscard]] const std::shared_ptr<kernel>& simulated_kernel() const noexcept { return view_.simulated_kernel(); }

    std::string read(std::string_view path) override
    {
        if (const int error = view_.check_open(path, operation::read))
            throw detail::system_error(error, "open " + display_path(path));
        auto result = view_.read(path);
        if (result.error != 0)
            throw detail::system_error(result.error, "read " + display_path(path));
        return std::move(result.content);
    }

    std::optional<std::vector<std::string>> list(std::string_view path) override
    {
        auto result = view_.list(path);
        if (result.error == ENOENT)
            return std::nullopt;
        if (result.error != 0)
            throw detail::system_error(result.error, "open directory " + display_path(path));
        return std::move(result.names);
    }

    std::unique_ptr<attribute_writer> open_writer(std::string_view path) override
    {
        if (const int error = view_.check_open(path, operation::write))
            throw detail::system_error(error, "open for writing " + display_path(path));
        return std::make_unique<writer>(view_, std::string(path));
    }

    std::unique_ptr<attribute_watch> open_watch(std::string_view path) override
    {
        if (const int error = view_.check_open(path, operation::read))
            throw detail::system_error(error, "open for watching " + display_path(path));
        unique_fd event(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
        if (!event)
            throw detail::errno_error("eventfd for watching " + display_path(path));
        const int fd = event.get();
        auto subscription = view_.subscribe(path, [fd] {
            const std::uint64_t one = 1;
            (void)!::write(fd, &one, sizeof one); // a full counter already means "changed"
        });
        if (!subscription)
            throw detail::system_error(ENOENT, "open for watching " + display_path(path));
        return std::make_unique<watch>(view_, std::string(path), std::move(event), std::move(*subscription));
    }

    [[nodiscard]] std::string display_path(std::string_view path) const override { return simulated_path(path); }

    /// The simulated kernel's hugetlb files (sim::hugetlb_files), so a pool on this backend's
    /// machine allocates the kernel's simulated pages.
    [[nodiscard]] std::shared_ptr<hugezero::hugetlb_files> files() const override { return files_; }

private:
    static std::string simulated_path(std::string_view path) { return "simulated:/sys/" + std::string(path); }

    // Writers and watches hold their own view (and so the kernel): they may outlive the backend.
    class writer final : public attribute_writer {
    public:
        writer(sysfs_view view, std::string path) : view_(std::move(view)), path_(std::move(path)) {}
        write_outcome write(std::string_view request) override
        {
            // Signals that arrive from now on interrupt this write, as signal_pending() would.
            volatile std::sig_atomic_t seen = detail::cancel_signals_received;
            const interrupt_probe probe = [&seen] {
                const std::sig_atomic_t now = detail::cancel_signals_received;
                if (now == seen)
                    return false;
                seen = now;
                return true;
            };
            return view_.write(path_, request, probe);
        }

    private:
        sysfs_view view_;
        std::string path_;
    };

    class watch final : public attribute_watch {
    public:
        watch(sysfs_view view, std::string path, unique_fd event, kernel::subscription subscription)
            : view_(std::move(view)), path_(std::move(path)), event_(std::move(event)), subscription_(std::move(subscription))
        {
        }
        [[nodiscard]] int fd() const noexcept override { return event_.get(); }
        [[nodiscard]] std::uint32_t events() const noexcept override { return EPOLLIN; }
        std::string rearm() override
        {
            std::uint64_t count = 0;
            (void)!::read(event_.get(), &count, sizeof count); // drain; EAGAIN when nothing came
            auto result = view_.read(path_);
            if (result.error != 0)
                throw detail::system_error(result.error, "read " + simulated_path(path_));
            return std::move(result.content);
        }

    private:
        sysfs_view view_;
        std::string path_;
        unique_fd event_;
        kernel::subscription subscription_; // declared after event_: unsubscribed before the fd closes
    };

    sysfs_view view_;
    std::shared_ptr<hugezero::hugetlb_files> files_;
};

} // namespace hugezero::sim

#endif
