// page_size::parse, sizes written by people ("2M", "2048kB", "1GiB"). It accepts or throws
// std::invalid_argument naming the input; what it accepts is a valid page size, and the size's
// printed form ("2MiB") parses back to the same size.
#include <bit>
#include <stdexcept>

#include <hugezero/detail/parse.hpp>
#include <hugezero/page_size.hpp>

#include "fuzz.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    const std::string_view input = hugezero::fuzz::text(data, size);
    const std::string shown = hugezero::detail::quote_content(input);
    std::optional<hugezero::page_size> parsed;
    try {
        parsed = hugezero::page_size::parse(input);
    } catch (const std::invalid_argument& e) {
        HUGEZERO_FUZZ_CHECK(std::string_view(e.what()).find("invalid page size") != std::string_view::npos, e.what());
        return 0;
    }
    HUGEZERO_FUZZ_CHECK(parsed->bytes() >= 4096 && std::has_single_bit(parsed->bytes()), shown);
    const std::string printed = hugezero::to_string(*parsed);
    try {
        HUGEZERO_FUZZ_CHECK(hugezero::page_size::parse(printed) == *parsed, shown + " printed as " + printed);
    } catch (const std::invalid_argument& e) {
        HUGEZERO_FUZZ_CHECK(false, shown + " printed as " + printed + ", which does not parse: " + e.what());
    }
    return 0;
}
