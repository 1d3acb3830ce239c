// The daemon's blocking pool calls, off its event loop: cold acquires (they allocate, and so
// zero, pages on the spot) and recycles (they look through /proc for the file's holders). A
// few threads run them in turn; each result comes back to the loop through a queue and an
// eventfd the loop polls. The loop thread owns everything else.
#ifndef HUGEZERO_TOOLS_HUGEZEROD_JOBS_HPP
#define HUGEZERO_TOOLS_HUGEZEROD_JOBS_HPP

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <stop_token>
#include <thread>
#include <vector>

#include <sys/eventfd.h>
#include <unistd.h>

#include <hugezero/unique_fd.hpp>

namespace hugezerod {

/// Runs functions on a few threads; their results (functions too) run on the loop thread when
/// it calls run_finished(). A job sees the stop token of its runner: stop() cancels what runs.
class job_runner {
public:
    using job = std::function<std::function<void()>(std::stop_token)>; ///< Returns what the loop then runs.

    explicit job_runner(unsigned threads) : wake_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK))
    {
        if (!wake_)
            throw std::system_error(errno, std::generic_category(), "hugezerod: eventfd");
        for (unsigned i = 0; i < threads; ++i)
            threads_.emplace_back([this](std::stop_token stop) { work(stop); });
    }
    job_runner(const job_runner&) = delete;
    job_runner& operator=(const job_runner&) = delete;
    ~job_runner() { stop(); }

    /// The fd that becomes readable when results wait for run_finished().
    [[nodiscard]] int fd() const noexcept { return wake_.get(); }

    /// Queues @p j.
    void post(job j)
    {
        {
            const std::lock_guard lock(mutex_);
            queue_.push_back(std::move(j));
        }
        changed_.notify_one();
    }

    /// Runs the results of finished jobs (on the caller's thread, the loop's).
    void run_finished()
    {
        std::uint64_t count = 0;
        // Resets the eventfd; EAGAIN (nothing finished since) changes nothing below.
        [[maybe_unused]] const auto got = ::read(wake_.get(), &count, sizeof count);
        std::deque<std::function<void()>> done;
        {
            const std::lock_guard lock(mutex_);
            done.swap(done_);
        }
        for (auto& f : done)
            if (f)
                f();
    }

    /// Jobs queued or running.
    [[nodiscard]] std::size_t busy() const
    {
        const std::lock_guard lock(mutex_);
        return queue_.size() + running_;
    }

    /// Stops the threads (jobs running see their stop token; queued ones are dropped, with
    /// what they hold) and joins them. Results not yet run are dropped too.
    void stop()
    {
        for (auto& t : threads_)
            t.request_stop();
        changed_.notify_all();
        threads_.clear(); // joins
        const std::lock_guard lock(mutex_);
        queue_.clear();
        done_.clear();
    }

private:
    void work(std::stop_token stop)
    {
        for (;;) {
            job j;
            {
                std::unique_lock lock(mutex_);
                if (!changed_.wait(lock, stop, [&] { return !queue_.empty(); }))
                    return;
                j = std::move(queue_.front());
                queue_.pop_front();
                ++running_;
            }
            std::function<void()> result;
            try {
                result = j(stop);
            } catch (...) {
                result = nullptr; // a job reports its own errors; nothing escapes a thread
            }
            {
                const std::lock_guard lock(mutex_);
                --running_;
                done_.push_back(std::move(result));
            }
            const std::uint64_t one = 1;
            // An eventfd write fails only when its counter would overflow: never here.
            [[maybe_unused]] const auto written = ::write(wake_.get(), &one, sizeof one);
        }
    }

    hugezero::unique_fd wake_;
    mutable std::mutex mutex_;
    std::condition_variable_any changed_;
    std::deque<job> queue_;
    std::deque<std::function<void()>> done_;
    std::size_t running_ = 0;
    std::vector<std::jthread> threads_; // last: joined before the rest goes
};

} // namespace hugezerod

#endif
