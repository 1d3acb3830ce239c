// detail::parse_counter: a sysfs counter ("%lu\n"). A value it accepts prints back to an input it
// accepts with the same value, and to the very input when that had no leading zero; a rejection
// always has a reason, and quote_content shows any input in bounded, printable form.
#include <hugezero/detail/parse.hpp>

#include "fuzz.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    const std::string_view input = hugezero::fuzz::text(data, size);
    const auto parsed = hugezero::detail::parse_counter(input);
    const std::string shown = hugezero::detail::quote_content(input);
    HUGEZERO_FUZZ_CHECK(shown.size() <= 2 + 80 * 4 + 32, shown);
    for (const char c : shown)
        HUGEZERO_FUZZ_CHECK(static_cast<unsigned char>(c) >= 0x20 && static_cast<unsigned char>(c) < 0x7f, shown);
    if (!parsed) {
        HUGEZERO_FUZZ_CHECK(!parsed.reason().empty(), shown);
        return 0;
    }
    const std::string printed = std::to_string(parsed.value()) + "\n";
    const auto again = hugezero::detail::parse_counter(printed);
    HUGEZERO_FUZZ_CHECK(again && again.value() == parsed.value(), printed);
    if (input.size() < 2 || input.front() != '0')
        HUGEZERO_FUZZ_CHECK(printed == input, shown + " printed as " + printed);
    return 0;
}
