// One test executable, two ways to run: against the in-process simulated kernel (sim::backend),
// or with --through-emulator against the real sysfs_backend over a FUSE mount of the same
// simulated kernel (tests/emulator), doing real openat, pread, write and epoll through the
// kernel. The suites that run both ways are built once; ctest runs them twice (the second
// time as emulator/<case>, labels emulator and the suite's). tests/emulator/main.cpp reads the
// flag and applies the filters below.
//
// A case that makes sense only one way says so with a decorator:
//   TEST_CASE("..." * hugezero::test::not_through_emulator)   (a tree of plain files, real pages)
//   TEST_CASE("..." * hugezero::test::only_through_emulator)  (what only the kernel's FUSE shows)
// and a TEST_CASE_TEMPLATE over backend fixtures runs its <emulated_kernel> instances only
// through the emulator, its <real_sysfs> and <simulated_kernel> ones only without.
#ifndef HUGEZERO_TESTS_SUPPORT_EMULATOR_MODE_HPP
#define HUGEZERO_TESTS_SUPPORT_EMULATOR_MODE_HPP

#include <doctest/doctest.h>

namespace hugezero::test {

/// The setting behind through_emulator(): set once by the main, before any case runs.
inline bool& through_emulator_setting() noexcept
{
    static bool on = false;
    return on;
}

/// Whether this run's machines come through the FUSE emulator (--through-emulator).
inline bool through_emulator() noexcept { return through_emulator_setting(); }

/// The command-line flag that selects the emulator.
inline constexpr const char* through_emulator_option = "--through-emulator";

/// The doctest suites of the cases that run one way only (the decorators below).
inline constexpr const char* not_through_emulator_suite = "not-through-emulator";
inline constexpr const char* only_through_emulator_suite = "only-through-emulator";

/// Decorators for a case that runs one way only.
inline const doctest::test_suite not_through_emulator{not_through_emulator_suite};
inline const doctest::test_suite only_through_emulator{only_through_emulator_suite};

/// Restricts @p context to the cases of this run's way.
inline void filter_cases_for_this_way(doctest::Context& context)
{
    if (through_emulator()) {
        context.addFilter("test-suite-exclude", not_through_emulator_suite);
        context.addFilter("test-case-exclude", "*<real_sysfs>,*<simulated_kernel>");
    } else {
        context.addFilter("test-suite-exclude", only_through_emulator_suite);
        context.addFilter("test-case-exclude", "*<emulated_kernel>");
    }
}

} // namespace hugezero::test

#endif
