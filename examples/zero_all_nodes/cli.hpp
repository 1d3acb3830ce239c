// Command-line parsing for zero_all_nodes, kept apart from main() so tests and fuzzers can use
// it directly. Every error is a usage_error whose message names the argument and its value.
#ifndef HUGEZERO_EXAMPLES_ZERO_ALL_NODES_CLI_HPP
#define HUGEZERO_EXAMPLES_ZERO_ALL_NODES_CLI_HPP

#include <chrono>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <charconv>

#include <hugezero/node_id.hpp>
#include <hugezero/page_size.hpp>
#include <hugezero/sim/builder.hpp>

#include "common/units.hpp"

namespace zero_all_nodes {

/// A bad command line: the message names the argument; the program exits 2.
class usage_error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

inline constexpr const char* usage_text =
    R"(Usage: zero_all_nodes [options]

Pre-zero every zeroable huge page of the selected nodes and page sizes through the kernel's
zeroable_hugepages interface, with workers pinned to each node's CPUs.

Source of the machine (default: the real sysfs at $HUGEZERO_SYSFS_ROOT, or /sys):
  --sysfs-root DIR           use DIR as the directory standing for /sys
  --simulate                 use an embedded simulated kernel that has zeroable_hugepages:
                             2 nodes, each with 256 dirty 2 MiB pages and 4 dirty 1 GiB pages,
                             costing 150us per 2 MiB page and 70ms per 1 GiB page
  --sim-nodes N              simulated nodes (1-64; default 2)
  --sim-pages SIZE=COUNT     simulated dirty pages per node of SIZE (repeatable; COUNT 0
                             removes the size)
  --sim-page-cost SIZE=DURATION
                             zeroing time of one simulated page of SIZE (repeatable)

Selection and workers:
  --node LIST                only these nodes, as a range list (e.g. 0,2-3)
  --page-size SIZE           only this page size
  --threads-per-node N       workers per node (1-1024; default: one per CPU of the node)

Output:
  --dry-run                  show what would be zeroed and zero nothing
  --json                     print one JSON object on stdout at the end
  --quiet                    no progress on stderr (shown only when stderr is a terminal)
  --help                     this text
  --version                  print the version and exit

SIZE is 2M, 2048kB, 1G, 1048576kB (binary units); DURATION is 150us, 70ms, 1s (also ns, min).

Exit status: 0 complete (or dry run); 1 an I/O error while zeroing; 2 bad usage, an unreadable
or malformed sysfs, or a kernel without zeroable_hugepages; 130 after SIGINT; 143 after SIGTERM.
SIGINT and SIGTERM interrupt the zeroing at once; the summary is still printed.
)";

/// What the command line asks for.
struct options {
    bool simulate = false;
    unsigned sim_nodes = 2;
    std::map<hugezero::page_size, std::uint64_t> sim_pages{{hugezero::page_2mib, 256}, {hugezero::page_1gib, 4}};
    std::map<hugezero::page_size, std::chrono::nanoseconds> sim_page_costs{
        {hugezero::page_2mib, std::chrono::microseconds(150)}, {hugezero::page_1gib, std::chrono::milliseconds(70)}};
    bool sim_options_given = false;
    std::optional<std::string> sysfs_root;
    std::optional<std::vector<hugezero::node_id>> nodes;
    std::optional<hugezero::page_size> page_size;
    std::optional<unsigned> threads_per_node;
    bool dry_run = false;
    bool json = false;
    bool quiet = false;
    bool help = false;
    bool version = false;
};

using hugezero_tools::parse_duration; // "150us", "70ms", "1s"
using hugezero_tools::parse_number;   // digits only, no overflow

/// Splits `SIZE=VALUE` into its page size and value text.
/// @throws std::invalid_argument describing what is wrong.
inline std::pair<hugezero::page_size, std::string_view> parse_size_assignment(std::string_view text)
{
    const std::size_t equals = text.find('=');
    if (equals == std::string_view::npos)
        throw std::invalid_argument("expected SIZE=VALUE, e.g. 2M=512");
    return {hugezero::page_size::parse(text.substr(0, equals)), text.substr(equals + 1)};
}

/// Parses an unsigned number in [min, max].
inline unsigned parse_count(std::string_view text, unsigned min, unsigned max)
{
    const auto value = parse_number(text);
    if (!value)
        throw std::invalid_argument("expected a decimal number");
    if (*value < min || *value > max)
        throw std::invalid_argument("must be between " + std::to_string(min) + " and " + std::to_string(max));
    return static_cast<unsigned>(*value);
}

/// The simulated machine the --simulate and --sim-* options describe (not yet built, so a caller
/// can add switches such as the kernel's signal behaviour).
inline hugezero::sim::machine_builder simulated_machine(const options& o)
{
    hugezero::sim::machine_builder builder;
    builder.nodes(o.sim_nodes);
    for (const auto& [size, count] : o.sim_pages)
        builder.pages(size, count);
    for (const auto& [size, cost] : o.sim_page_costs)
        builder.page_cost(size, cost);
    return builder;
}

/// Parses the command line (without the program name).
/// @throws usage_error naming the argument.
inline options parse_arguments(const std::vector<std::string>& args)
{
    options o;
    const auto fail = [](const std::string& option, const std::string& value, const std::string& why) {
        return usage_error("invalid " + option + " value \"" + value + "\": " + why);
    };
    for (std::size_t i = 0; i < args.size(); ++i) {
        const std::string& arg = args[i];
        // --option=value and --option value are both accepted.
        std::string name = arg;
        std::optional<std::string> inline_value;
        if (const auto eq = arg.find('='); arg.rfind("--", 0) == 0 && eq != std::string::npos) {
            name = arg.substr(0, eq);
            inline_value = arg.substr(eq + 1);
        }
        const auto value = [&]() -> std::string {
            if (inline_value)
                return *inline_value;
            if (i + 1 >= args.size())
                throw usage_error("option " + name + " needs a value");
            return args[++i];
        };
        const auto flag = [&] {
            if (inline_value)
                throw usage_error("option " + name + " takes no value");
        };
        if (name == "--help" || name == "-h") {
            flag();
            o.help = true;
        } else if (name == "--version") {
            flag();
            o.version = true;
        } else if (name == "--simulate") {
            flag();
            o.simulate = true;
        } else if (name == "--dry-run") {
            flag();
            o.dry_run = true;
        } else if (name == "--json") {
            flag();
            o.json = true;
        } else if (name == "--quiet") {
            flag();
            o.quiet = true;
        } else if (name == "--sim-nodes") {
            const std::string v = value();
            try {
                o.sim_nodes = parse_count(v, 1, 64);
            } catch (const std::invalid_argument& e) {
                throw fail(name, v, e.what());
            }
            o.sim_options_given = true;
        } else if (name == "--sim-pages") {
            const std::string v = value();
            try {
                const auto [size, count] = parse_size_assignment(v);
                const auto pages = parse_number(count);
                if (!pages || *pages > (std::uint64_t{1} << 32))
                    throw std::invalid_argument("COUNT must be a number of pages up to 4294967296");
                if (*pages == 0)
                    o.sim_pages.erase(size);
                else
                    o.sim_pages[size] = *pages;
            } catch (const std::invalid_argument& e) {
                throw fail(name, v, e.what());
            }
            o.sim_options_given = true;
        } else if (name == "--sim-page-cost") {
            const std::string v = value();
            try {
                const auto [size, duration] = parse_size_assignment(v);
                o.sim_page_costs[size] = parse_duration(duration);
            } catch (const std::invalid_argument& e) {
                throw fail(name, v, e.what());
            }
            o.sim_options_given = true;
        } else if (name == "--sysfs-root") {
            o.sysfs_root = value();
            if (o.sysfs_root->empty())
                throw fail(name, "", "the directory must not be empty");
        } else if (name == "--node") {
            const std::string v = value();
            try {
                o.nodes = hugezero::parse_node_list(v);
            } catch (const std::invalid_argument& e) {
                const std::string why = e.what();
                throw fail(name, v, why.substr(why.find("\": ") + 3));
            }
        } else if (name == "--page-size") {
            const std::string v = value();
            try {
                o.page_size = hugezero::page_size::parse(v);
            } catch (const std::invalid_argument& e) {
                throw fail(name, v, e.what());
            }
        } else if (name == "--threads-per-node") {
            const std::string v = value();
            try {
                o.threads_per_node = parse_count(v, 1, 1024);
            } catch (const std::invalid_argument& e) {
                throw fail(name, v, e.what());
            }
        } else {
            throw usage_error("unknown argument \"" + arg + "\" (see --help)");
        }
    }
    if (o.sim_options_given && !o.simulate)
        throw usage_error("--sim-nodes, --sim-pages and --sim-page-cost need --simulate");
    if (o.simulate && o.sysfs_root)
        throw usage_error("--simulate and --sysfs-root cannot be combined: choose one source");
    return o;
}

} // namespace zero_all_nodes

#endif
