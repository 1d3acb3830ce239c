// Running a piece of a test in a fresh thread (per-thread settings, per-thread capabilities,
// signals aimed at one thread) and waiting for a condition with a deadline instead of sleeping.
#ifndef HUGEZERO_TESTS_SUPPORT_THREADS_HPP
#define HUGEZERO_TESTS_SUPPORT_THREADS_HPP

#include <chrono>
#include <exception>
#include <functional>
#include <future>
#include <optional>
#include <thread>
#include <type_traits>
#include <utility>

namespace hugezero::test {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr bool sanitized_build = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
inline constexpr bool sanitized_build = true;
#else
inline constexpr bool sanitized_build = false;
#endif
#else
inline constexpr bool sanitized_build = false;
#endif

// How late a woken thread may run on these shared two-core machines, on top of the work a
// promptness bound allows for. Sanitizers slow every lock and wake-up several times (a TSan run
// once took 81 ms where 60 were allowed), so their builds get a wider margin. A bound built with
// it must still be well below the time the work would take if it were not interrupted.
inline constexpr std::chrono::milliseconds scheduling_slack{sanitized_build ? 100 : 10};

// Runs @p body in a new thread, waits for it, and returns its result (or rethrows its exception
// here, where doctest can report it). Whatever the body changes about its thread dies with it.
template <class Body>
auto run_in_new_thread(Body&& body) -> std::invoke_result_t<Body&>
{
    using result_type = std::invoke_result_t<Body&>;
    std::exception_ptr failure;
    if constexpr (std::is_void_v<result_type>) {
        std::thread([&] {
            try {
                body();
            } catch (...) {
                failure = std::current_exception();
            }
        }).join();
        if (failure)
            std::rethrow_exception(failure);
    } else {
        std::optional<result_type> result;
        std::thread([&] {
            try {
                result.emplace(body());
            } catch (...) {
                failure = std::current_exception();
            }
        }).join();
        if (failure)
            std::rethrow_exception(failure);
        return std::move(*result);
    }
}

// Polls @p condition until it holds or @p timeout passes; returns whether it held. For events
// that have no fd to wait on (a simulated kernel's counters moving); the short pause between
// polls only saves CPU, correctness never depends on it.
inline bool wait_until(const std::function<bool()>& condition,
                       std::chrono::milliseconds timeout = std::chrono::seconds(10))
{
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        if (condition())
            return true;
        if (std::chrono::steady_clock::now() >= deadline)
            return false;
        std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
}

// Runs @p call in another thread and says whether it returned within @p limit (a wait that
// should return at once must not hang the suite when it does not).
template <class Call>
bool returns_within(std::chrono::milliseconds limit, Call call)
{
    auto done = std::async(std::launch::async, std::move(call));
    const bool in_time = done.wait_for(limit) == std::future_status::ready;
    if (in_time)
        done.get();
    return in_time;
}

} // namespace hugezero::test

#endif
