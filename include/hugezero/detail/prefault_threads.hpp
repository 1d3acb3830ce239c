/// @file
/// @brief Internals of prefault.hpp: what each of populate()'s threads does, and how its
/// failure is told.
#ifndef HUGEZERO_DETAIL_PREFAULT_THREADS_HPP
#define HUGEZERO_DETAIL_PREFAULT_THREADS_HPP

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <sstream>
#include <stop_token>
#include <string>
#include <vector>

#include <sys/mman.h>

#include <hugezero/detail/bytes_text.hpp>
#include <hugezero/prefault_options.hpp>
#include <hugezero/prefault_plan.hpp>
#include <hugezero/prefault_result.hpp>
#include <hugezero/thread_settings.hpp>

namespace hugezero::detail {


struct prefault_thread_outcome {
    int error = 0;
    std::uint64_t failed_at = 0; // byte offset of the failing call
    std::uint64_t failed_length = 0;
    prefault_method method = prefault_method::populate_write;
    bool cancelled = false;
    std::uint64_t bytes_done = 0;
    std::vector<setting_failure> setting_failures;
};

inline void touch_pages(std::byte* start, std::uint64_t length, std::uint64_t page_bytes) noexcept
{
    for (std::uint64_t offset = 0; offset < length; offset += page_bytes) {
        // An atomic read-modify-write faults the page in for writing without changing what a
        // concurrent writer (a guest already running) put there.
        __atomic_fetch_add(reinterpret_cast<unsigned char*>(start + offset), 0, __ATOMIC_RELAXED);
    }
}

inline void prefault_worker(std::byte* base, const prefault_range& range, std::uint64_t page_bytes, std::uint64_t step,
                            const prefault_options& options, bool apply_settings, std::latch& start,
                            const std::stop_token& stop, prefault_thread_outcome& out)
{
    if (apply_settings) {
        thread_settings settings;
        settings.cpus = options.cpus;
        settings.memory_node = options.memory_node;
        out.setting_failures = apply_to_current_thread(settings);
    }
    start.arrive_and_wait(); // every thread starts faulting at once (QEMU's start barrier)
    const bool touch = options.method == prefault_method::touch
                       || (options.method == prefault_method::automatic && !populate_write_supported());
    const prefault_method method = touch ? prefault_method::touch : prefault_method::populate_write;
    const std::uint64_t end = (range.first_page + range.pages) * page_bytes;
    std::uint64_t offset = range.first_page * page_bytes;
    while (offset < end) {
        if (stop.stop_requested()) {
            out.cancelled = true;
            break;
        }
        const std::uint64_t length = std::min(step, end - offset);
        if (method == prefault_method::touch) {
            touch_pages(base + offset, length, page_bytes);
        } else if (::madvise(base + offset, length, madv_populate_write) != 0) {
            const int error = errno;
            if (error == EINTR)
                continue; // a fatal signal is on its way, or a spurious wakeup: try again
            out.error = error;
            out.failed_at = offset;
            out.failed_length = length;
            break;
        }
        out.bytes_done += length;
        offset += length;
    }
    out.method = method;
}

inline std::string prefault_error_message(const void* base, const prefault_thread_outcome& o)
{
    std::ostringstream out;
    out << "hugezero: populate: " << (o.method == prefault_method::touch ? "touching" : "MADV_POPULATE_WRITE of")
        << " bytes [" << o.failed_at << ", " << o.failed_at + o.failed_length << ") of the mapping at " << base
        << " failed: " << std::error_code(o.error, std::system_category()).message();
    switch (o.error) {
    case EFAULT:
        out << " (EFAULT: the huge page pool ran dry: no free huge page was left to back the mapping, or the range "
               "is not mapped)";
        break;
    case ENOMEM:
        out << " (ENOMEM: the range is not fully mapped, or memory ran out)";
        break;
    case EINVAL:
        out << " (EINVAL: the mapping is not writable, or cannot be populated)";
        break;
    case EHWPOISON:
        out << " (EHWPOISON: a poisoned page)";
        break;
    default:
        break;
    }
    return out.str();
}

} // namespace hugezero::detail

#endif
