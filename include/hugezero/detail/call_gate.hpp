/// @file
/// @brief detail::pausable and detail::call_gate: what a pause stops, and waits for.
#ifndef HUGEZERO_DETAIL_CALL_GATE_HPP
#define HUGEZERO_DETAIL_CALL_GATE_HPP

#include <condition_variable>
#include <mutex>

#include <hugezero/detail/lock_rank.hpp>

namespace hugezero::detail {

/// Something a worker does in the kernel on the machine's CPUs (a zeroing write, a refill step)
/// that a pause must stop, and whose end it must wait for: a pause that returns while a write
/// still zeroes has not given the CPUs back.
class pausable {
public:
    virtual ~pausable() = default;
    /// Refuses further calls until resume(), and cuts short the call in progress if it can.
    /// From any thread; never blocks for long.
    virtual void interrupt() noexcept = 0;
    /// Allows calls again. From any thread.
    virtual void resume() noexcept = 0;
    /// Waits until no call is in progress. After interrupt(), none starts until resume().
    virtual void wait_idle() noexcept = 0;
};

/// The gate one worker thread passes around each such call: enter() before it (false: do not
/// make it), leave() after. interrupt() closes the gate; wait_idle() waits for the call that
/// entered before to leave.
class call_gate final : public pausable {
public:
    /// Whether the call may be made; if so, leave() must follow it.
    [[nodiscard]] bool enter() noexcept
    {
        const std::lock_guard lock(mutex_);
        if (closed_)
            return false;
        in_call_ = true;
        return true;
    }
    /// The call that entered has returned.
    void leave() noexcept
    {
        {
            const std::lock_guard lock(mutex_);
            in_call_ = false;
        }
        idle_.notify_all();
    }
    /// Whether the gate is closed.
    [[nodiscard]] bool closed() const noexcept
    {
        const std::lock_guard lock(mutex_);
        return closed_;
    }

    void interrupt() noexcept override
    {
        const std::lock_guard lock(mutex_);
        closed_ = true;
    }
    void resume() noexcept override
    {
        const std::lock_guard lock(mutex_);
        closed_ = false;
    }
    void wait_idle() noexcept override
    {
        std::unique_lock lock(mutex_);
        idle_.wait(lock, [this] { return !in_call_; });
    }

private:
    mutable ranked_mutex<> mutex_{lock_rank::call_gate, "a call_gate"};
    std::condition_variable_any idle_;
    bool closed_ = false;
    bool in_call_ = false;
};

} // namespace hugezero::detail

#endif
