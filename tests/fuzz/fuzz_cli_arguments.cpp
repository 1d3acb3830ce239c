// zero_all_nodes::parse_arguments over a whole command line (arguments separated by NUL bytes):
// the only failure is a usage_error (the program then exits 2 with its message), and what it
// accepts respects every documented bound.
#include <algorithm>
#include <vector>

#include "fuzz.hpp"
#include "zero_all_nodes/cli.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    const std::string_view input = hugezero::fuzz::text(data, size);
    std::vector<std::string> args;
    for (std::size_t start = 0; start <= input.size();) {
        const std::size_t end = std::min(input.find('\0', start), input.size());
        args.emplace_back(input.substr(start, end - start));
        start = end + 1;
    }
    const std::string shown = hugezero::detail::quote_content(input);
    zero_all_nodes::options o;
    try {
        o = zero_all_nodes::parse_arguments(args);
    } catch (const zero_all_nodes::usage_error& e) {
        HUGEZERO_FUZZ_CHECK(*e.what() != '\0', shown);
        return 0;
    } // anything else escapes: libFuzzer reports the uncaught exception as a crash
    HUGEZERO_FUZZ_CHECK(o.sim_nodes >= 1 && o.sim_nodes <= 64, shown);
    HUGEZERO_FUZZ_CHECK(!o.threads_per_node || (*o.threads_per_node >= 1 && *o.threads_per_node <= 1024), shown);
    HUGEZERO_FUZZ_CHECK(!(o.simulate && o.sysfs_root), shown);
    HUGEZERO_FUZZ_CHECK(!o.sim_options_given || o.simulate, shown);
    HUGEZERO_FUZZ_CHECK(!o.sysfs_root || !o.sysfs_root->empty(), shown);
    if (o.nodes) {
        HUGEZERO_FUZZ_CHECK(!o.nodes->empty() && std::is_sorted(o.nodes->begin(), o.nodes->end()), shown);
        HUGEZERO_FUZZ_CHECK(std::adjacent_find(o.nodes->begin(), o.nodes->end()) == o.nodes->end(), shown);
    }
    for (const auto& [page, count] : o.sim_pages)
        HUGEZERO_FUZZ_CHECK(count >= 1 && count <= (std::uint64_t{1} << 32), shown);
    for (const auto& [page, cost] : o.sim_page_costs)
        HUGEZERO_FUZZ_CHECK(cost.count() >= 0, shown);
    return 0;
}
