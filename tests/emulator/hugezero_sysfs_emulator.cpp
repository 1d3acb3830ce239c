// hugezero_sysfs_emulator: mounts a simulated kernel with the zeroable_hugepages ABI as a sysfs-like
// FUSE file system and serves it until SIGINT or SIGTERM, for manual use and demos:
//
//   hugezero_sysfs_emulator /tmp/sys &
//   zero_all_nodes --sysfs-root /tmp/sys
//   kill %1
//
// The machine is shaped with the same --sim-* options as zero_all_nodes --simulate (same
// defaults), plus the kernel behaviours ABI.md leaves open. See docs/emulator.md.
#include <csignal>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include <signal.h>

#include <hugezero/sim/builder.hpp>

#include "emulator/fuse_sysfs.hpp"
#include "zero_all_nodes/cli.hpp"

namespace {

constexpr const char* usage = R"(Usage: hugezero_sysfs_emulator MOUNTPOINT [options]

Serves a simulated kernel that has the zeroable_hugepages pre-zeroing interface as a sysfs-like
FUSE file system at MOUNTPOINT (an existing empty directory) until SIGINT or SIGTERM, then
unmounts. Point hugezero at it: zero_all_nodes --sysfs-root MOUNTPOINT, or
HUGEZERO_SYSFS_ROOT=MOUNTPOINT.

The machine (defaults as zero_all_nodes --simulate: 2 nodes, each with 256 dirty 2 MiB pages and
4 dirty 1 GiB pages, costing 150us and 70ms per page):
  --sim-nodes N                 simulated nodes (1-64)
  --sim-pages SIZE=COUNT        dirty pages per node of SIZE (repeatable; 0 removes the size)
  --sim-page-cost SIZE=DURATION zeroing time of one page of SIZE (repeatable)
What ABI.md leaves open:
  --sim-on-signal eintr|restart|partial   what a signal does to a write in progress (default eintr)
  --sim-out-of-range einval|clamp         what a write above the zeroable count does (default einval)
  --help                        this text
)";

struct emulator_options {
    std::string mountpoint;
    std::vector<std::string> machine_args{"--simulate"}; // parsed by zero_all_nodes's parser
    hugezero::sim::signal_policy on_signal = hugezero::sim::signal_policy::eintr;
    hugezero::sim::out_of_range_policy out_of_range = hugezero::sim::out_of_range_policy::einval;
};

[[noreturn]] void usage_error(const std::string& message)
{
    std::cerr << "hugezero_sysfs_emulator: " << message << "\nTry hugezero_sysfs_emulator --help.\n";
    std::exit(2);
}

emulator_options parse(int argc, char** argv)
{
    emulator_options o;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        const auto value = [&](const std::string& name) -> std::string {
            if (i + 1 >= argc)
                usage_error("option " + name + " needs a value");
            return argv[++i];
        };
        if (arg == "--help" || arg == "-h") {
            std::cout << usage;
            std::exit(0);
        } else if (arg == "--sim-on-signal") {
            const std::string v = value(arg);
            if (v == "eintr")
                o.on_signal = hugezero::sim::signal_policy::eintr;
            else if (v == "restart")
                o.on_signal = hugezero::sim::signal_policy::restart;
            else if (v == "partial")
                o.on_signal = hugezero::sim::signal_policy::partial_success;
            else
                usage_error("invalid --sim-on-signal value \"" + v + "\": use eintr, restart or partial");
        } else if (arg == "--sim-out-of-range") {
            const std::string v = value(arg);
            if (v == "einval")
                o.out_of_range = hugezero::sim::out_of_range_policy::einval;
            else if (v == "clamp")
                o.out_of_range = hugezero::sim::out_of_range_policy::clamp;
            else
                usage_error("invalid --sim-out-of-range value \"" + v + "\": use einval or clamp");
        } else if (arg == "--sim-nodes" || arg == "--sim-pages" || arg == "--sim-page-cost") {
            o.machine_args.push_back(arg);
            o.machine_args.push_back(value(arg));
        } else if (arg.rfind("--sim-", 0) == 0 && arg.find('=') != std::string::npos) {
            o.machine_args.push_back(arg); // --sim-pages=2M=512
        } else if (arg.rfind("-", 0) == 0) {
            usage_error("unknown option \"" + arg + "\"");
        } else if (o.mountpoint.empty()) {
            o.mountpoint = arg;
        } else {
            usage_error("one mount point only (got \"" + o.mountpoint + "\" and \"" + arg + "\")");
        }
    }
    if (o.mountpoint.empty())
        usage_error("a MOUNTPOINT is required");
    return o;
}

std::shared_ptr<hugezero::sim::kernel> build_kernel(const emulator_options& o)
{
    zero_all_nodes::options machine;
    try {
        machine = zero_all_nodes::parse_arguments(o.machine_args);
    } catch (const zero_all_nodes::usage_error& e) {
        usage_error(e.what());
    }
    return zero_all_nodes::simulated_machine(machine).on_signal(o.on_signal).out_of_range(o.out_of_range).build();
}

} // namespace

int main(int argc, char** argv)
{
    const emulator_options o = parse(argc, argv);
    // Blocked before the FUSE threads start (they inherit the mask), then waited for here.
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    ::pthread_sigmask(SIG_BLOCK, &stop, nullptr);
    try {
        if (const std::string why = hugezero::test::fuse_sysfs::unavailable(); !why.empty()) {
            std::cerr << "hugezero_sysfs_emulator: " << why << '\n';
            return 1;
        }
        const auto kernel = build_kernel(o);
        hugezero::test::fuse_sysfs mount(kernel, std::filesystem::absolute(o.mountpoint));
        std::cout << "hugezero_sysfs_emulator: serving a simulated kernel at " << mount.mountpoint().string()
                  << " (" << kernel->nodes().size() << " nodes); SIGINT or SIGTERM unmounts" << std::endl;
        int signo = 0;
        ::sigwait(&stop, &signo);
        mount.unmount();
        std::cout << "hugezero_sysfs_emulator: unmounted " << o.mountpoint << " after " << (signo == SIGINT ? "SIGINT" : "SIGTERM")
                  << std::endl;
    } catch (const std::exception& e) {
        std::cerr << "hugezero_sysfs_emulator: " << e.what() << '\n';
        return 1;
    }
    return 0;
}
