/// @file
/// @brief hugezero::prefault_result: what populate() did.
#ifndef HUGEZERO_PREFAULT_RESULT_HPP
#define HUGEZERO_PREFAULT_RESULT_HPP

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <vector>
#include <chrono>
#include <system_error>

#include <hugezero/prefault_options.hpp>
#include <hugezero/thread_settings.hpp>

namespace hugezero {

/// How a populate() ended.
enum class prefault_status {
    complete,  ///< Every page is faulted in.
    cancelled, ///< The stop token was triggered.
    failed,    ///< A thread failed; see prefault_result::error.
};

/// Prints `complete`, `cancelled` or `failed`.
inline std::ostream& operator<<(std::ostream& out, prefault_status status)
{
    switch (status) {
    case prefault_status::complete:
        return out << "complete";
    case prefault_status::cancelled:
        return out << "cancelled";
    case prefault_status::failed:
        return out << "failed";
    }
    return out << "unknown";
}

/// What populate() did.
struct prefault_result {
    prefault_status status = prefault_status::complete; ///< How it ended.
    std::error_code error;             ///< The first failure's errno (by address), if failed.
    std::string message;               ///< The same in words: the range, the call, the cause.
    unsigned threads = 0;              ///< Threads used.
    prefault_method method = prefault_method::populate_write; ///< The method that did the work.
    std::uint64_t bytes_populated = 0; ///< Bytes faulted in by calls that completed.
    std::chrono::nanoseconds elapsed{0}; ///< Wall time, threads' start to the last one's end.
    std::vector<setting_failure> setting_failures; ///< Thread settings that could not be applied.

    /// Whether every page was faulted in.
    explicit operator bool() const noexcept { return status == prefault_status::complete; }

    /// Prints e.g. `complete: 2GiB populated by 2 threads (MADV_POPULATE_WRITE) in 98.1ms`.
    friend std::ostream& operator<<(std::ostream& out, const prefault_result& r)
    {
        out << r.status << ": " << detail::bytes_text(r.bytes_populated) << " populated by " << r.threads
            << (r.threads == 1 ? " thread (" : " threads (") << r.method << ") in "
            << std::chrono::duration<double, std::milli>(r.elapsed).count() << "ms";
        if (r.status == prefault_status::failed)
            out << ": " << r.message;
        return out;
    }
};

} // namespace hugezero

#endif
