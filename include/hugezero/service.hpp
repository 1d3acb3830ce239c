/// @file
/// @brief hugezero::prezero_service: per-node workers that zero pages as they become zeroable.
#ifndef HUGEZERO_SERVICE_HPP
#define HUGEZERO_SERVICE_HPP

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <latch>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include <hugezero/detail/deadline.hpp>
#include <hugezero/error.hpp>
#include <hugezero/machine.hpp>
#include <hugezero/policy.hpp>
#include <hugezero/statistics.hpp>
#include <hugezero/thread_settings.hpp>
#include <hugezero/watcher.hpp>
#include <hugezero/zeroing.hpp>

namespace hugezero {

/// How the pre-zeroing service runs.
struct service_options {
    /// The hstates to keep zeroed; empty means every hstate whose kernel has `zeroable_hugepages`.
    std::vector<hstate> hstates;
    /// Workers per node (each zeroes that node's hstates); 0 means one per CPU of the node.
    unsigned workers_per_node = 1;
    /// When and how much to zero. Default: everything, at once.
    std::shared_ptr<zeroing_policy> policy = policies::all();
    /// Batch size and cancellation of each write.
    zeroing_options zeroing;
    /// Worker placement and charging. Without `cpus`, workers are pinned to their node's CPUs.
    thread_settings thread;
    /// The watcher's safety-net period.
    watcher_options watch;
    /// How long a worker waits before retrying an hstate after an error.
    std::chrono::nanoseconds error_backoff = std::chrono::seconds(1);
};

/// Keeps hstates zeroed in the background, through the `zeroable_hugepages` ABI.
///
/// Per node, `workers_per_node` threads pinned to the node's CPUs zero the node's hstates when
/// the watcher reports zeroable pages (or the policy's retry time comes), in writes of one
/// batch, each first claimed on the hstate's ledger so that workers share the work without
/// double counting. stop() and pause() interrupt writes in flight.
///
/// @par Thread safety
/// Every member may be called from any thread; statistics() reads lock-free counters.
class prezero_service {
public:
    /// A service for @p m, not yet started.
    /// @throws hugezero::zeroing_unsupported if a listed hstate (or, with none listed, every
    /// hstate) lacks `zeroable_hugepages`; std::invalid_argument for an unknown hstate, a null
    /// policy, or a machine without huge pages.
    prezero_service(const machine& m, service_options options = {}) : machine_(m), options_(std::move(options))
    {
        if (!options_.policy)
            throw std::invalid_argument("hugezero: the pre-zeroing service needs a policy, got a null pointer");
        if (options_.hstates.empty()) {
            const auto all = machine_.topology().hstates();
            if (all.empty())
                throw std::invalid_argument("hugezero: this machine has no huge page sizes to pre-zero");
            for (const hstate& h : all)
                if (machine_.supports_zeroing(h))
                    options_.hstates.push_back(h);
            if (options_.hstates.empty())
                (void)machine_.zeroable_path(all.front()); // throws the explanatory zeroing_unsupported
        }
        for (const hstate& h : options_.hstates) {
            (void)machine_.zeroable_path(h);
            if (statistics_.count(h) == 0)
                statistics_.emplace(h, std::make_unique<detail::statistics_counters>(h));
        }
        for (const auto& [h, counters] : statistics_) {
            auto it = std::find_if(nodes_.begin(), nodes_.end(), [&](const auto& n) { return n->node == h.node; });
            if (it == nodes_.end())
                it = nodes_.insert(nodes_.end(), std::make_unique<node_work>(h.node));
            (*it)->hstates.push_back(h);
        }
        for (auto& n : nodes_) // largest pages first: a 1 GiB page saves a VM the most
            std::sort(n->hstates.begin(), n->hstates.end(), [](const hstate& a, const hstate& b) { return a.size > b.size; });
    }

    prezero_service(const prezero_service&) = delete;
    prezero_service& operator=(const prezero_service&) = delete;
    /// Stops the service (interrupting writes) and joins its threads.
    ~prezero_service() { stop(); }

    /// Starts the watcher and the workers; they zero what is zeroable at once. Returns once
    /// every worker has applied its settings, so setting_failures() is complete by then.
    /// @throws std::logic_error if already running; std::system_error if the watcher cannot be
    /// set up or the cancellation signal belongs to the application.
    void start()
    {
        const std::lock_guard lock(control_);
        if (running_)
            throw std::logic_error("hugezero: prezero_service::start() called on a running service");
        if (options_.zeroing.cancel == cancellation::signal)
            detail::install_cancel_handler(options_.zeroing.cancel_signal);
        auto w = std::make_unique<watcher>(machine_, options_.hstates, options_.watch);
        for (const watch_event& e : w->current()) // statistics show the starting point at once
            counters(e.which).zeroable.store(e.zeroable, std::memory_order_relaxed);
        slots_.clear();
        for (auto& n : nodes_) {
            wake(*n);
            const cpu_set& cpus = machine_.topology().node(n->node).cpus;
            const std::size_t count = options_.workers_per_node != 0 ? options_.workers_per_node
                                                                     : std::max<std::size_t>(1, cpus.count());
            for (std::size_t i = 0; i < count; ++i)
                slots_.push_back(std::make_unique<worker_slot>(*n));
        }
        std::latch ready(static_cast<std::ptrdiff_t>(slots_.size()));
        try {
            for (auto& slot : slots_)
                workers_.emplace_back([this, s = slot.get(), &ready](std::stop_token stop) {
                    bool started = false;
                    try {
                        run_worker(stop, *s, ready, started);
                    } catch (...) { // never expected; an escaping exception would terminate the process
                        for (const hstate& h : s->node.hstates)
                            counters(h).record_error(EIO);
                    }
                    if (!started)
                        ready.count_down(); // start() is still waiting for this worker
                });
        } catch (...) {
            // A thread could not be created (EAGAIN): the ones that were wait on `ready`, which
            // lives in this frame. Count down for the missing ones, let the others pass it, then
            // stop and join them all before the latch goes away.
            ready.count_down(static_cast<std::ptrdiff_t>(slots_.size() - workers_.size()));
            ready.wait();
            join_workers();
            throw;
        }
        ready.wait();
        try {
            watcher_thread_ = std::jthread([this, w = std::move(w)](std::stop_token stop) {
                // An exception escaping a thread would terminate the process: count it instead.
                // Workers keep zeroing on their retry deadlines and on later start() calls.
                try {
                    w->run(stop, [this](const watch_event& e) { on_event(e); });
                } catch (const std::system_error& e) {
                    record_everywhere(e.code().value());
                } catch (...) {
                    record_everywhere(EIO);
                }
            });
        } catch (...) {
            join_workers();
            throw;
        }
        running_ = true;
    }

    /// Stops the watcher and the workers, interrupting writes in flight, and waits for them.
    /// Statistics remain readable. Does nothing if not running.
    void stop()
    {
        const std::lock_guard lock(control_);
        if (!running_)
            return;
        watcher_thread_.request_stop();
        watcher_thread_ = std::jthread();
        join_workers();
        running_ = false;
    }

    /// Interrupts writes in flight and keeps workers idle until resume().
    void pause()
    {
        const std::lock_guard lock(control_);
        paused_.store(true);
        for_each_session([](detail::zeroing_session& s) { s.interrupt(); });
    }

    /// Lets workers zero again (they look for work at once).
    void resume()
    {
        const std::lock_guard lock(control_);
        paused_.store(false);
        for_each_session([](detail::zeroing_session& s) { s.resume(); });
        for (auto& n : nodes_)
            wake(*n);
    }

    /// Whether start() was called without stop().
    [[nodiscard]] bool running() const
    {
        const std::lock_guard lock(control_);
        return running_;
    }
    /// Whether paused.
    [[nodiscard]] bool paused() const noexcept { return paused_.load(); }

    /// The hstates the service keeps zeroed.
    [[nodiscard]] const std::vector<hstate>& hstates() const noexcept { return options_.hstates; }

    /// What the service did for @p h. Lock-free.
    /// @throws std::invalid_argument if the service does not handle @p h.
    [[nodiscard]] hstate_statistics statistics(const hstate& h) const { return counters(h).snapshot(); }

    /// What the service did for each of its hstates, by node then size.
    [[nodiscard]] std::vector<hstate_statistics> statistics() const
    {
        std::vector<hstate_statistics> out;
        for (const auto& [h, c] : statistics_)
            out.push_back(c->snapshot());
        return out;
    }

    /// The worker settings that could not be applied (each once per worker).
    [[nodiscard]] std::vector<setting_failure> setting_failures() const
    {
        const std::lock_guard lock(failures_mutex_);
        return setting_failures_;
    }

    /// Waits up to @p timeout (0: just check; negative: forever) until no worker is busy and
    /// every hstate reads zero zeroable pages. Returns whether that happened; false also when
    /// paused, stopped, or the policy holds pages back.
    bool wait_drained(std::chrono::nanoseconds timeout)
    {
        const auto deadline = detail::deadline_after(timeout);
        std::unique_lock lock(drained_mutex_);
        for (;;) {
            if (drained_now())
                return true;
            const auto now = std::chrono::steady_clock::now();
            if (timeout >= std::chrono::nanoseconds::zero() && now >= deadline)
                return false;
            // Workers notify when they go idle; the short cap covers consumers taking the last
            // zeroable pages, which nobody notifies.
            auto until = now + std::chrono::milliseconds(20);
            if (timeout >= std::chrono::nanoseconds::zero())
                until = std::min(until, deadline);
            drained_cv_.wait_until(lock, until);
        }
    }

private:
    struct node_work {
        explicit node_work(node_id n) : node(n) {}
        node_id node;
        std::vector<hstate> hstates;
        std::mutex mutex;
        std::condition_variable_any cv;
        std::uint64_t epoch = 0; // under mutex: bumped when there may be work
    };
    struct worker_slot {
        explicit worker_slot(node_work& n) : node(n) {}
        node_work& node;
        std::mutex mutex;                               // guards sessions
        std::vector<detail::zeroing_session*> sessions; // owned by the worker thread
        std::uint64_t seen_epoch = 0;                   // under node.mutex
    };

    detail::statistics_counters& counters(const hstate& h) const
    {
        const auto it = statistics_.find(h);
        if (it == statistics_.end())
            throw std::invalid_argument("hugezero: the pre-zeroing service does not handle " + to_string(h));
        return *it->second;
    }

    void record_everywhere(int error) noexcept
    {
        for (const auto& [h, c] : statistics_)
            c->record_error(error);
    }

    static void wake(node_work& n)
    {
        {
            const std::lock_guard lock(n.mutex);
            ++n.epoch;
        }
        n.cv.notify_all();
    }

    template <class F>
    void for_each_session(F&& f)
    {
        for (auto& slot : slots_) {
            const std::lock_guard lock(slot->mutex);
            for (auto* s : slot->sessions)
                f(*s);
        }
    }

    void on_event(const watch_event& e)
    {
        auto& c = counters(e.which);
        if (e.error) {
            c.record_error(e.error.value());
            return;
        }
        // A count above zero wakes the node's workers, which read it afresh and store that: the
        // event's own value may already be stale (a worker zeroed pages since), and storing it
        // after a worker's fresher reading would leave the statistics wrong once drained.
        if (e.zeroable == 0)
            c.zeroable.store(0, std::memory_order_relaxed);
        else
            for (auto& n : nodes_)
                if (n->node == e.which.node)
                    wake(*n);
    }

    // Stops every worker (interrupting its write) and joins it. Called with control_ held.
    void join_workers()
    {
        for (auto& w : workers_)
            w.request_stop();
        workers_.clear();
    }

    // Whether, at one moment, nothing is zeroable, no worker has a wake-up it has not taken,
    // and none is busy. In that order: a worker takes a wake-up and becomes busy under its node's
    // lock, and zeroable pages only disappear while some worker is busy (or by consumers).
    bool drained_now()
    {
        // start() and stop() change slots_ under control_; they may hold it a long time (joining
        // workers that need drained_mutex_, held by our caller): never wait for it here.
        const std::unique_lock control(control_, std::try_to_lock);
        if (!control.owns_lock() || !running_)
            return false;
        if (paused_.load() || !nothing_zeroable())
            return false;
        for (const auto& slot : slots_) {
            const std::lock_guard lock(slot->node.mutex);
            if (slot->seen_epoch != slot->node.epoch)
                return false;
        }
        return busy_.load() == 0;
    }

    bool nothing_zeroable() const
    {
        for (const hstate& h : options_.hstates) {
            try {
                if (machine_.zeroable(h) != 0)
                    return false;
            } catch (const std::exception&) {
                return false; // an unreadable hstate is not drained
            }
        }
        return true;
    }

    void run_worker(const std::stop_token& stop, worker_slot& slot, std::latch& all_started, bool& started)
    {
        node_work& node = slot.node;
        thread_settings settings = options_.thread;
        const cpu_set& node_cpus = machine_.topology().node(node.node).cpus;
        if (!settings.cpus && !node_cpus.empty())
            settings.cpus = node_cpus;
        options_.policy->adjust(settings);
        if (auto failures = apply_to_current_thread(settings); !failures.empty()) {
            const std::lock_guard lock(failures_mutex_);
            setting_failures_.insert(setting_failures_.end(), failures.begin(), failures.end());
        }
        std::vector<std::unique_ptr<detail::zeroing_session>> sessions;
        for (const hstate& h : node.hstates) {
            try {
                sessions.push_back(std::make_unique<detail::zeroing_session>(machine_, h, options_.zeroing));
            } catch (const std::system_error& e) {
                counters(h).record_error(e.code().value());
            } catch (const std::exception&) {
                counters(h).record_error(EIO);
            }
        }
        {
            const std::lock_guard lock(slot.mutex);
            for (auto& s : sessions) {
                slot.sessions.push_back(s.get());
                if (paused_.load())
                    s->interrupt(); // a pause that came before this worker registered
            }
        }
        all_started.count_down(); // the latch lives in start(), which returns once all have counted down
        started = true;
        {
            const std::stop_callback interrupt(stop, [&slot]() noexcept {
                const std::lock_guard lock(slot.mutex);
                for (auto* s : slot.sessions)
                    s->interrupt();
            });
            std::optional<std::chrono::steady_clock::time_point> retry;
            for (;;) {
                {
                    std::unique_lock lock(node.mutex);
                    const auto ready = [&] {
                        return !paused_.load()
                               && (slot.seen_epoch != node.epoch || (retry && std::chrono::steady_clock::now() >= *retry));
                    };
                    const bool go = retry ? node.cv.wait_until(lock, stop, *retry, ready) : node.cv.wait(lock, stop, ready);
                    if (stop.stop_requested())
                        break;
                    if (!go)
                        continue;
                    slot.seen_epoch = node.epoch;
                    busy_.fetch_add(1); // with the wake-up it takes: see drained_now()
                }
                retry.reset();
                for (auto& s : sessions)
                    drain(*s, stop, retry);
                busy_.fetch_sub(1);
                drained_cv_.notify_all();
            }
        }
        const std::lock_guard lock(slot.mutex);
        slot.sessions.clear();
    }

    // Zeroes what the policy allows of one hstate until nothing is left to claim.
    void drain(detail::zeroing_session& s, const std::stop_token& stop,
               std::optional<std::chrono::steady_clock::time_point>& retry)
    {
        using clock = std::chrono::steady_clock;
        const hstate& h = s.which();
        auto& c = counters(h);
        const auto retry_no_later_than = [&retry](clock::time_point t) {
            if (!retry || t < *retry)
                retry = t;
        };
        constexpr unsigned max_consecutive_rejections = 64;
        unsigned rejections = 0;
        while (!stop.stop_requested() && !paused_.load()) {
            std::uint64_t zeroable = 0;
            policy_decision decision;
            try {
                zeroable = s.read_zeroable();
                c.zeroable.store(zeroable, std::memory_order_relaxed);
                if (zeroable == 0)
                    return;
                decision = options_.policy->allow(h, zeroable, clock::now());
            } catch (const std::system_error& e) {
                c.record_error(e.code().value());
                retry_no_later_than(clock::now() + options_.error_backoff);
                return;
            } catch (const std::exception&) {
                c.record_error(EIO);
                retry_no_later_than(clock::now() + options_.error_backoff);
                return;
            }
            if (decision.pages == 0) {
                if (decision.retry_at)
                    retry_no_later_than(*decision.retry_at);
                return;
            }
            const auto step = s.zero_some(zeroable, decision.pages);
            const bool wrote = step.what == detail::zeroing_session::step::outcome::wrote;
            const std::uint64_t used = wrote ? std::min(decision.pages, step.claimed) : 0;
            if (used < decision.pages)
                options_.policy->unused(h, decision.pages - used);
            if (!wrote)
                return;
            constexpr auto relaxed = std::memory_order_relaxed;
            c.requests.fetch_add(1, relaxed);
            c.pages_zeroed.fetch_add(step.credited, relaxed);
            c.time_zeroing_ns.fetch_add(step.duration.count(), relaxed);
            if (step.signalled || step.error == EINTR)
                c.requests_interrupted.fetch_add(1, relaxed);
            if (step.error == EINVAL && !step.signalled) {
                c.requests_rejected.fetch_add(1, relaxed);
                // As in run_zeroing(): a kernel that keeps rejecting requests is an error, not a
                // race with another writer; back off instead of spinning.
                if (++rejections == max_consecutive_rejections) {
                    c.record_error(EINVAL);
                    retry_no_later_than(clock::now() + options_.error_backoff);
                    return;
                }
                continue;
            }
            rejections = 0;
            if (step.error != 0 && step.error != EINTR && step.error != EINVAL) {
                c.record_error(step.error);
                retry_no_later_than(clock::now() + options_.error_backoff);
                return;
            }
        }
    }

    machine machine_;
    service_options options_;
    std::map<hstate, std::unique_ptr<detail::statistics_counters>> statistics_; // fixed after construction
    std::vector<std::unique_ptr<node_work>> nodes_;                            // fixed after construction
    std::vector<std::unique_ptr<worker_slot>> slots_;                          // changed only by start()
    mutable std::mutex control_;
    bool running_ = false; // under control_
    std::atomic<bool> paused_{false};
    std::atomic<int> busy_{0};
    std::mutex drained_mutex_;
    std::condition_variable drained_cv_;
    mutable std::mutex failures_mutex_;
    std::vector<setting_failure> setting_failures_;
    // Threads last: they stop and join before the state they use is destroyed.
    std::vector<std::jthread> workers_;
    std::jthread watcher_thread_;
};

} // namespace hugezero

#endif
