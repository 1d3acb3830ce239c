/// @file
/// @brief detail::worker_group: the one lifecycle of hugezero's worker threads (the service's
/// zeroing workers, the pool's refill workers): start with a latch and rollback, placement,
/// setting failures, pause that waits for the CPUs to be given back, stop.
#ifndef HUGEZERO_DETAIL_WORKER_GROUP_HPP
#define HUGEZERO_DETAIL_WORKER_GROUP_HPP

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <exception>
#include <functional>
#include <latch>
#include <mutex>
#include <stop_token>
#include <thread>
#include <utility>
#include <vector>

#include <hugezero/detail/call_gate.hpp>
#include <hugezero/detail/lock_rank.hpp>
#include <hugezero/machine.hpp>
#include <hugezero/node_id.hpp>
#include <hugezero/thread_settings.hpp>

namespace hugezero::detail {

/// @p settings for a worker of @p node: pinned to the node's CPUs unless they name CPUs (the
/// kernel zeroes in the caller's context: local CPU, local memory).
inline thread_settings settings_for_node(const machine& m, node_id node, thread_settings settings)
{
    const cpu_set& cpus = m.topology().node(node).cpus;
    if (!settings.cpus && !cpus.empty())
        settings.cpus = cpus;
    return settings;
}

/// How many workers serve @p node: @p per_node, or one per CPU of the node (at least one) if 0.
inline std::size_t workers_for_node(const machine& m, node_id node, unsigned per_node)
{
    return per_node != 0 ? per_node : std::max<std::size_t>(1, m.topology().node(node).cpus.count());
}

/// Where one worker runs.
struct worker_spec {
    node_id node;            ///< The node it serves.
    thread_settings settings; ///< Applied by the worker to itself first.
};

class worker_group;

/// What a worker's body is given.
class worker_context {
public:
    /// Requested by stop() (or the group's destruction).
    [[nodiscard]] const std::stop_token& stop() const noexcept { return stop_; }
    /// The node the worker serves.
    [[nodiscard]] node_id node() const noexcept { return node_; }
    /// The worker's place in the specs given to start().
    [[nodiscard]] std::size_t index() const noexcept { return index_; }
    /// Says the worker has set itself up: start() returns once every worker did (or ended).
    void started() noexcept
    {
        if (ready_ != nullptr)
            std::exchange(ready_, nullptr)->count_down();
    }
    /// Reports a setting the worker could not apply, for worker_group::setting_failures().
    inline void report(setting_failure failure);
    /// The settings this worker could not apply (those the group applied first, and report()ed).
    [[nodiscard]] const std::vector<setting_failure>& failures() const noexcept { return failures_; }

private:
    friend class worker_group;
    worker_context(worker_group& group, std::stop_token stop, node_id node, std::size_t index, std::latch& ready)
        : group_(group), stop_(std::move(stop)), node_(node), index_(index), ready_(&ready)
    {
    }
    worker_group& group_;
    std::stop_token stop_;
    node_id node_;
    std::size_t index_;
    std::latch* ready_;
    std::vector<setting_failure> failures_;
};

/// Threads that each serve a node, started together and stopped together, with a pause that
/// stops their calls into the kernel and returns only once none is left in progress.
///
/// Workers enrol what a pause must stop (pausable) for as long as they use it; an enrolment
/// made while the group is paused is interrupted at once, so no pause is missed by a worker
/// that was still starting. An exception escaping a body is handed to the failure handler in
/// the worker (never std::terminate); enrolments are RAII, so none outlives its worker.
///
/// Lock order: the group's mutex, then a pausable's own.
class worker_group {
public:
    /// What each worker runs.
    using body_type = std::function<void(worker_context&)>;
    /// Called in a worker whose body threw.
    using failure_handler = std::function<void(node_id, std::exception_ptr)>;

    worker_group() = default;
    worker_group(const worker_group&) = delete;
    worker_group& operator=(const worker_group&) = delete;
    ~worker_group() { stop(); }

    /// Starts one thread per spec; each applies its settings, then runs @p body. Returns once
    /// every worker said it started (worker_context::started()) or ended.
    /// @throws std::system_error if a thread cannot be created: the ones created are stopped
    /// and joined first.
    void start(const std::vector<worker_spec>& specs, body_type body, failure_handler on_failure)
    {
        {
            const std::lock_guard lock(mutex_);
            failures_.clear();
        }
        std::latch ready(static_cast<std::ptrdiff_t>(specs.size()));
        try {
            // Each thread has its own copies: they outlive this call.
            for (std::size_t i = 0; i < specs.size(); ++i)
                threads_.emplace_back([this, spec = specs[i], i, &ready, body, on_failure](std::stop_token stop) {
                    run(std::move(stop), spec, i, ready, body, on_failure);
                });
        } catch (...) {
            ready.count_down(static_cast<std::ptrdiff_t>(specs.size() - threads_.size()));
            ready.wait();
            stop();
            throw;
        }
        ready.wait();
    }

    /// Asks every worker to stop, without waiting for them.
    void request_stop() noexcept
    {
        for (auto& t : threads_)
            t.request_stop();
    }

    /// Stops every worker and joins it. Does nothing if none runs.
    void stop() noexcept
    {
        for (auto& t : threads_)
            t.request_stop();
        threads_.clear(); // joins
    }

    /// Whether workers were started and not stopped.
    [[nodiscard]] bool running() const noexcept { return !threads_.empty(); }

    /// The settings workers could not apply, each once per worker.
    [[nodiscard]] std::vector<setting_failure> setting_failures() const
    {
        const std::lock_guard lock(mutex_);
        return failures_;
    }

    /// Interrupts every enrolled pausable, then waits until none has a call in progress.
    void pause() noexcept
    {
        const std::lock_guard lock(mutex_);
        paused_.store(true);
        for (pausable* p : enrolled_)
            p->interrupt();
        for (pausable* p : enrolled_)
            p->wait_idle();
    }
    /// Lets the enrolled pausables make calls again.
    void resume() noexcept
    {
        const std::lock_guard lock(mutex_);
        paused_.store(false);
        for (pausable* p : enrolled_)
            p->resume();
    }
    /// Whether paused.
    [[nodiscard]] bool paused() const noexcept { return paused_.load(); }

    /// A pausable enrolled for as long as this lives. Move-only.
    class enrolment {
    public:
        enrolment(const enrolment&) = delete;
        enrolment& operator=(const enrolment&) = delete;
        enrolment(enrolment&& other) noexcept
            : group_(other.group_), enrolled_(std::exchange(other.enrolled_, nullptr))
        {
        }
        enrolment& operator=(enrolment&&) = delete;
        ~enrolment()
        {
            if (enrolled_ == nullptr)
                return;
            const std::lock_guard lock(group_->mutex_);
            auto& list = group_->enrolled_;
            list.erase(std::remove(list.begin(), list.end(), enrolled_), list.end());
        }

    private:
        friend class worker_group;
        enrolment(worker_group& group, pausable& p) : group_(&group), enrolled_(&p)
        {
            const std::lock_guard lock(group_->mutex_);
            group_->enrolled_.push_back(&p);
            if (group_->paused_.load())
                p.interrupt(); // a pause that came while the worker was starting
        }
        worker_group* group_;
        pausable* enrolled_;
    };
    /// Enrols @p p until the returned object goes.
    [[nodiscard]] enrolment enrol(pausable& p) { return enrolment(*this, p); }

private:
    friend class worker_context;

    void run(std::stop_token stop, const worker_spec& spec, std::size_t index, std::latch& ready, const body_type& body,
             const failure_handler& on_failure)
    {
        worker_context context(*this, std::move(stop), spec.node, index, ready);
        try {
            for (setting_failure& f : apply_to_current_thread(spec.settings))
                context.report(std::move(f));
            body(context);
        } catch (...) {
            try {
                on_failure(spec.node, std::current_exception());
            } catch (...) { // a worker must never take the process down
            }
        }
        context.started(); // start() is still waiting for a worker that ended early
    }

    mutable ranked_mutex<> mutex_{lock_rank::worker_group, "worker_group"};
    std::vector<setting_failure> failures_; // under mutex_
    std::vector<pausable*> enrolled_;       // under mutex_
    std::atomic<bool> paused_{false};
    // Threads last: they stop and join before the state they use goes.
    std::vector<std::jthread> threads_;
};

inline void worker_context::report(setting_failure failure)
{
    failures_.push_back(failure);
    const std::lock_guard lock(group_.mutex_);
    group_.failures_.push_back(std::move(failure));
}

} // namespace hugezero::detail

#endif
