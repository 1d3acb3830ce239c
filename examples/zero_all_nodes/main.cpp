// zero_all_nodes: pre-zero every zeroable huge page of the selected hstates, with workers pinned
// to each node's CPUs, through the kernel's zeroable_hugepages interface (or the simulated
// kernel). See --help, and the README for the contract (JSON output, exit codes, signals).
// cli.hpp parses the command line, run.hpp runs the service, report.hpp prints what happened.
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <hugezero/hugezero.hpp>

#include "cli.hpp"
#include "report.hpp"
#include "run.hpp"

namespace {

constexpr int exit_complete = 0;
constexpr int exit_io_error = 1;
constexpr int exit_usage = 2;

hugezero::machine open_machine(const zero_all_nodes::options& o)
{
    if (!o.simulate)
        return o.sysfs_root ? hugezero::machine::open(*o.sysfs_root) : hugezero::machine::open();
    return hugezero::machine(std::make_shared<hugezero::sim::backend>(zero_all_nodes::simulated_machine(o).build()));
}

// The hstates selected by --node and --page-size.
std::vector<hugezero::hstate> select_hstates(const hugezero::machine& m, const zero_all_nodes::options& o)
{
    std::vector<hugezero::node_id> nodes;
    if (o.nodes)
        for (const hugezero::node_id n : *o.nodes)
            nodes.push_back(m.topology().node(n).id); // throws for an unknown node
    else
        for (const auto& n : m.topology().nodes())
            nodes.push_back(n.id);
    std::vector<hugezero::hstate> selected;
    for (const auto node : nodes)
        for (const auto& h : m.topology().node(node).hstates)
            if (!o.page_size || h.id.size == *o.page_size)
                selected.push_back(h.id);
    if (selected.empty())
        throw std::invalid_argument("no node and page size match the selection"
                                    + std::string(o.page_size ? " (--page-size " + hugezero::to_string(*o.page_size) + ")" : ""));
    return selected;
}

int dry_run(const hugezero::machine& m, const std::vector<hugezero::hstate>& selected, const zero_all_nodes::options& o)
{
    zero_all_nodes::dry_run_report report;
    for (const auto& h : selected)
        report[h.node].emplace_back(h, m.counters(h));
    if (o.json)
        std::cout << zero_all_nodes::to_json(m, report).dump() << std::endl;
    else
        zero_all_nodes::print_text(std::cout, m, report);
    return exit_complete;
}

// The selected hstates the kernel can pre-zero; says which it skips, or what to do instead.
std::vector<hugezero::hstate> zeroable_ones(const hugezero::machine& m, const std::vector<hugezero::hstate>& selected,
                                            const zero_all_nodes::options& o)
{
    std::vector<hugezero::hstate> supported;
    std::copy_if(selected.begin(), selected.end(), std::back_inserter(supported),
                 [&](const hugezero::hstate& h) { return m.supports_zeroing(h); });
    if (supported.empty())
        std::cerr << "zero_all_nodes: this kernel lacks the zeroable_hugepages pre-zeroing interface for every "
                     "selected node and page size (it is a proposed kernel ABI that stock kernels do not have).\n"
                     "  Try the simulated kernel: zero_all_nodes --simulate\n"
                     "  On a stock kernel, pre-zero with hugezero::pool: memory allocated ahead of time, hence "
                     "zeroed, leased to VMs as fds (see the README, \"On a stock kernel\").\n";
    else if (!o.quiet)
        for (const auto& h : selected)
            if (!m.supports_zeroing(h))
                std::cerr << "zero_all_nodes: skipping " << h << ": the kernel has no zeroable_hugepages for it\n";
    return supported;
}

int zero(const hugezero::machine& m, const std::vector<hugezero::hstate>& selected, const zero_all_nodes::options& o, int signals)
{
    const auto supported = zeroable_ones(m, selected, o);
    if (supported.empty())
        return exit_usage;
    zero_all_nodes::run_settings settings;
    settings.workers_per_node = o.threads_per_node.value_or(0);
    settings.show_progress = !o.quiet && ::isatty(STDERR_FILENO) != 0;
    const zero_all_nodes::run_report report = zero_all_nodes::run(m, supported, settings, signals);
    if (!report.error.empty())
        std::cerr << "zero_all_nodes: " << report.error << '\n';
    else if (!o.quiet)
        for (const auto& h : report.hstates)
            if (h.errors > 0)
                std::cerr << "zero_all_nodes: warning: " << h.which << ": " << h.errors
                          << (h.errors == 1 ? " error" : " errors") << ", retried (last: " << h.last_error << ")\n";
    if (o.json)
        std::cout << zero_all_nodes::to_json(report).dump() << std::endl;
    else
        zero_all_nodes::print_text(std::cout, report);
    return report.exit_code;
}

} // namespace

int main(int argc, char** argv)
{
    zero_all_nodes::options o;
    try {
        o = zero_all_nodes::parse_arguments(std::vector<std::string>(argv + 1, argv + argc));
    } catch (const zero_all_nodes::usage_error& e) {
        std::cerr << "zero_all_nodes: " << e.what() << "\nTry zero_all_nodes --help.\n";
        return exit_usage;
    }
    if (o.help) {
        std::cout << zero_all_nodes::usage_text;
        return exit_complete;
    }
    if (o.version) {
        std::cout << "zero_all_nodes " << hugezero::version_string << '\n';
        return exit_complete;
    }
    // SIGINT and SIGTERM are blocked before any thread starts (threads inherit the mask) and
    // read from a signalfd by the main loop, which then stops the workers in an orderly way.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    if (::pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr) != 0) {
        std::perror("zero_all_nodes: pthread_sigmask");
        return exit_io_error;
    }
    const int signals = ::signalfd(-1, &stop_signals, SFD_CLOEXEC | SFD_NONBLOCK);
    if (signals < 0) {
        std::perror("zero_all_nodes: signalfd");
        return exit_io_error;
    }
    try {
        const hugezero::machine m = open_machine(o);
        const auto selected = select_hstates(m, o);
        if (!o.dry_run)
            return zero(m, selected, o, signals); // a signal that came during discovery is still pending: it cancels
        const int code = dry_run(m, selected, o);
        // A signal during discovery or the dry run is pending on the signalfd: honour it.
        const int signo = zero_all_nodes::take_signal(signals);
        return signo != 0 ? 128 + signo : code;
    } catch (const hugezero::zeroing_unsupported& e) {
        std::cerr << "zero_all_nodes: " << e.what() << "\n  Try zero_all_nodes --simulate.\n";
    } catch (const hugezero::parse_error& e) {
        std::cerr << "zero_all_nodes: " << e.what() << '\n';
    } catch (const std::system_error& e) { // an unreadable sysfs
        std::cerr << "zero_all_nodes: " << e.what() << '\n';
    } catch (const std::invalid_argument& e) {
        std::cerr << "zero_all_nodes: " << e.what() << '\n';
    } catch (const std::exception& e) { // not expected: still a message and an exit code, never terminate()
        std::cerr << "zero_all_nodes: unexpected error: " << e.what() << '\n';
        return exit_io_error;
    }
    return exit_usage;
}
