// zero_all_nodes::parse_size_assignment ("2M=512", "1G=70ms"): accepts or throws
// std::invalid_argument; the value is exactly what follows the first '=', and the size is a page
// size whose printed form parses back to it.
#include <bit>
#include <stdexcept>

#include "fuzz.hpp"
#include "zero_all_nodes/cli.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    const std::string_view input = hugezero::fuzz::text(data, size);
    const std::string shown = hugezero::detail::quote_content(input);
    try {
        const auto [page, value] = zero_all_nodes::parse_size_assignment(input);
        const auto equals = input.find('=');
        HUGEZERO_FUZZ_CHECK(equals != std::string_view::npos && value == input.substr(equals + 1), shown);
        HUGEZERO_FUZZ_CHECK(page.bytes() >= 4096 && std::has_single_bit(page.bytes()), shown);
        HUGEZERO_FUZZ_CHECK(hugezero::page_size::parse(hugezero::to_string(page)) == page, shown);
    } catch (const std::invalid_argument& e) {
        HUGEZERO_FUZZ_CHECK(*e.what() != '\0', shown);
    }
    return 0;
}
