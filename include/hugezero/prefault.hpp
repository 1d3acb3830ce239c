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
#include <hugezero/detail/prefault_threads.hpp>
#include <hugezero/machine.hpp>
#include <hugezero/mapping.hpp>
#include <hugezero/node_id.hpp>
#include <hugezero/page_size.hpp>
#include <hugezero/prefault_options.hpp>
#include <hugezero/prefault_plan.hpp>
#include <hugezero/prefault_result.hpp>
#include <hugezero/thread_settings.hpp>

namespace hugezero {

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
