// vmm_lease: what a VMM that embeds hugezero's pool does on a stock kernel.
//
//   vmm_lease [--mib N | --gib N] [--page-size 2M|1G] [--node N] [--workers N] [--help]
//
// At start-up the VMM creates a pool whose reservoir holds one guest's memory, and goes on with
// its own initialisation while pinned workers allocate (so the kernel zeroes) the pages in the
// background. When the VM starts, the VMM leases the memory, maps it as guest RAM and builds its
// page tables: that is all the VM start waits for. The program prints each step's time, the
// pool's statistics, and the same start done cold (first touch by the kernel) for comparison.
//
// Exit status: 0 on success; 77 when the machine lacks the free huge pages (the message says
// how to reserve them); 2 for a bad command line; 1 for any other error.
#include <hugezero/hugezero.hpp>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <iomanip>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>

namespace {

constexpr int exit_usage = 2;
constexpr int exit_skip = 77;

void usage(std::ostream& out)
{
    out << "usage: vmm_lease [--mib N | --gib N] [--page-size 2M|1G] [--node N] [--workers N]\n"
           "\n"
           "Embeds a hugezero::pool the way a VMM would: fills a reservoir of pre-zeroed huge pages\n"
           "in the background, then starts a \"VM\": leases the memory as one fd, maps it as guest\n"
           "RAM, populates its page tables, and prints how long each step took, next to the same\n"
           "start done cold. Needs that many free huge pages (as root: echo N > /sys/kernel/mm/\n"
           "hugepages/hugepages-2048kB/nr_hugepages).\n"
           "\n"
           "  --mib N        guest memory in MiB (default 1024)\n"
           "  --gib N        guest memory in GiB\n"
           "  --page-size S  2M (default) or 1G\n"
           "  --node N       the NUMA node (default 0)\n"
           "  --workers N    refill workers (default 1; 0: one per CPU of the node)\n"
           "  --help         show this help\n";
}

struct arguments {
    std::uint64_t bytes = std::uint64_t{1} << 30;
    hugezero::page_size page = hugezero::page_2mib;
    unsigned node = 0;
    unsigned workers = 1;
};

std::uint64_t parse_number(std::string_view option, const char* text)
{
    if (text == nullptr)
        throw std::invalid_argument(std::string(option) + " needs a value");
    char* end = nullptr;
    errno = 0;
    const unsigned long long value = std::strtoull(text, &end, 10);
    if (end == text || *end != '\0' || errno != 0 || text[0] == '-')
        throw std::invalid_argument(std::string(option) + ": not a number: " + text);
    return value;
}

std::optional<arguments> parse(int argc, char** argv)
{
    arguments a;
    for (int i = 1; i < argc; ++i) {
        const std::string_view option = argv[i];
        const char* value = i + 1 < argc ? argv[i + 1] : nullptr;
        if (option == "--help" || option == "-h") {
            usage(std::cout);
            return std::nullopt;
        }
        if (option == "--mib")
            a.bytes = parse_number(option, value) << 20;
        else if (option == "--gib")
            a.bytes = parse_number(option, value) << 30;
        else if (option == "--page-size")
            a.page = value != nullptr ? hugezero::page_size::parse(value)
                                      : throw std::invalid_argument("--page-size needs a value");
        else if (option == "--node")
            a.node = static_cast<unsigned>(parse_number(option, value));
        else if (option == "--workers")
            a.workers = static_cast<unsigned>(parse_number(option, value));
        else
            throw std::invalid_argument("unknown option " + std::string(option));
        ++i;
    }
    if (a.bytes == 0 || a.bytes % a.page.bytes() != 0)
        throw std::invalid_argument("the guest memory must be a positive multiple of the page size ("
                                    + hugezero::to_string(a.page) + ")");
    return a;
}

double ms(std::chrono::steady_clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

int run(const arguments& a)
{
    using clock = std::chrono::steady_clock;
    const hugezero::machine machine = hugezero::machine::open();
    const hugezero::hstate which{hugezero::node_id(a.node), a.page};
    (void)machine.topology().info(which); // names the node and size if the machine lacks them
    const std::uint64_t pages = a.bytes / a.page.bytes();
    const std::uint64_t free_pages = machine.counters(which).free;
    if (free_pages < pages) {
        std::cerr << "vmm_lease: skipped: " << which << " has " << free_pages << " free huge pages, the guest needs "
                  << pages << ". As root: echo " << pages << " > /sys/kernel/mm/hugepages/hugepages-" << a.page.kib()
                  << "kB/nr_hugepages (and write the old value back afterwards)\n";
        return exit_skip;
    }

    // 1. VMM start-up: the pool fills the reservoir in the background.
    hugezero::pool_options options;
    options.reservoirs.push_back({which, a.bytes, 0, 0});
    options.workers_per_node = a.workers;
    hugezero::pool pool(machine, options);
    const auto fill_start = clock::now();
    pool.start();
    for (const auto& f : pool.setting_failures())
        std::cerr << "vmm_lease: warning: " << f << '\n';
    std::cout << "VMM starting; the pool fills a reservoir of " << (a.bytes >> 20) << " MiB on " << which
              << " in the background\n";
    while (!pool.wait_filled(std::chrono::milliseconds(100))) { // the VMM's own start-up work would go here
        const auto s = pool.statistics(which);
        std::cout << "  reservoir: " << s.ready_pages + s.filling_pages << '/' << s.target_pages << " pages (" << s.state
                  << ")\n";
        if (s.state == hugezero::reservoir_state::out_of_pages || s.state == hugezero::reservoir_state::failing) {
            std::cerr << "vmm_lease: the reservoir cannot be filled: " << s << '\n';
            return exit_skip;
        }
    }
    const auto fill_time = clock::now() - fill_start;
    std::cout << "  reservoir full after " << std::fixed << std::setprecision(1) << ms(fill_time) << " ms ("
              << std::setprecision(2) << static_cast<double>(a.bytes) / std::chrono::duration<double>(fill_time).count() / 1e9
              << " GB/s, zeroed by the workers)\n";

    // 2. The VM starts: lease, map, populate. This is what the guest waits for.
    const auto t0 = clock::now();
    hugezero::acquire_result got = pool.acquire(which, a.bytes);
    const auto t1 = clock::now();
    if (!got) {
        std::cerr << "vmm_lease: " << got.message << '\n';
        return got.error.value() == ENOSPC ? exit_skip : 1;
    }
    hugezero::mapping guest_ram = got.lease.map();
    const auto t2 = clock::now();
    // Pages that came ready only need page tables: this thread does that fastest. Cold pages
    // are allocated and zeroed here: then QEMU's thread rule, pinned to the node, pays off.
    hugezero::prefault_options populate_options;
    if (got.lease.cold_pages() == 0)
        populate_options.threads = 1;
    else
        populate_options = hugezero::prefault_options::on_node(machine, which.node);
    const hugezero::prefault_result populated = hugezero::populate(guest_ram, populate_options);
    const auto t3 = clock::now();
    if (!populated) {
        std::cerr << "vmm_lease: " << populated << '\n';
        return 1;
    }
    std::cout << std::setprecision(3) << "VM start on a lease (" << got.lease << "):\n"
              << "  acquire   " << ms(t1 - t0) << " ms\n"
              << "  mmap      " << ms(t2 - t1) << " ms\n"
              << "  populate  " << ms(t3 - t2) << " ms (" << populated.threads << (populated.threads == 1 ? " thread" : " threads") << ")\n"
              << "  total     " << ms(t3 - t0) << " ms\n";
    std::cout << "pool: " << pool.statistics(which) << '\n';

    // 3. The same start without a pool, for comparison: the kernel zeroes at first touch.
    std::cout << "the same start cold (mmap MAP_HUGETLB + populate, the kernel zeroes each page): " << std::flush;
    pool.stop();
    pool.set_target(which, 0); // give the reservoir back so the cold start has pages
    guest_ram.close();         // the "VM" ends: its memory goes back to the kernel
    got.lease.close();
    {
        const auto c0 = clock::now();
        const hugezero::mapping cold = hugezero::mapping::map_anonymous(a.bytes, a.page);
        const auto result = hugezero::populate(cold, hugezero::prefault_options::on_node(machine, which.node));
        const auto c1 = clock::now();
        if (!result)
            std::cout << result << '\n';
        else
            std::cout << ms(c1 - c0) << " ms (" << result.threads << " threads), " << std::setprecision(0)
                      << ms(c1 - c0) / ms(t3 - t0) << "x the leased start\n";
    }
    return 0;
}

} // namespace

int main(int argc, char** argv)
{
    std::optional<arguments> a;
    try {
        a = parse(argc, argv);
    } catch (const std::invalid_argument& e) {
        std::cerr << "vmm_lease: " << e.what() << "\n\n";
        usage(std::cerr);
        return exit_usage;
    }
    if (!a)
        return 0;
    try {
        return run(*a);
    } catch (const std::exception& e) {
        std::cerr << "vmm_lease: " << e.what() << '\n';
        return 1;
    }
}
