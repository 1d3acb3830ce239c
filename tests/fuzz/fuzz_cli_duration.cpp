// zero_all_nodes::parse_duration ("150us", "70ms", "1s"): accepts or throws std::invalid_argument;
// an accepted duration is not negative and, written in nanoseconds, parses to itself.
#include <stdexcept>

#include "fuzz.hpp"
#include "zero_all_nodes/cli.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    const std::string_view input = hugezero::fuzz::text(data, size);
    const std::string shown = hugezero::detail::quote_content(input);
    std::chrono::nanoseconds parsed{};
    try {
        parsed = zero_all_nodes::parse_duration(input);
    } catch (const std::invalid_argument& e) {
        HUGEZERO_FUZZ_CHECK(*e.what() != '\0', shown);
        return 0;
    }
    HUGEZERO_FUZZ_CHECK(parsed.count() >= 0, shown);
    const std::string printed = std::to_string(parsed.count()) + "ns";
    HUGEZERO_FUZZ_CHECK(zero_all_nodes::parse_duration(printed) == parsed, shown + " printed as " + printed);
    return 0;
}
