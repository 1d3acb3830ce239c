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
#include <string_view>
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

    std::string read(std::string_view path) override { return inner_->read(path); }
    std::optional<std::vector<std::string>> list(std::string_view path) override { return inner_->list(path); }
    std::unique_ptr<attribute_watch> open_watch(std::string_view path) override { return inner_->open_watch(path); }
    [[nodiscard]] std::string display_path(std::string_view path) const override { return inner_->display_path(path); }
    [[nodiscard]] std::shared_ptr<hugetlb_files> files() const override { return inner_->files(); }
    std::unique_ptr<attribute_writer> open_writer(std::string_view path) override
    {
        return std::make_unique<writer>(*this, std::string(path), inner_->open_writer(path));
    }

private:
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
};

} // namespace hugezero::test

#endif
