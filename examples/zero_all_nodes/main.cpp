// zero_all_nodes: pre-zero every zeroable huge page of the selected hstates, with workers pinned
// to each node's CPUs, through the kernel's zeroable_hugepages interface (or the simulated
// kernel). See --help, and the README for the contract (JSON output, exit codes, signals).
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <iomanip>
#include <iostream>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <hugezero/hugezero.hpp>

#include "cli.hpp"

namespace {

using clock_type = std::chrono::steady_clock;

constexpr int exit_complete = 0;
constexpr int exit_io_error = 1;
constexpr int exit_usage = 2;

std::string json_string(std::string_view text)
{
    std::string out = "\"";
    for (const char c : text) {
        if (c == '"' || c == '\\') {
            out += '\\';
            out += c;
        } else if (static_cast<unsigned char>(c) < 0x20) {
            char buffer[8];
            std::snprintf(buffer, sizeof buffer, "\\u%04x", static_cast<unsigned>(static_cast<unsigned char>(c)));
            out += buffer;
        } else {
            out += c;
        }
    }
    return out + "\"";
}

hugezero::machine open_machine(const zero_all_nodes::options& o)
{
    if (!o.simulate)
        return o.sysfs_root ? hugezero::machine::open(*o.sysfs_root) : hugezero::machine::open();
    return hugezero::machine(std::make_shared<hugezero::sim::backend>(zero_all_nodes::simulated_machine(o).build()));
}

// The SIGINT or SIGTERM pending on the (non-blocking) signalfd @p signals, taking it; 0 if none.
int take_signal(int signals)
{
    signalfd_siginfo info{};
    return ::read(signals, &info, sizeof info) == sizeof info ? static_cast<int>(info.ssi_signo) : 0;
}

// The hstates selected by --node and --page-size.
std::vector<hugezero::hstate> select_hstates(const hugezero::machine& m, const zero_all_nodes::options& o)
{
    std::vector<hugezero::hstate> selected;
    std::vector<hugezero::node_id> nodes;
    if (o.nodes)
        for (const unsigned n : *o.nodes)
            nodes.push_back(m.topology().node(hugezero::node_id(n)).id); // throws for an unknown node
    else
        for (const auto& n : m.topology().nodes())
            nodes.push_back(n.id);
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
    std::map<hugezero::node_id, std::vector<std::pair<hugezero::hstate, hugezero::hstate_counters>>> by_node;
    for (const auto& h : selected)
        by_node[h.node].emplace_back(h, m.counters(h));
    if (o.json) {
        std::ostringstream out;
        out << R"({"status":"dry-run","nodes":[)";
        const char* node_sep = "";
        for (const auto& [node, hstates] : by_node) {
            out << node_sep << R"({"node":)" << node.value() << R"(,"cpus":)"
                << json_string(hugezero::to_string(m.topology().node(node).cpus)) << R"(,"hstates":[)";
            const char* sep = "";
            for (const auto& [h, c] : hstates) {
                out << sep << R"({"page_size_kb":)" << h.size.kib() << R"(,"nr":)" << c.nr << R"(,"free":)" << c.free
                    << R"(,"surplus":)" << c.surplus << R"(,"zeroable":)";
                if (c.zeroable)
                    out << *c.zeroable;
                else
                    out << "null";
                out << '}';
                sep = ",";
            }
            out << "]}";
            node_sep = ",";
        }
        out << "]}";
        std::cout << out.str() << std::endl;
        return exit_complete;
    }
    std::cout << "dry run: nothing is zeroed\n";
    for (const auto& [node, hstates] : by_node) {
        std::cout << node << " cpus " << m.topology().node(node).cpus << '\n';
        for (const auto& [h, c] : hstates)
            std::cout << "  " << h << ' ' << c << (c.zeroable ? "" : " (no zeroable_hugepages: cannot pre-zero)") << '\n';
    }
    return exit_complete;
}

// Progress on stderr: one line per node, redrawn in place.
class progress_display {
public:
    explicit progress_display(bool enabled) : enabled_(enabled) {}

    void draw(const hugezero::prezero_service& service, double seconds, bool final)
    {
        if (!enabled_)
            return;
        struct node_progress {
            std::uint64_t pages_done = 0;
            std::uint64_t pages_left = 0;
            std::uint64_t bytes_done = 0;
            std::uint64_t bytes_left = 0;
        };
        std::map<hugezero::node_id, node_progress> nodes;
        for (const auto& s : service.statistics()) {
            auto& n = nodes[s.which.node];
            n.pages_done += s.pages_zeroed;
            n.pages_left += s.zeroable;
            n.bytes_done += s.bytes_zeroed();
            n.bytes_left += s.zeroable * s.which.size.bytes();
        }
        std::ostringstream out;
        if (lines_ > 0)
            out << "\x1b[" << lines_ << 'A';
        for (const auto& [node, n] : nodes) {
            const double gib = 1024.0 * 1024.0 * 1024.0;
            const double rate = seconds > 0 ? static_cast<double>(n.bytes_done) / seconds : 0.0;
            out << "\x1b[2K" << node << ": " << n.pages_done << " pages (" << std::fixed << std::setprecision(2)
                << static_cast<double>(n.bytes_done) / gib << " GiB) zeroed, " << rate / 1e9 << " GB/s";
            if (!final) {
                out << ", " << n.pages_left << " pages (" << static_cast<double>(n.bytes_left) / gib << " GiB) to go, ETA ";
                if (rate > 0)
                    out << static_cast<double>(n.bytes_left) / rate << " s";
                else
                    out << '-';
            }
            out << '\n';
        }
        lines_ = nodes.size();
        std::cerr << out.str() << std::flush;
    }

private:
    bool enabled_;
    std::size_t lines_ = 0;
};

struct hstate_summary {
    hugezero::hstate which;
    std::uint64_t zeroable_before = 0;
    std::uint64_t zeroed = 0;
    std::uint64_t zeroable_after = 0;
};

int zero(const hugezero::machine& m, std::vector<hugezero::hstate> selected, const zero_all_nodes::options& o, int signals)
{
    std::vector<hugezero::hstate> supported;
    std::copy_if(selected.begin(), selected.end(), std::back_inserter(supported),
                 [&](const hugezero::hstate& h) { return m.supports_zeroing(h); });
    if (supported.empty()) {
        std::cerr << "zero_all_nodes: this kernel lacks the zeroable_hugepages pre-zeroing interface for every "
                     "selected node and page size (it is a proposed kernel ABI that stock kernels do not have).\n"
                     "  Try the simulated kernel: zero_all_nodes --simulate\n"
                     "  On a stock kernel, pre-zero with hugezero::pool: memory allocated ahead of time, hence "
                     "zeroed, leased to VMs as fds (see the README, \"On a stock kernel\").\n";
        return exit_usage;
    }
    if (!o.quiet)
        for (const auto& h : selected)
            if (!m.supports_zeroing(h))
                std::cerr << "zero_all_nodes: skipping " << h << ": the kernel has no zeroable_hugepages for it\n";
    std::vector<hstate_summary> summary;
    for (const auto& h : supported)
        summary.push_back({h, m.zeroable(h), 0, 0});

    hugezero::service_options so;
    so.hstates = supported;
    so.workers_per_node = o.threads_per_node.value_or(0); // 0: one per CPU of the node
    hugezero::prezero_service service(m, so);
    const auto start = clock_type::now();
    service.start();
    if (!o.quiet)
        for (const auto& f : service.setting_failures())
            std::cerr << "zero_all_nodes: warning: " << f << '\n';

    progress_display progress(!o.quiet && ::isatty(STDERR_FILENO) != 0);
    std::string status = "complete";
    int exit_code = exit_complete;
    std::string error;
    progress.draw(service, 0.0, false);
    auto last_draw = clock_type::now();
    for (;;) {
        pollfd p{signals, POLLIN, 0};
        if (::poll(&p, 1, 50) > 0) {
            if (const int signo = take_signal(signals); signo != 0) {
                service.stop(); // interrupts every write in flight
                status = "cancelled";
                exit_code = 128 + signo;
                break;
            }
        }
        if (service.wait_drained(std::chrono::nanoseconds::zero()))
            break;
        for (const auto& s : service.statistics())
            if (s.errors > 0) {
                status = "error";
                exit_code = exit_io_error;
                error = hugezero::to_string(s.which) + ": " + s.last_error.message();
            }
        if (exit_code != exit_complete)
            break;
        if (clock_type::now() - last_draw > std::chrono::milliseconds(100)) {
            progress.draw(service, std::chrono::duration<double>(clock_type::now() - start).count(), false);
            last_draw = clock_type::now();
        }
    }
    service.stop();
    const double seconds = std::chrono::duration<double>(clock_type::now() - start).count();
    progress.draw(service, seconds, true);

    std::uint64_t pages = 0;
    std::uint64_t bytes = 0;
    for (auto& s : summary) {
        const auto stats = service.statistics(s.which);
        s.zeroed = stats.pages_zeroed;
        pages += stats.pages_zeroed;
        bytes += stats.bytes_zeroed();
        try {
            s.zeroable_after = m.zeroable(s.which);
        } catch (const std::exception& e) {
            status = "error";
            exit_code = exit_io_error;
            error = e.what();
        }
    }
    if (!error.empty())
        std::cerr << "zero_all_nodes: " << error << '\n';
    if (o.json) {
        std::ostringstream out;
        out << R"({"status":")" << status << R"(","pages_zeroed":)" << pages << R"(,"bytes_zeroed":)" << bytes
            << R"(,"seconds":)" << std::fixed << std::setprecision(6) << seconds << R"(,"hstates":[)";
        const char* sep = "";
        for (const auto& s : summary) {
            out << sep << R"({"node":)" << s.which.node.value() << R"(,"page_size_kb":)" << s.which.size.kib()
                << R"(,"zeroable_before":)" << s.zeroable_before << R"(,"zeroed":)" << s.zeroed
                << R"(,"zeroable_after":)" << s.zeroable_after << '}';
            sep = ",";
        }
        out << ']';
        if (!error.empty())
            out << R"(,"error":)" << json_string(error);
        out << '}';
        std::cout << out.str() << std::endl;
    } else {
        for (const auto& s : summary)
            std::cout << s.which << ": zeroed " << s.zeroed << " of " << s.zeroable_before << " zeroable pages, "
                      << s.zeroable_after << " zeroable now\n";
        std::cout << status << ": " << pages << " pages (" << std::fixed << std::setprecision(2)
                  << static_cast<double>(bytes) / (1024.0 * 1024.0 * 1024.0) << " GiB) in " << std::setprecision(3)
                  << seconds << " s";
        if (seconds > 0 && bytes > 0)
            std::cout << " (" << std::setprecision(2) << static_cast<double>(bytes) / seconds / 1e9 << " GB/s)";
        std::cout << '\n';
    }
    return exit_code;
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
        const int signo = take_signal(signals);
        return signo != 0 ? 128 + signo : code;
    } catch (const hugezero::zeroing_unsupported& e) {
        std::cerr << "zero_all_nodes: " << e.what() << "\n  Try zero_all_nodes --simulate.\n";
    } catch (const hugezero::parse_error& e) {
        std::cerr << "zero_all_nodes: " << e.what() << '\n';
    } catch (const std::system_error& e) {
        std::cerr << "zero_all_nodes: " << e.what() << '\n';
    } catch (const std::invalid_argument& e) {
        std::cerr << "zero_all_nodes: " << e.what() << '\n';
    } catch (const std::exception& e) { // not expected: still a message and an exit code, never terminate()
        std::cerr << "zero_all_nodes: unexpected error: " << e.what() << '\n';
        return exit_io_error;
    }
    return exit_usage;
}
