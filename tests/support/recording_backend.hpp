// A backend decorator for engine tests: it forwards everything to another backend and records,
// for each write, which thread made it, on which CPUs it could run, under which scheduling
// policy, and when. A hook that runs just before a write is forwarded lets a test put a
// competing writer exactly between hugezero's read of the counter and its write.
#ifndef HUGEZERO_TESTS_SUPPORT_RECORDING_BACKEND_HPP
#define HUGEZERO_TESTS_SUPPORT_RECORDING_BACKEND_HPP

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <stdexcept>
#include <string_view>
#include <system_error>
#include <vector>

#include <sched.h>

#include <hugezero/backend.hpp>
#include <hugezero/cpu_set.hpp>
#include <hugezero/thread_settings.hpp>

namespace hugezero::test {

class recording_backend final : public hugezero::backend {
public:
    struct write_record {
        std::string path;
        std::string request;
        pid_t thread = 0;
        cpu_set affinity;
        int scheduling_policy = 0;
        std::chrono::steady_clock::time_point start;
        write_outcome outcome;
    };

    explicit recording_backend(std::shared_ptr<hugezero::backend> inner) : inner_(std::move(inner)) {}

    // Runs before each write is forwarded, in the writing thread.
    void before_write(std::function<void(std::string_view path, std::string_view request)> hook)
    {
        const std::lock_guard lock(mutex_);
        hook_ = std::move(hook);
    }

    [[nodiscard]] std::vector<write_record> writes() const
    {
        const std::lock_guard lock(mutex_);
        return writes_;
    }

    // The paths read so far, in order, and a way to start counting afresh.
    [[nodiscard]] std::vector<std::string> reads() const
    {
        const std::lock_guard lock(mutex_);
        return reads_;
    }
    void clear_reads()
    {
        const std::lock_guard lock(mutex_);
        reads_.clear();
    }

    // The next @p times watches' rearm() throw a std::runtime_error, as an unexpected failure
    // inside the watcher would: the watcher's thread ends.
    void break_watches(unsigned times)
    {
        const std::lock_guard lock(mutex_);
        broken_rearms_ = times;
    }
    // The next @p times open_watch() calls fail with EIO.
    void fail_watch_opens(unsigned times)
    {
        const std::lock_guard lock(mutex_);
        failed_watch_opens_ = times;
    }

    std::string read(std::string_view path) override
    {
        {
            const std::lock_guard lock(mutex_);
            reads_.emplace_back(path);
        }
        return inner_->read(path);
    }
    std::optional<std::vector<std::string>> list(std::string_view path) override { return inner_->list(path); }
    std::unique_ptr<attribute_watch> open_watch(std::string_view path) override
    {
        {
            const std::lock_guard lock(mutex_);
            if (failed_watch_opens_ > 0) {
                --failed_watch_opens_;
                throw std::system_error(EIO, std::system_category(), "open for watching " + display_path(path));
            }
        }
        return std::make_unique<watch>(*this, inner_->open_watch(path));
    }
    [[nodiscard]] std::string display_path(std::string_view path) const override { return inner_->display_path(path); }
    [[nodiscard]] std::shared_ptr<hugetlb_files> files() const override { return inner_->files(); }
    std::unique_ptr<attribute_writer> open_writer(std::string_view path) override
    {
        return std::make_unique<writer>(*this, std::string(path), inner_->open_writer(path));
    }

private:
    class watch final : public attribute_watch {
    public:
        watch(recording_backend& owner, std::unique_ptr<attribute_watch> inner) : owner_(owner), inner_(std::move(inner)) {}
        [[nodiscard]] int fd() const noexcept override { return inner_->fd(); }
        [[nodiscard]] std::uint32_t events() const noexcept override { return inner_->events(); }
        std::string rearm() override
        {
            {
                const std::lock_guard lock(owner_.mutex_);
                if (owner_.broken_rearms_ > 0) {
                    --owner_.broken_rearms_;
                    throw std::runtime_error("recording_backend: a watch broken on purpose");
                }
            }
            return inner_->rearm();
        }

    private:
        recording_backend& owner_;
        std::unique_ptr<attribute_watch> inner_;
    };

    class writer final : public attribute_writer {
    public:
        writer(recording_backend& owner, std::string path, std::unique_ptr<attribute_writer> inner)
            : owner_(owner), path_(std::move(path)), inner_(std::move(inner))
        {
        }
        write_outcome write(std::string_view request) override
        {
            write_record record{path_, std::string(request), current_thread_id(), current_affinity(),
                                ::sched_getscheduler(0), std::chrono::steady_clock::now(), {}};
            std::function<void(std::string_view, std::string_view)> hook;
            {
                const std::lock_guard lock(owner_.mutex_);
                hook = owner_.hook_;
            }
            if (hook)
                hook(path_, request);
            record.outcome = inner_->write(request);
            const std::lock_guard lock(owner_.mutex_);
            owner_.writes_.push_back(std::move(record));
            return owner_.writes_.back().outcome;
        }

    private:
        recording_backend& owner_;
        std::string path_;
        std::unique_ptr<attribute_writer> inner_;
    };

    std::shared_ptr<hugezero::backend> inner_;
    mutable std::mutex mutex_;
    std::function<void(std::string_view, std::string_view)> hook_;
    std::vector<write_record> writes_;
    std::vector<std::string> reads_;
    unsigned broken_rearms_ = 0;
    unsigned failed_watch_opens_ = 0;
};

} // namespace hugezero::test

#endif
