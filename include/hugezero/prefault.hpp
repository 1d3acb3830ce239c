/// @file
/// @brief hugezero::populate(): parallel, NUMA-pinned prefault of a huge page mapping, for when
/// nothing was prepared (QEMU's `prealloc-threads`, as a library call).
#ifndef HUGEZERO_PREFAULT_HPP
#define HUGEZERO_PREFAULT_HPP

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <latch>
#include <mutex>
#include <optional>
#include <ostream>
#include <sstream>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include <sys/mman.h>

#include <hugezero/cpu_set.hpp>
#include <hugezero/detail/bytes_text.hpp>
#include <hugezero/detail/hugetlb_file.hpp>
#include <hugezero/machine.hpp>
#include <hugezero/mapping.hpp>
#include <hugezero/node_id.hpp>
#include <hugezero/page_size.hpp>
#include <hugezero/thread_settings.hpp>

namespace hugezero {

/// How populate() faults pages in.
enum class prefault_method {
    /// `MADV_POPULATE_WRITE`, or touching each page if the kernel does not have it (Linux
    /// before 5.14; probed once per process). Default.
    automatic,
    /// `MADV_POPULATE_WRITE` only: its `EINVAL` is an error.
    populate_write,
    /// Touch each page: an atomic add of zero to its first byte, which faults it in for
    /// writing and leaves its content as it was. A page the kernel cannot provide raises
    /// `SIGBUS` instead of an error: use it only on mappings whose pages are reserved (a
    /// hugetlb mapping without `MAP_NORESERVE`) or already allocated (a lease).
    touch,
};

/// Prints `automatic`, `MADV_POPULATE_WRITE` or `touch`.
inline std::ostream& operator<<(std::ostream& out, prefault_method method)
{
    switch (method) {
    case prefault_method::automatic:
        return out << "automatic";
    case prefault_method::populate_write:
        return out << "MADV_POPULATE_WRITE";
    case prefault_method::touch:
        return out << "touch";
    }
    return out << "unknown";
}

/// How populate() runs.
struct prefault_options {
    /// Threads to use; 0 means QEMU's rule (prefault_threads()). An explicit count is used as
    /// given (no hidden cap), but never more threads than pages.
    unsigned threads = 0;
    /// The cap in QEMU's rule (QEMU's `MAX_MEM_PREALLOC_THREAD_COUNT` is 16). Any value >= 1.
    unsigned max_threads = 16;
    /// Pin the threads to these CPUs; they also count as "the CPUs" in QEMU's rule (otherwise
    /// the CPUs this process may run on do).
    std::optional<cpu_set> cpus;
    /// Bind the threads' memory to this node: a page the kernel allocates while faulting
    /// (anonymous memory, or a file page not allocated yet) comes from it.
    std::optional<node_id> memory_node;
    /// How pages are faulted in.
    prefault_method method = prefault_method::automatic;
    /// Each thread faults in at most this much per call, rounded down to whole pages (at least
    /// one), and checks for cancellation between calls: `MADV_POPULATE_WRITE` is not
    /// interrupted by ordinary signals. Default 64 MiB (about 5 ms of zeroing here).
    std::uint64_t step_bytes = std::uint64_t{64} << 20;

    /// Options that pin the threads to @p node's CPUs and bind their memory to it.
    /// @throws std::invalid_argument if @p m has no such node.
    static prefault_options on_node(const machine& m, node_id node)
    {
        prefault_options options;
        const cpu_set& cpus = m.topology().node(node).cpus;
        if (!cpus.empty())
            options.cpus = cpus;
        options.memory_node = node;
        return options;
    }
};

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

/// QEMU's rule for how many threads prefault @p bytes of @p page pages: the fewest of
/// @p cpus, @p max_threads, the number of pages, and one per 64 MiB (at least one).
[[nodiscard]] inline unsigned prefault_threads(std::uint64_t bytes, page_size page, std::size_t cpus,
                                               unsigned max_threads = 16) noexcept
{
    const std::uint64_t pages = bytes / page.bytes();
    const std::uint64_t per_64mib = std::max<std::uint64_t>(1, bytes / (std::uint64_t{64} << 20));
    std::uint64_t n = std::min<std::uint64_t>({std::max<std::uint64_t>(1, cpus), std::max(1U, max_threads), pages, per_64mib});
    return static_cast<unsigned>(std::max<std::uint64_t>(1, n));
}

/// One thread's share of a prefault: pages [first_page, first_page + pages).
struct prefault_range {
    std::uint64_t first_page = 0; ///< Its first page.
    std::uint64_t pages = 0;      ///< Its page count.
    /// Equal when both fields are.
    friend bool operator==(const prefault_range&, const prefault_range&) = default;
};

/// Splits @p pages pages into @p threads contiguous ranges, as QEMU does: each gets
/// pages / threads, and the first pages % threads get one more.
[[nodiscard]] inline std::vector<prefault_range> prefault_split(std::uint64_t pages, unsigned threads)
{
    std::vector<prefault_range> ranges;
    if (threads == 0)
        return ranges;
    const std::uint64_t each = pages / threads;
    const std::uint64_t extra = pages % threads;
    std::uint64_t next = 0;
    for (unsigned i = 0; i < threads; ++i) {
        const std::uint64_t n = each + (i < extra ? 1 : 0);
        ranges.push_back({next, n});
        next += n;
    }
    return ranges;
}

namespace detail {

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

} // namespace detail

/// Faults in every page of @p bytes bytes at @p address, backed by @p page pages, with
/// threads each taking a contiguous range (QEMU's prealloc scheme): threads are created, pinned
/// (prefault_options::cpus, memory_node), wait at a start barrier, then each calls
/// `MADV_POPULATE_WRITE` over its range in steps, checking @p stop between steps.
///
/// For a lease this only builds page tables (~0.7 µs per 2 MiB page here); for anonymous
/// memory or a file without pages the kernel also allocates and zeroes each page.
/// @return how it went: complete, cancelled, or failed with the first failing call's errno
/// (`EFAULT`: the huge page pool ran dry) and a message naming the range.
/// @throws std::invalid_argument if @p address or @p bytes is not a multiple of @p page, or
/// @p bytes is 0.
/// @throws std::system_error if a thread cannot be started.
inline prefault_result populate(void* address, std::uint64_t bytes, page_size page, const prefault_options& options = {},
                                std::stop_token stop = {})
{
    if (address == nullptr || bytes == 0 || bytes % page.bytes() != 0
        || reinterpret_cast<std::uintptr_t>(address) % page.bytes() != 0)
        throw std::invalid_argument("hugezero: populate needs a non-empty range aligned to its " + to_string(page)
                                    + " pages, got " + std::to_string(bytes) + " bytes at "
                                    + std::to_string(reinterpret_cast<std::uintptr_t>(address)));
    const std::uint64_t pages = bytes / page.bytes();
    unsigned threads = options.threads;
    if (threads == 0) {
        const std::size_t cpus = options.cpus ? options.cpus->count() : current_affinity().count();
        threads = prefault_threads(bytes, page, cpus, options.max_threads);
    }
    threads = static_cast<unsigned>(std::min<std::uint64_t>(threads, pages));
    const std::uint64_t step = std::max<std::uint64_t>(1, options.step_bytes / page.bytes()) * page.bytes();
    const bool apply_settings = options.cpus.has_value() || options.memory_node.has_value();
    const auto ranges = prefault_split(pages, threads);
    std::vector<detail::prefault_thread_outcome> outcomes(threads);
    auto* base = static_cast<std::byte*>(address);

    prefault_result result;
    result.threads = threads;
    const auto started = std::chrono::steady_clock::now();
    if (threads == 1 && !apply_settings) {
        std::latch start(1);
        detail::prefault_worker(base, ranges[0], page.bytes(), step, options, false, start, stop, outcomes[0]);
    } else {
        std::latch start(threads);
        std::vector<std::jthread> workers;
        workers.reserve(threads);
        try {
            for (unsigned i = 0; i < threads; ++i)
                workers.emplace_back([&, i] {
                    detail::prefault_worker(base, ranges[i], page.bytes(), step, options, apply_settings, start, stop,
                                            outcomes[i]);
                });
        } catch (...) {
            start.count_down(static_cast<std::ptrdiff_t>(threads - workers.size())); // free those waiting
            throw;
        }
    }
    result.elapsed = std::chrono::steady_clock::now() - started;

    const detail::prefault_thread_outcome* failed = nullptr;
    bool cancelled = false;
    for (auto& o : outcomes) {
        result.bytes_populated += o.bytes_done;
        if (o.method == prefault_method::touch)
            result.method = prefault_method::touch;
        if (o.error != 0 && failed == nullptr)
            failed = &o; // ranges are in address order: the first is the lowest
        cancelled = cancelled || o.cancelled;
        result.setting_failures.insert(result.setting_failures.end(), o.setting_failures.begin(), o.setting_failures.end());
    }
    if (failed != nullptr) {
        result.status = prefault_status::failed;
        result.error = std::error_code(failed->error, std::system_category());
        result.message = detail::prefault_error_message(address, *failed);
    } else if (cancelled) {
        result.status = prefault_status::cancelled;
    }
    return result;
}

/// Faults in the whole of @p m; see populate(void*, std::uint64_t, page_size, const prefault_options&, std::stop_token).
/// @throws hugezero::closed_handle_error if @p m is closed; otherwise as the other overload.
inline prefault_result populate(const mapping& m, const prefault_options& options = {}, std::stop_token stop = {})
{
    return populate(m.data(), m.size(), m.page(), options, std::move(stop));
}

} // namespace hugezero

#endif
