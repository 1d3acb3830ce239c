// Running a piece of a test in a fresh thread (per-thread settings, per-thread capabilities,
// signals aimed at one thread) and waiting for a condition with a deadline instead of sleeping.
#ifndef HUGEZERO_TESTS_SUPPORT_THREADS_HPP
#define HUGEZERO_TESTS_SUPPORT_THREADS_HPP

#include <chrono>
#include <exception>
#include <functional>
#include <optional>
#include <thread>
#include <type_traits>
#include <utility>

namespace hugezero::test {

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

} // namespace hugezero::test

#endif
