// The main of every test executable. It runs the cases of this run's way (support/
// emulator_mode.hpp): in an executable built with the FUSE emulator (tests/emulator,
// HUGEZERO_TEST_WITH_EMULATOR), --through-emulator runs them against the real sysfs_backend over
// FUSE; when FUSE cannot be used here (no /dev/fuse, no privilege to mount) every case is then
// reported skipped with the reason, unless HUGEZERO_TEST_REQUIRE has fuse. Listing the cases
// (ctest's discovery) always works.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "support/emulator_mode.hpp"

#ifdef HUGEZERO_TEST_WITH_EMULATOR
#include <exception>
#include <fstream>

#include <hugezero/sim/builder.hpp>

#include "emulator/fuse_sysfs.hpp"
#include "support/skip.hpp"
#include "support/temp_dir.hpp"
#endif

namespace {

#ifdef HUGEZERO_TEST_WITH_EMULATOR
bool listing(const std::vector<char*>& args)
{
    for (const char* a : args)
        if (std::strncmp(a, "--list", 6) == 0 || std::strncmp(a, "-l", 2) == 0)
            return true;
    return false;
}

// Whether the process has CAP_SYS_ADMIN, which mount(2) needs (fusermount3 has it for others).
bool has_sys_admin()
{
    std::ifstream status("/proc/self/status");
    std::string line;
    while (std::getline(status, line))
        if (line.rfind("CapEff:", 0) == 0)
            return ((std::stoull(line.substr(7), nullptr, 16) >> 21) & 1U) != 0;
    return false;
}

// Why the emulator cannot run here, or "". A mount that fails for lack of privilege is a reason
// to skip; one that fails although this process may mount is a failure (it throws).
std::string emulator_unavailable()
{
    if (std::string why = hugezero::test::fuse_sysfs::unavailable(); !why.empty())
        return why;
    try {
        hugezero::test::temp_dir dir;
        const hugezero::test::fuse_sysfs probe(hugezero::sim::machine_builder().build(), dir.path());
    } catch (const std::exception& e) {
        if (!has_sys_admin())
            return std::string("mounting a FUSE file system failed without CAP_SYS_ADMIN: ") + e.what();
        throw;
    }
    return {};
}

// Before a run through the emulator: 0 to go on, else the exit status (skipped or failed).
int check_emulator()
{
    try {
        const std::string why = emulator_unavailable();
        if (why.empty())
            return 0;
        if (hugezero::test::required("fuse")) {
            std::cerr << "HUGEZERO_TEST_REQUIRE has fuse, but the FUSE emulator cannot run here: " << why << '\n';
            return 1;
        }
        hugezero::test::report_skip("the FUSE emulator cannot run here: " + why);
        return -1;
    } catch (const std::exception& e) {
        std::cerr << "the FUSE emulator cannot mount although this process may: " << e.what() << '\n';
        return 1;
    }
}
#endif

} // namespace

int main(int argc, char** argv)
{
    std::vector<char*> args; // without --through-emulator, which is ours, not doctest's
    for (int i = 0; i < argc; ++i) {
        if (std::strcmp(argv[i], hugezero::test::through_emulator_option) != 0) {
            args.push_back(argv[i]);
            continue;
        }
#ifdef HUGEZERO_TEST_WITH_EMULATOR
        hugezero::test::through_emulator_setting() = true;
#else
        std::cerr << argv[0] << ": " << hugezero::test::through_emulator_option << ": built without the FUSE emulator\n";
        return 2;
#endif
    }
#ifdef HUGEZERO_TEST_WITH_EMULATOR
    if (hugezero::test::through_emulator() && !listing(args))
        if (const int status = check_emulator(); status != 0)
            return status < 0 ? 0 : status;
#endif
    doctest::Context context(static_cast<int>(args.size()), args.data());
    hugezero::test::filter_cases_for_this_way(context);
    return context.run();
}
