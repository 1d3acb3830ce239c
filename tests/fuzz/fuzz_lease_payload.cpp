// detail::lease_payload_fields: the text send_lease() puts next to a lease's fd. What it accepts
// prints back (in send_lease()'s format) to a text it accepts with the same numbers, and to the
// very input unless a number had a leading zero; anything else (signs, spaces, overflow, extra
// words) is refused.
#include <string>

#include <hugezero/fd_passing.hpp>

#include "fuzz.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    const std::string_view input = hugezero::fuzz::text(data, size);
    const auto parsed = hugezero::detail::lease_payload_fields(input);
    if (!parsed)
        return 0;
    const std::string printed = "hugezero-lease 1 node=" + std::to_string(parsed->node) + " page_kib="
                                + std::to_string(parsed->page_kib) + " pages=" + std::to_string(parsed->pages)
                                + " cold=" + std::to_string(parsed->cold);
    const auto again = hugezero::detail::lease_payload_fields(printed);
    HUGEZERO_FUZZ_CHECK(again && again->node == parsed->node && again->page_kib == parsed->page_kib
                            && again->pages == parsed->pages && again->cold == parsed->cold,
                        printed);
    for (const char c : input)
        HUGEZERO_FUZZ_CHECK(c == ' ' || c == '=' || c == '-' || c == '_' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z'),
                            std::string(input));
    bool leading_zero = false; // "=0" followed by another digit
    for (auto at = input.find("=0"); at != std::string_view::npos; at = input.find("=0", at + 1))
        leading_zero = leading_zero || (at + 2 < input.size() && input[at + 2] >= '0' && input[at + 2] <= '9');
    HUGEZERO_FUZZ_CHECK(printed == input || leading_zero, std::string(input) + " printed as " + printed);
    return 0;
}
