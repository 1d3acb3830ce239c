/// @file
/// @brief Internals of hugezero::pool: a refill worker scrubbing a recycled file, step by step,
/// before it joins the reservoir again.
#ifndef HUGEZERO_DETAIL_SCRUBBER_HPP
#define HUGEZERO_DETAIL_SCRUBBER_HPP

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <stop_token>
#include <utility>
#include <vector>

#include <hugezero/detail/call_gate.hpp>
#include <hugezero/detail/pool/pool_state.hpp>

namespace hugezero::detail {

/// Scrubs one recycled file in a refill worker (pinned to the node and charged like a refill):
/// writes zeros to its pages from user space, one step at a time, each step paced by the
/// refill's rate limit and passing the worker's pause gate. A stop or a pause puts the file
/// back at the head of the queue with the pages done; a failed step gives the file to the
/// kernel. Done, the file joins the reservoir.
class scrubber {
public:
    scrubber(pool_engine& engine, reservoir_slot& slot, std::stop_token stop, call_gate& gate)
        : e_(engine), slot_(slot), stop_(std::move(stop)), gate_(gate)
    {
    }

    void run(scrub_item item)
    {
        const hstate& h = slot_.counters->which;
        while (item.done < item.file.pages) {
            const std::uint64_t count = std::min(e_.step_pages(h.size), item.file.pages - item.done);
            if (!wait_turn(count * h.size.bytes()) || !gate_.enter())
                return requeue(std::move(item));
            const auto start = pool_clock::now();
            const int error = e_.m.files().scrub(item.file.fd.get(), h.size, item.done, count);
            const auto elapsed = std::chrono::duration_cast<std::chrono::nanoseconds>(pool_clock::now() - start);
            record(count, error, elapsed);
            gate_.leave(); // a pause returns once the step is in the statistics
            if (error != 0)
                return drop(std::move(item));
            item.done += count;
        }
        finish(std::move(item));
    }

private:
    bool should_leave() const noexcept { return stop_.stop_requested() || e_.state->paused.load(); }

    bool wait_turn(std::uint64_t bytes)
    {
        return e_.wait_turn(bytes, stop_, [&] { return should_leave(); });
    }

    void record(std::uint64_t pages, int error, std::chrono::nanoseconds elapsed)
    {
        reservoir_counters& c = *slot_.counters;
        c.scrub_ns.fetch_add(elapsed.count(), std::memory_order_relaxed);
        if (error != 0)
            c.record_error(error);
        else
            c.add(c.scrubbed_pages, pages);
    }

    void requeue(scrub_item item)
    {
        auto g = e_.state->core.lock();
        slot_.scrub_queue.push_front(std::move(item));
    }

    // Gives the file to the kernel: it is no longer planned.
    void drop(scrub_item item)
    {
        {
            auto g = e_.state->core.lock();
            slot_.scrub_pages -= item.file.pages;
            slot_.counters->scrubbing_pages.fetch_sub(item.file.pages, std::memory_order_relaxed);
        }
        // `item` closes here, outside the lock: its pages go back
    }

    void finish(scrub_item item)
    {
        if (!item.file.lease_fd)
            if (const int own = e_.m.files().reopen(item.file.fd.get()); own >= 0)
                item.file.lease_fd.reset(own); // made here, so that acquire() need not
        std::vector<pool_file> surplus;
        {
            auto g = e_.state->core.lock();
            slot_.scrub_pages -= item.file.pages;
            slot_.counters->scrubbing_pages.fetch_sub(item.file.pages, std::memory_order_relaxed);
            slot_.files.add(std::move(item.file));
            surplus = slot_.files.shed_to(slot_.target_pages); // the target fell meanwhile
        }
        // `surplus` closes here, outside the lock
    }

    pool_engine& e_;
    reservoir_slot& slot_;
    std::stop_token stop_;
    call_gate& gate_;
};

} // namespace hugezero::detail

#endif
