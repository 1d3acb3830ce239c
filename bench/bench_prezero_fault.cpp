// bench_prezero_fault: the headline of the pre-zeroing ABI, measured on a kernel that has it
// (the reference kernel of tests/kernel/patches, in a guest: scripts/guest): how much faster a
// VM faults in huge pages that were zeroed ahead of time than dirty ones.
//
//   bench_prezero_fault [--node N] [--pages N] [--repeat N] [--json] [--help]
//
// Each round makes N free 2 MiB pages of the node dirty (a "VM" takes them and leaves), times a
// fresh mapping of N pages bound to the node faulting them in (MADV_POPULATE_WRITE: the kernel
// zeroes each page on the way), gives them back, pre-zeroes the node (hugezero::zero_all through
// zeroable_hugepages), and times the same again (the kernel takes zeroed pages and skips the
// zeroing). It prints the best of each and their ratio, with the kernel's count of faults that
// found a zeroed page (hugetlb_prezero/stats) as a check. Under software emulation absolute
// times mean little; the ratio, measured in one run, does.
//
// Exit status: 0; 77 when the kernel has no zeroable_hugepages for the node or too few free
// pages; 2 for a bad command line; 1 for any other error.
#include <hugezero/hugezero.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace {

using clock_type = std::chrono::steady_clock;
using namespace hugezero::literals;

struct arguments {
    unsigned node = 0;
    std::uint64_t pages = 0; // 0: every free page of the node, at most 64
    unsigned repeat = 3;
    bool json = false;
};

void usage(std::ostream& out)
{
    out << "usage: bench_prezero_fault [--node N] [--pages N] [--repeat N] [--json]\n"
           "\n"
           "Times a VM faulting in N 2 MiB pages of a node when they are dirty and when they were\n"
           "pre-zeroed through zeroable_hugepages, and prints the ratio. Needs a kernel with the\n"
           "pre-zeroing ABI (the reference kernel: scripts/guest) and root.\n"
           "\n"
           "  --node N    the node (default 0)\n"
           "  --pages N   pages per round (default: the node's free 2 MiB pages, at most 64)\n"
           "  --repeat N  rounds; the best of each figure is kept (default 3)\n"
           "  --json      print one JSON object instead of text\n";
}

std::uint64_t faults_on_zeroed(const hugezero::hstate& h)
{
    std::ifstream stats("/sys/kernel/debug/hugetlb_prezero/stats");
    const std::string prefix = "node=" + std::to_string(h.node.value()) + " kb=" + std::to_string(h.size.kib()) + " ";
    for (std::string line; std::getline(stats, line);)
        if (line.rfind(prefix, 0) == 0) {
            const auto at = line.find("faults_on_zeroed=");
            if (at != std::string::npos)
                return std::stoull(line.substr(at + 17));
        }
    return 0;
}

// A mapping of @p pages pages of @p h bound to its node, faulted in: the seconds that took.
double fault_in(const hugezero::hstate& h, std::uint64_t pages)
{
    const std::uint64_t bytes = pages * h.size.bytes();
    const auto start = clock_type::now();
    void* memory = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | (21 << MAP_HUGE_SHIFT),
                          -1, 0);
    if (memory == MAP_FAILED)
        throw std::system_error(errno, std::system_category(), "mmap of " + std::to_string(pages) + " huge pages");
    std::vector<unsigned long> mask(h.node.value() / 64 + 1, 0);
    mask[h.node.value() / 64] |= 1UL << (h.node.value() % 64);
    constexpr int mpol_bind = 2;
    constexpr int madv_populate_write = 23;
    if (::syscall(SYS_mbind, memory, bytes, mpol_bind, mask.data(), mask.size() * 64 + 1, 0) != 0
        || ::madvise(memory, bytes, madv_populate_write) != 0) {
        const int error = errno;
        ::munmap(memory, bytes);
        throw std::system_error(error, std::system_category(), "binding and faulting in the mapping");
    }
    const double took = std::chrono::duration<double>(clock_type::now() - start).count();
    ::munmap(memory, bytes); // the pages go back, dirty
    return took;
}

arguments parse(int argc, char** argv)
{
    arguments a;
    const auto number = [&](int& i) -> std::uint64_t {
        if (i + 1 >= argc)
            throw std::invalid_argument(std::string(argv[i]) + " needs a value");
        const std::string_view text = argv[++i];
        std::uint64_t v = 0;
        for (const char c : text) {
            if (c < '0' || c > '9' || v > std::numeric_limits<std::uint64_t>::max() / 10)
                throw std::invalid_argument(std::string(argv[i - 1]) + ": expected a number, got " + std::string(text));
            v = v * 10 + static_cast<std::uint64_t>(c - '0');
        }
        if (text.empty())
            throw std::invalid_argument(std::string(argv[i - 1]) + ": expected a number");
        return v;
    };
    for (int i = 1; i < argc; ++i) {
        const std::string_view option = argv[i];
        if (option == "--node")
            a.node = static_cast<unsigned>(number(i));
        else if (option == "--pages")
            a.pages = number(i);
        else if (option == "--repeat")
            a.repeat = static_cast<unsigned>(std::max<std::uint64_t>(1, number(i)));
        else if (option == "--json")
            a.json = true;
        else if (option == "--help" || option == "-h") {
            usage(std::cout);
            std::exit(0);
        } else
            throw std::invalid_argument("unknown option " + std::string(option));
    }
    return a;
}

int run(const arguments& a)
{
    const auto m = hugezero::machine::open();
    const hugezero::hstate h{hugezero::node_id(a.node), 2_MiB};
    try {
        if (!m.supports_zeroing(h)) {
            std::cerr << "bench_prezero_fault: skipped: the kernel has no zeroable_hugepages for " << h
                      << " (run it in the reference kernel's guest: scripts/guest)\n";
            return 77;
        }
    } catch (const std::invalid_argument& e) {
        std::cerr << "bench_prezero_fault: skipped: " << e.what() << '\n';
        return 77;
    }
    const std::uint64_t pages = a.pages != 0 ? a.pages : std::min<std::uint64_t>(64, m.counters(h).free);
    if (pages == 0 || m.counters(h).free < pages) {
        std::cerr << "bench_prezero_fault: skipped: " << h << " has " << m.counters(h).free << " free pages, " << pages
                  << " needed\n";
        return 77;
    }
    double dirty = std::numeric_limits<double>::infinity();
    double zeroed = std::numeric_limits<double>::infinity();
    std::uint64_t found_zeroed = 0;
    for (unsigned round = 0; round < a.repeat; ++round) {
        (void)fault_in(h, m.counters(h).free); // every free page dirty
        dirty = std::min(dirty, fault_in(h, pages));
        const auto r = hugezero::zero_all(m, h);
        if (r.status != hugezero::zeroing_status::complete)
            throw std::runtime_error("pre-zeroing " + hugezero::to_string(h) + " failed: " + r.error_message);
        const std::uint64_t before = faults_on_zeroed(h);
        zeroed = std::min(zeroed, fault_in(h, pages));
        found_zeroed = faults_on_zeroed(h) - before;
    }
    const double ratio = dirty / zeroed;
    if (a.json) {
        std::cout << "{\"page_size_kb\":" << h.size.kib() << ",\"node\":" << a.node << ",\"pages\":" << pages
                  << ",\"dirty_fault_s\":" << dirty << ",\"prezeroed_fault_s\":" << zeroed << ",\"ratio\":" << ratio
                  << ",\"faults_on_zeroed\":" << found_zeroed << "}\n";
    } else {
        std::cout << h << ", " << pages << " pages, best of " << a.repeat << ":\n"
                  << "  dirty pages faulted in      " << dirty << " s\n"
                  << "  pre-zeroed pages faulted in " << zeroed << " s (" << found_zeroed << " faults found a zeroed page)\n"
                  << "  pre-zeroed faults are " << ratio << "x faster\n";
    }
    return found_zeroed == pages ? 0 : 1;
}

} // namespace

int main(int argc, char** argv)
{
    arguments a;
    try {
        a = parse(argc, argv);
    } catch (const std::invalid_argument& e) {
        std::cerr << "bench_prezero_fault: " << e.what() << "\n\n";
        usage(std::cerr);
        return 2;
    }
    try {
        return run(a);
    } catch (const std::exception& e) {
        std::cerr << "bench_prezero_fault: " << e.what() << '\n';
        return 1;
    }
}
