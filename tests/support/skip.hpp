// Skipping a test at run time: ctest reports a test as skipped when it prints "HUGEZERO_SKIP:"
// (tests/CMakeLists.txt sets SKIP_REGULAR_EXPRESSION), so a missing prerequisite never
// passes silently as if it had been tested.
#ifndef HUGEZERO_TESTS_SUPPORT_SKIP_HPP
#define HUGEZERO_TESTS_SUPPORT_SKIP_HPP

#include <cstdlib>
#include <iostream>
#include <sstream>
#include <string>

#include <unistd.h>

namespace hugezero::test {

inline void report_skip(const std::string& reason) { std::cout << "HUGEZERO_SKIP: " << reason << std::endl; }

// Whether @p prerequisite (a word such as "fuse" or "qemu") is listed in the environment
// variable HUGEZERO_TEST_REQUIRE: then a test that would skip for lack of it fails instead.
// scripts/test (and so CI) requires "fuse qemu", so those tests can never pass by skipping there.
inline bool required(const std::string& prerequisite)
{
    const char* list = std::getenv("HUGEZERO_TEST_REQUIRE");
    std::istringstream words(list != nullptr ? list : "");
    for (std::string word; words >> word;)
        if (word == prerequisite)
            return true;
    return false;
}

inline bool running_as_root() { return ::geteuid() == 0; }

} // namespace hugezero::test

/// Ends the current test case as skipped, with a reason, when @p condition holds.
#define HUGEZERO_SKIP_IF(condition, reason)                                                                  \
    do {                                                                                                     \
        if (condition) {                                                                                     \
            ::hugezero::test::report_skip(reason);                                                           \
            return;                                                                                          \
        }                                                                                                    \
    } while (false)

/// The same for a prerequisite that HUGEZERO_TEST_REQUIRE may require: then the test fails,
/// with the reason, instead of skipping.
#define HUGEZERO_SKIP_UNLESS_REQUIRED(prerequisite, condition, reason)                                       \
    do {                                                                                                     \
        if (condition) {                                                                                     \
            if (::hugezero::test::required(prerequisite))                                                    \
                FAIL("HUGEZERO_TEST_REQUIRE has " << (prerequisite) << ", but: " << (reason));                 \
            ::hugezero::test::report_skip(reason);                                                           \
            return;                                                                                          \
        }                                                                                                    \
    } while (false)

#endif
