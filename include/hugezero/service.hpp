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

#include <hugezero/detail/call_gate.hpp>
#include <hugezero/detail/deadline.hpp>
#include <hugezero/detail/lock_rank.hpp>
#include <hugezero/detail/worker_group.hpp>
#include <hugezero/detail/zeroing/drain.hpp>
#include <hugezero/error.hpp>
#include <hugezero/machine.hpp>
#include <hugezero/policy.hpp>
#include <hugezero/service_options.hpp>
#include <hugezero/statistics.hpp>
#include <hugezero/thread_settings.hpp>
#include <hugezero/watcher.hpp>
#include <hugezero/zeroing.hpp>

namespace hugezero {

/// Keeps hstates zeroed in the background, through the `zeroable_hugepages` ABI.
///
/// Per node, `workers_per_node` threads pinned to the node's CPUs zero the node's hstates when
/// the watcher reports zeroable pages (or the policy's retry time comes), in writes of one
/// batch, each first claimed on the hstate's ledger so that workers share the work without
/// double counting. stop() and pause() interrupt writes in flight; pause() returns once none
/// is left.
///
/// A watcher that fails (its attributes cannot be watched, or it meets an error it cannot
/// handle) is counted in every hstate's errors and started again after `error_backoff`; until
/// then workers look for work every safety-net period on their own (watching() tells).
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
        for (const auto& [h, counters] : statistics_)
            node_of(h.node, true).hstates.push_back(h);
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
        auto first_watcher = std::make_unique<watcher>(machine_, options_.hstates, options_.watch);
        for (const watch_event& e : first_watcher->current()) // statistics show the starting point at once
            counters(e.which).zeroable.store(e.zeroable, std::memory_order_relaxed);
        std::vector<detail::worker_spec> specs;
        slots_.clear();
        for (auto& n : nodes_) {
            wake(*n);
            thread_settings settings = detail::settings_for_node(machine_, n->node, options_.thread);
            options_.policy->adjust(settings);
            const std::size_t count = detail::workers_for_node(machine_, n->node, options_.workers_per_node);
            for (std::size_t i = 0; i < count; ++i) {
                specs.push_back({n->node, settings});
                slots_.push_back(std::make_unique<worker_slot>(*n));
            }
        }
        listener_ = options_.policy->listen([this] { wake_all(); });
        try {
            workers_.start(
                specs, [this](detail::worker_context& c) { run_worker(c, *slots_[c.index()]); },
                [this](node_id node, std::exception_ptr) { // never expected: count it, never terminate
                    for (const hstate& h : node_of(node).hstates)
                        counters(h).record_error(EIO);
                });
            watching_.store(true);
            watcher_thread_ = std::jthread(
                [this, w = std::move(first_watcher)](std::stop_token stop) mutable { run_watcher(stop, std::move(w)); });
        } catch (...) {
            workers_.stop();
            options_.policy->stop_listening(listener_);
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
        workers_.stop();
        options_.policy->stop_listening(listener_);
        watching_.store(false);
        running_ = false;
    }

    /// Interrupts writes in flight, keeps workers idle until resume(), and returns once no
    /// write is in flight (each ends within one page's zeroing time, or one batch in chunked
    /// mode): from then on the service uses no CPU. A pause before start() holds too.
    void pause()
    {
        const std::lock_guard lock(control_);
        workers_.pause();
    }

    /// Lets workers zero again (they look for work at once).
    void resume()
    {
        const std::lock_guard lock(control_);
        workers_.resume();
        wake_all();
    }

    /// Whether start() was called without stop().
    [[nodiscard]] bool running() const noexcept { return running_.load(); }
    /// Whether paused.
    [[nodiscard]] bool paused() const noexcept { return workers_.paused(); }
    /// Whether the watcher is running. While it is not (it failed, and is started again after
    /// `error_backoff`), workers look for work every safety-net period on their own.
    [[nodiscard]] bool watching() const noexcept { return watching_.load(); }
    /// How many times the watcher failed and had to be started again.
    [[nodiscard]] std::uint64_t watcher_failures() const noexcept { return watcher_failures_.load(); }

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
    [[nodiscard]] std::vector<setting_failure> setting_failures() const { return workers_.setting_failures(); }

    /// Waits up to @p timeout (0: just check; negative: forever) until no worker is busy and
    /// every hstate reads zero zeroable pages. Returns whether that happened; returns false at
    /// once when the service is paused or not running, and false when the policy holds pages
    /// back.
    bool wait_drained(std::chrono::nanoseconds timeout)
    {
        const auto deadline = detail::deadline_after(timeout);
        std::unique_lock lock(drained_mutex_);
        for (;;) {
            if (paused() || !running())
                return false;
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
    using clock = std::chrono::steady_clock;

    struct node_work {
        explicit node_work(node_id n) : node(n) {}
        node_id node;
        std::vector<hstate> hstates;
        detail::ranked_mutex<> mutex{detail::lock_rank::service_node, "a service node's work"};
        std::condition_variable_any cv;
        std::uint64_t epoch = 0; // under mutex: bumped when there may be work
    };
    struct worker_slot {
        explicit worker_slot(node_work& n) : node(n) {}
        node_work& node;
        std::uint64_t seen_epoch = 0; // under node.mutex
    };

    // What a pause stops in one worker: its writes (each session's, interrupted in the kernel
    // by its signal) and the accounting that follows each, so that statistics are complete
    // when pause() returns.
    class worker_pause final : public detail::pausable {
    public:
        explicit worker_pause(std::vector<std::unique_ptr<detail::zeroing_session>>& sessions) : sessions_(sessions) {}
        [[nodiscard]] detail::call_gate& gate() noexcept { return gate_; }
        void interrupt() noexcept override
        {
            gate_.interrupt();
            for (auto& s : sessions_)
                s->interrupt();
        }
        void resume() noexcept override
        {
            gate_.resume();
            for (auto& s : sessions_)
                s->resume();
        }
        void wait_idle() noexcept override { gate_.wait_idle(); }

    private:
        std::vector<std::unique_ptr<detail::zeroing_session>>& sessions_;
        detail::call_gate gate_;
    };

    detail::statistics_counters& counters(const hstate& h) const
    {
        const auto it = statistics_.find(h);
        if (it == statistics_.end())
            throw std::invalid_argument("hugezero: the pre-zeroing service does not handle " + to_string(h));
        return *it->second;
    }

    node_work& node_of(node_id node, bool create = false)
    {
        auto it = std::find_if(nodes_.begin(), nodes_.end(), [&](const auto& n) { return n->node == node; });
        if (it == nodes_.end() && create)
            it = nodes_.insert(nodes_.end(), std::make_unique<node_work>(node));
        return **it;
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
    void wake_all()
    {
        for (auto& n : nodes_)
            wake(*n);
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
            wake(node_of(e.which.node));
    }

    // The watcher's thread: runs @p w, and when it fails, counts it, lets the workers poll, and
    // starts a new one after error_backoff.
    void run_watcher(const std::stop_token& stop, std::unique_ptr<watcher> w)
    {
        for (;;) {
            try {
                if (!w)
                    w = std::make_unique<watcher>(machine_, options_.hstates, options_.watch);
                if (!watching_.exchange(true))
                    wake_all(); // catch up with what happened while nobody watched
                w->run(stop, [this](const watch_event& e) { on_event(e); });
                return; // stopped
            } catch (const std::system_error& e) {
                record_everywhere(e.code().value());
            } catch (...) {
                record_everywhere(EIO);
            }
            w.reset();
            watching_.store(false);
            watcher_failures_.fetch_add(1);
            wake_all(); // from now on the workers poll
            detail::ranked_mutex<> m{detail::lock_rank::leaf, "the watcher's back-off"};
            std::condition_variable_any backoff;
            std::unique_lock lock(m);
            if (backoff.wait_until(lock, stop, detail::deadline_after(options_.error_backoff), [] { return false; }); stop.stop_requested())
                return;
        }
    }

    // Whether, at one moment, nothing is zeroable, no worker has a wake-up it has not taken,
    // and none is busy. In that order: a worker takes a wake-up and becomes busy under its node's
    // lock, and zeroable pages only disappear while some worker is busy (or by consumers).
    bool drained_now()
    {
        // start() and stop() change slots_ under control_; they may hold it a long time (joining
        // workers that need drained_mutex_, held by our caller): never wait for it here.
        const std::unique_lock control(control_, std::try_to_lock);
        if (!control.owns_lock() || !running_.load())
            return false;
        if (!nothing_zeroable())
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

    // One worker: a zeroing session per hstate of its node, enrolled so that pause() stops it,
    // then woken by the watcher (or its retry time, or its own polling while the watcher is
    // down) to drain them.
    void run_worker(detail::worker_context& context, worker_slot& slot)
    {
        std::vector<std::unique_ptr<detail::zeroing_session>> sessions;
        for (const hstate& h : slot.node.hstates) {
            try {
                sessions.push_back(std::make_unique<detail::zeroing_session>(machine_, h, options_.zeroing));
            } catch (const std::system_error& e) {
                counters(h).record_error(e.code().value());
            } catch (const std::exception&) {
                counters(h).record_error(EIO);
            }
        }
        worker_pause pause_point(sessions);
        const auto enrolment = workers_.enrol(pause_point);
        context.started();
        const std::stop_callback interrupt(context.stop(), [&sessions]() noexcept {
            for (auto& s : sessions)
                s->interrupt();
        });
        std::optional<clock::time_point> retry;
        while (wait_for_work(context.stop(), slot, retry)) {
            retry.reset();
            for (auto& s : sessions)
                drain_guarded(*s, pause_point.gate(), context.stop(), retry);
            busy_.fetch_sub(1);
            drained_cv_.notify_all();
        }
    }

    // Waits for a wake-up, the retry time, or (while the watcher is down) a safety-net period;
    // then counts the worker busy. False once stopped.
    bool wait_for_work(const std::stop_token& stop, worker_slot& slot, const std::optional<clock::time_point>& retry)
    {
        node_work& node = slot.node;
        std::unique_lock lock(node.mutex);
        for (;;) {
            std::optional<clock::time_point> deadline = retry;
            if (!watching_.load()) {
                const auto poll = std::max<std::chrono::nanoseconds>(options_.watch.safety_net_period, std::chrono::milliseconds(1));
                deadline = std::min(deadline.value_or(clock::time_point::max()), detail::deadline_after(poll));
            }
            const auto ready = [&] {
                return !paused() && (slot.seen_epoch != node.epoch || (deadline && clock::now() >= *deadline));
            };
            const bool go = deadline ? node.cv.wait_until(lock, stop, *deadline, ready) : node.cv.wait(lock, stop, ready);
            if (stop.stop_requested())
                return false;
            if (!go)
                continue;
            slot.seen_epoch = node.epoch;
            busy_.fetch_add(1); // with the wake-up it takes: see drained_now()
            return true;
        }
    }

    // drain(), counting anything it throws (a custom policy's exception, say) instead of
    // letting it end the worker.
    void drain_guarded(detail::zeroing_session& s, detail::call_gate& gate, const std::stop_token& stop,
                       std::optional<clock::time_point>& retry)
    {
        try {
            detail::drain(s, gate, stop, [this] { return paused(); }, *options_.policy, counters(s.which()),
                          options_.error_backoff, retry);
            return;
        } catch (const std::system_error& e) {
            counters(s.which()).record_error(e.code().value());
        } catch (...) {
            counters(s.which()).record_error(EIO);
        }
        detail::retry_no_later_than(retry, detail::deadline_after(options_.error_backoff));
    }

    machine machine_;
    service_options options_;
    std::map<hstate, std::unique_ptr<detail::statistics_counters>> statistics_; // fixed after construction
    std::vector<std::unique_ptr<node_work>> nodes_;                            // fixed after construction
    std::vector<std::unique_ptr<worker_slot>> slots_;                          // changed only by start()
    mutable detail::ranked_mutex<> control_{detail::lock_rank::control, "a prezero_service's control"};
    std::atomic<bool> running_{false}; // changed under control_
    std::uint64_t listener_ = 0; // the policy's allowance_changed() wakes us
    std::atomic<bool> watching_{false};
    std::atomic<std::uint64_t> watcher_failures_{0};
    std::atomic<int> busy_{0};
    detail::ranked_mutex<> drained_mutex_{detail::lock_rank::service_drain, "the service's drain"};
    std::condition_variable_any drained_cv_;
    // Threads last: they stop and join before the state they use is destroyed.
    detail::worker_group workers_;
    std::jthread watcher_thread_;
};

} // namespace hugezero

#endif
