// detail::parse_range_list, the kernel's "%*pbl" lists (node masks, cpulists). The first byte
// chooses whether the trailing newline of a sysfs file is required. An accepted list is sorted,
// merged and within bounds, and prints (cpu_set) to a list that parses to the same set.
#include <hugezero/cpu_set.hpp>
#include <hugezero/detail/parse.hpp>

#include "fuzz.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    if (size == 0)
        return 0;
    const bool require_newline = (data[0] & 1) != 0;
    const std::string_view input = hugezero::fuzz::text(data + 1, size - 1);
    const auto parsed = hugezero::detail::parse_range_list(input, require_newline);
    const std::string shown = hugezero::detail::quote_content(input);
    if (!parsed) {
        HUGEZERO_FUZZ_CHECK(!parsed.reason().empty(), shown);
        return 0;
    }
    const auto& ranges = parsed.value();
    for (std::size_t i = 0; i < ranges.size(); ++i) {
        HUGEZERO_FUZZ_CHECK(ranges[i].first <= ranges[i].last, shown);
        HUGEZERO_FUZZ_CHECK(ranges[i].last <= hugezero::detail::max_range_list_id, shown);
        if (i > 0) // sorted, and merged: neither overlapping nor touching
            HUGEZERO_FUZZ_CHECK(ranges[i - 1].last + 1 < ranges[i].first, shown);
    }
    const auto set = hugezero::cpu_set::from_ranges(ranges);
    HUGEZERO_FUZZ_CHECK(set.ranges() == ranges, shown);
    const std::string printed = hugezero::to_string(set);
    const auto again = hugezero::detail::parse_range_list(printed + "\n", true);
    HUGEZERO_FUZZ_CHECK(again && again.value() == ranges, shown + " printed as " + printed);
    HUGEZERO_FUZZ_CHECK(hugezero::cpu_set::parse(printed) == set, printed);
    std::size_t count = 0;
    for (const auto& r : ranges)
        count += std::size_t{r.last} - r.first + 1;
    HUGEZERO_FUZZ_CHECK(set.count() == count, shown);
    for (const auto& r : ranges)
        HUGEZERO_FUZZ_CHECK(set.contains(r.first) && set.contains(r.last) && (r.first == 0 || !set.contains(r.first - 1)), shown);
    return 0;
}
