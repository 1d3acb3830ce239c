// Skipping a test at run time: ctest reports a test as skipped when it prints "HUGEZERO_SKIP:"
// (tests/CMakeLists.txt sets SKIP_REGULAR_EXPRESSION), so a missing prerequisite never
// passes silently as if it had been tested.
#ifndef HUGEZERO_TESTS_SUPPORT_SKIP_HPP
#define HUGEZERO_TESTS_SUPPORT_SKIP_HPP

#include <iostream>
#include <string>

#include <unistd.h>

namespace hugezero::test {

inline void report_skip(const std::string& reason) { std::cout << "HUGEZERO_SKIP: " << reason << std::endl; }

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

#endif
