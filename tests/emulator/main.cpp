// The main of every test executable built against the FUSE emulator: when FUSE cannot be used
// here (no /dev/fuse, or no privilege to mount), every test case is reported skipped with the
// reason instead of failing; listing the cases (ctest's discovery) always works.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstring>
#include <exception>
#include <fstream>
#include <iostream>
#include <string>

#include <hugezero/sim/builder.hpp>

#include "emulator/fuse_sysfs.hpp"
#include "support/skip.hpp"
#include "support/temp_dir.hpp"

namespace {

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
// to skip; one that fails although this process may mount is a failure.
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

bool listing(int argc, char** argv)
{
    for (int i = 1; i < argc; ++i)
        if (std::strncmp(argv[i], "--list", 6) == 0 || std::strncmp(argv[i], "-l", 2) == 0)
            return true;
    return false;
}

} // namespace

int main(int argc, char** argv)
{
    if (!listing(argc, argv)) {
        try {
            const std::string why = emulator_unavailable();
            if (!why.empty()) {
                if (hugezero::test::required("fuse")) {
                    std::cerr << "HUGEZERO_TEST_REQUIRE has fuse, but the FUSE emulator cannot run here: " << why << '\n';
                    return 1;
                }
                hugezero::test::report_skip("the FUSE emulator cannot run here: " + why);
                return 0;
            }
        } catch (const std::exception& e) {
            std::cerr << "the FUSE emulator cannot mount although this process may: " << e.what() << '\n';
            return 1;
        }
    }
    doctest::Context context(argc, argv);
    return context.run();
}
