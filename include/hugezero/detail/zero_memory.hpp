/// @file
/// @brief Internals of the pool's scrub: zeroing memory from user space with non-temporal
/// stores where the CPU has them, chosen at run time.
#ifndef HUGEZERO_DETAIL_ZERO_MEMORY_HPP
#define HUGEZERO_DETAIL_ZERO_MEMORY_HPP

#include <cstddef>
#include <cstdint>
#include <cstring>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace hugezero::detail {

/// How zero_memory() writes: the stores it uses on this CPU.
enum class zeroing_stores {
    avx_non_temporal,  ///< 32-byte non-temporal stores (AVX).
    sse2_non_temporal, ///< 16-byte non-temporal stores (every x86-64 CPU).
    memset,            ///< The C library's memset.
};

/// The stores zero_memory() uses here.
inline zeroing_stores stores_for_this_cpu() noexcept
{
#if defined(__x86_64__)
    static const zeroing_stores chosen = __builtin_cpu_supports("avx") ? zeroing_stores::avx_non_temporal
                                                                       : zeroing_stores::sse2_non_temporal;
    return chosen;
#else
    return zeroing_stores::memset;
#endif
}

/// Their name, for benchmarks and messages.
inline const char* to_string(zeroing_stores s) noexcept
{
    switch (s) {
    case zeroing_stores::avx_non_temporal:
        return "avx-non-temporal";
    case zeroing_stores::sse2_non_temporal:
        return "sse2-non-temporal";
    case zeroing_stores::memset:
        return "memset";
    }
    return "unknown";
}

#if defined(__x86_64__)
// Non-temporal stores skip the caches: zeroing a gigabyte that nobody reads next must not
// evict everything else, and it runs near the memory's write bandwidth.
__attribute__((target("avx"))) inline void zero_avx(std::byte* p, std::size_t bytes) noexcept
{
    const __m256i zero = _mm256_setzero_si256();
    for (std::byte* end = p + bytes; p != end; p += 128) {
        _mm256_stream_si256(reinterpret_cast<__m256i*>(p), zero);
        _mm256_stream_si256(reinterpret_cast<__m256i*>(p + 32), zero);
        _mm256_stream_si256(reinterpret_cast<__m256i*>(p + 64), zero);
        _mm256_stream_si256(reinterpret_cast<__m256i*>(p + 96), zero);
    }
    _mm_sfence(); // the stores are weakly ordered: make them visible before the memory is served
}

inline void zero_sse2(std::byte* p, std::size_t bytes) noexcept
{
    const __m128i zero = _mm_setzero_si128();
    for (std::byte* end = p + bytes; p != end; p += 64) {
        _mm_stream_si128(reinterpret_cast<__m128i*>(p), zero);
        _mm_stream_si128(reinterpret_cast<__m128i*>(p + 16), zero);
        _mm_stream_si128(reinterpret_cast<__m128i*>(p + 32), zero);
        _mm_stream_si128(reinterpret_cast<__m128i*>(p + 48), zero);
    }
    _mm_sfence();
}
#endif

/// Writes zeros to [@p p, @p p + @p bytes) with @p stores. Non-temporal stores need @p p
/// aligned to 128 bytes and @p bytes a multiple of 128 (huge pages are); otherwise memset.
inline void zero_memory(void* p, std::size_t bytes, zeroing_stores stores = stores_for_this_cpu()) noexcept
{
    auto* start = static_cast<std::byte*>(p);
    const bool aligned = reinterpret_cast<std::uintptr_t>(start) % 128 == 0 && bytes % 128 == 0;
#if defined(__x86_64__)
    if (aligned && stores == zeroing_stores::avx_non_temporal && __builtin_cpu_supports("avx"))
        return zero_avx(start, bytes);
    if (aligned && stores != zeroing_stores::memset)
        return zero_sse2(start, bytes);
#else
    (void)aligned;
#endif
    std::memset(start, 0, bytes);
}

} // namespace hugezero::detail

#endif
