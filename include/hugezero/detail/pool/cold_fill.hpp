/// @file
/// @brief Internals of hugezero::pool: allocating the pages a lease lacks, in parallel on the
/// node, as QEMU's prealloc threads would (the cold path of acquire()).
#ifndef HUGEZERO_DETAIL_COLD_FILL_HPP
#define HUGEZERO_DETAIL_COLD_FILL_HPP

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <memory>
#include <stop_token>
#include <system_error>
#include <thread>
#include <vector>

#include <hugezero/hugetlb_files.hpp>
#include <hugezero/prefault.hpp>
#include <hugezero/thread_settings.hpp>

namespace hugezero::detail {

/// Allocates pages [@p first, @p last) of the file behind @p fd (its size must cover them) for
/// an acquire on @p node: as many threads as QEMU's rule gives for the node's CPUs
/// (prefault_threads()), each pinned to them and bound to the node's memory, fault their
/// shares in through one window, in steps of @p step pages, checking @p stop between steps.
/// With one thread, the calling thread (already bound to the node) fallocates instead: no
/// mapping, so the process's memory-map lock is not taken. 0, or the first errno (`ECANCELED`
/// once stopped); the pages done stay in the file either way.
class cold_fill {
public:
    cold_fill(hugetlb_files& files, const cpu_set& node_cpus, node_id node, page_size page, std::uint64_t step)
        : files_(files), cpus_(node_cpus), node_(node), page_(page), step_(std::max<std::uint64_t>(1, step))
    {
    }

    int run(int fd, std::uint64_t first, std::uint64_t last, const std::stop_token& stop)
    {
        const std::uint64_t pages = last - first;
        const unsigned threads = prefault_threads(pages * page_.bytes(), page_, std::max<std::size_t>(1, cpus_.count()));
        threads_ = 1;
        if (threads <= 1)
            return allocate_here(fd, first, last, stop);
        int error = 0;
        std::unique_ptr<populate_window> window = files_.window(fd, page_, last, error);
        if (!window)
            return allocate_here(fd, first, last, stop); // cannot map: one thread, as before
        threads_ = threads;
        std::atomic<int> failure{0};
        {
            std::vector<std::jthread> workers;
            const std::uint64_t share = pages / threads;
            for (unsigned i = 0; i < threads && failure.load() == 0; ++i) {
                const std::uint64_t from = first + i * share;
                const std::uint64_t to = i + 1 == threads ? last : from + share;
                try {
                    workers.emplace_back([&, from, to] { fill_share(*window, from, to, stop, failure); });
                } catch (const std::system_error& e) { // no thread: the others stop at their next step
                    record(failure, e.code().value() != 0 ? e.code().value() : EAGAIN);
                }
            }
        } // joined; the window is unmapped after
        return failure.load();
    }

    /// The threads the last run() used (1: the calling thread, with fallocate()).
    [[nodiscard]] unsigned threads() const noexcept { return threads_; }

private:
    int allocate_here(int fd, std::uint64_t first, std::uint64_t last, const std::stop_token& stop)
    {
        for (std::uint64_t at = first; at < last; at += step_) {
            if (stop.stop_requested())
                return ECANCELED;
            int error = 0;
            do
                error = files_.allocate(fd, page_, at, std::min(step_, last - at));
            while (error == EINTR); // a signal of the application's: the pages done stay
            if (error != 0)
                return error;
        }
        return 0;
    }

    // One thread's share: pinned, bound, then step by step until done, stopped, or another
    // thread failed.
    void fill_share(populate_window& window, std::uint64_t from, std::uint64_t to, const std::stop_token& stop,
                    std::atomic<int>& failure) noexcept
    {
        if (!cpus_.empty())
            (void)pin_current_thread(cpus_); // placement of the CPU only: the memory binding decides the node
        int error = 0;
        const auto binding = files_.bind_calling_thread(node_, error);
        for (std::uint64_t at = from; binding && at < to && failure.load() == 0; at += step_) {
            if (stop.stop_requested()) {
                error = ECANCELED;
                break;
            }
            error = window.populate(at, std::min(step_, to - at));
            if (error != 0)
                break;
        }
        if (error != 0)
            record(failure, error);
    }

    static void record(std::atomic<int>& failure, int error) noexcept
    {
        int none = 0;
        (void)failure.compare_exchange_strong(none, error);
    }

    hugetlb_files& files_;
    cpu_set cpus_;
    node_id node_;
    page_size page_;
    std::uint64_t step_;
    unsigned threads_ = 1;
};

} // namespace hugezero::detail

#endif
