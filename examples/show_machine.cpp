// show_machine: prints this machine's hugetlb topology and counters as hugezero sees them, and
// for each hstate whether the kernel can pre-zero it.
//
//   show_machine [--sysfs-root DIR]
//
// Exit status: 0 on success, 2 when sysfs cannot be read or holds something unexpected (or the
// command line is wrong), 1 on any other error.
#include <hugezero/hugezero.hpp>

#include <cstdlib>
#include <exception>
#include <filesystem>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>

namespace {

constexpr int exit_error = 2;

void usage(std::ostream& out)
{
    out << "usage: show_machine [--sysfs-root DIR]\n"
           "\n"
           "Prints the NUMA nodes, their CPUs and huge page counters, and whether each hstate\n"
           "(node and page size) supports pre-zeroing through zeroable_hugepages.\n"
           "\n"
           "  --sysfs-root DIR  read DIR instead of /sys (default: $HUGEZERO_SYSFS_ROOT, else /sys)\n"
           "  --help            show this help\n";
}

// Everything is gathered first, so a failure prints an error rather than half a report.
int show(const std::filesystem::path& root)
{
    const hugezero::machine machine = hugezero::machine::open(root);
    std::ostringstream out;
    out << "hugezero " << hugezero::version_string << ", sysfs at " << root.string() << "\n\n";
    if (machine.topology().page_sizes().empty())
        out << "This kernel offers no huge page sizes (no " << (root / "kernel/mm/hugepages").string() << ").\n";
    out << machine;
    for (const hugezero::page_size size : machine.topology().page_sizes())
        out << "all nodes " << size << ' ' << machine.global(size) << '\n';
    out << '\n';
    for (const hugezero::hstate& h : machine.topology().hstates()) {
        out << h << ": pre-zeroing ";
        if (machine.supports_zeroing(h))
            out << "supported (zeroable_hugepages present)\n";
        else
            out << "not supported (no zeroable_hugepages: a stock kernel)\n";
    }
    std::cout << out.str();
    return EXIT_SUCCESS;
}

} // namespace

int main(int argc, char** argv)
{
    std::optional<std::filesystem::path> root;
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        if (arg == "--help" || arg == "-h") {
            usage(std::cout);
            return EXIT_SUCCESS;
        }
        if (arg == "--sysfs-root" && i + 1 < argc) {
            root = argv[++i];
        } else if (arg.starts_with("--sysfs-root=")) {
            root = std::filesystem::path(arg.substr(std::string_view("--sysfs-root=").size()));
        } else {
            std::cerr << "show_machine: "
                      << (arg == "--sysfs-root" ? "--sysfs-root needs a directory" : "unknown argument '"
                                                                                       + std::string(arg) + "'")
                      << "\n\n";
            usage(std::cerr);
            return exit_error;
        }
    }
    try {
        return show(root ? *root : hugezero::sysfs_backend::default_root());
    } catch (const hugezero::parse_error& e) {
        std::cerr << "show_machine: " << e.what() << '\n';
        return exit_error;
    } catch (const std::system_error& e) {
        std::cerr << "show_machine: " << e.what() << '\n';
        return exit_error;
    } catch (const std::exception& e) {
        std::cerr << "show_machine: unexpected error: " << e.what() << '\n';
        return EXIT_FAILURE;
    }
}
