// What every fuzz harness shares: the libFuzzer entry point's signature, and a check that stops
// the run (libFuzzer then saves the input) when an invariant does not hold. The same harness
// sources build as libFuzzer targets (clang, HUGEZERO_BUILD_FUZZERS) and as corpus replays
// (any compiler, ctest label fuzz-replay), so corpus and regressions run everywhere.
#ifndef HUGEZERO_TESTS_FUZZ_FUZZ_HPP
#define HUGEZERO_TESTS_FUZZ_FUZZ_HPP

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace hugezero::fuzz {

[[noreturn]] inline void invariant_failed(const char* condition, const char* file, int line, const std::string& detail)
{
    std::fprintf(stderr, "%s:%d: invariant failed: %s\n  %s\n", file, line, condition, detail.c_str());
    std::abort();
}

inline std::string_view text(const std::uint8_t* data, std::size_t size)
{
    return {reinterpret_cast<const char*>(data), size};
}

} // namespace hugezero::fuzz

/// Aborts with the condition, the place and @p detail (a std::string) unless @p condition holds.
#define HUGEZERO_FUZZ_CHECK(condition, detail)                                                     \
    do {                                                                                           \
        if (!(condition))                                                                          \
            ::hugezero::fuzz::invariant_failed(#condition, __FILE__, __LINE__, (detail));          \
    } while (false)

#endif
