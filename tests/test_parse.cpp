// The strict parsers of detail/parse.hpp. They decide what hugezero accepts from the kernel
// (ABI.md §2: base-10 digits only, the trailing newline required, no overflow), and their
// reasons end up in parse_error messages, so the reasons are checked word for word.
#include <doctest/doctest.h>

#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include <hugezero/detail/parse.hpp>
#include <hugezero/error.hpp>

using namespace hugezero::literals;
using hugezero::id_range;
using hugezero::detail::parse_counter;
using hugezero::detail::parse_hugepages_dir_name;
using hugezero::detail::parse_range_list;
using hugezero::detail::quote_content;

namespace {

constexpr std::string_view no_digit_reason
    = "expected a decimal count followed by a newline; found a character that is not a digit";

std::string counter_rejection(std::string_view text)
{
    const auto result = parse_counter(text);
    REQUIRE_FALSE(result);
    return result.reason();
}

std::string range_list_rejection(std::string_view text, bool require_newline)
{
    const auto result = parse_range_list(text, require_newline);
    REQUIRE_FALSE(result);
    return result.reason();
}

std::vector<id_range> ranges_of(std::string_view text, bool require_newline)
{
    const auto result = parse_range_list(text, require_newline);
    REQUIRE_MESSAGE(result, "rejected: " << result.reason());
    return result.value();
}

std::string dir_name_rejection(std::string_view name)
{
    const auto result = parse_hugepages_dir_name(name);
    REQUIRE_FALSE(result);
    return result.reason();
}

} // namespace

TEST_SUITE("parse")
{
    // ----- counters -----

    TEST_CASE("parse_counter accepts what the kernel prints from zero to the 64-bit maximum")
    {
        CHECK(parse_counter("0\n").value() == 0);
        CHECK(parse_counter("512\n").value() == 512);
        CHECK(parse_counter("18446744073709551615\n").value() == std::numeric_limits<std::uint64_t>::max());
    }

    TEST_CASE("parse_counter rejects everything else and says why")
    {
        CHECK(counter_rejection("") == "the file is empty; expected a decimal count followed by a newline");
        CHECK(counter_rejection("5") == "expected a decimal count followed by a newline; the newline is missing");
        CHECK(counter_rejection("\n") == "expected a decimal count followed by a newline; there are no digits");
        CHECK(counter_rejection("18446744073709551616\n") == "the count does not fit in 64 bits");
        CHECK(counter_rejection("99999999999999999999999\n") == "the count does not fit in 64 bits");
        for (const std::string_view text : {"5\n\n", " 5\n", "+5\n", "-1\n", "5 \n", "0x10\n", "5\r\n", "1,000\n"}) {
            CAPTURE(text);
            CHECK(counter_rejection(text) == no_digit_reason);
        }
    }

    TEST_CASE("parse_decimal reads digits only and refuses overflow")
    {
        using hugezero::detail::parse_decimal;
        CHECK(parse_decimal("0") == std::uint64_t{0});
        CHECK(parse_decimal("18446744073709551615") == std::numeric_limits<std::uint64_t>::max());
        CHECK_FALSE(parse_decimal("18446744073709551616"));
        CHECK_FALSE(parse_decimal(""));
        CHECK_FALSE(parse_decimal("1a"));
        CHECK_FALSE(parse_decimal("-1"));
    }

    // ----- range lists -----

    TEST_CASE("parse_range_list reads sysfs masks with their newline")
    {
        CHECK(ranges_of("0-3,8-11\n", true) == std::vector<id_range>{{0, 3}, {8, 11}});
        CHECK(ranges_of("0\n", true) == std::vector<id_range>{{0, 0}});
        CHECK(ranges_of("0,2\n", true) == std::vector<id_range>{{0, 0}, {2, 2}});
        CHECK(ranges_of("\n", true).empty()); // an empty mask is just a newline
    }

    TEST_CASE("parse_range_list reads lists without a newline when none is required")
    {
        CHECK(ranges_of("0-7,16-23", false) == std::vector<id_range>{{0, 7}, {16, 23}});
        CHECK(ranges_of("", false).empty());
        CHECK(range_list_rejection("0-3\n", false)
              == "\"0-3\n\" is not a number or a range N-M of numbers up to 1048575");
    }

    TEST_CASE("parse_range_list requires exactly the sysfs newline")
    {
        CHECK(range_list_rejection("", true) == "the file is empty; expected a range list such as 0-3,8-11 followed by a newline");
        CHECK(range_list_rejection("0-3", true)
              == "expected a range list such as 0-3,8-11 followed by a newline; the newline is missing");
        CHECK(range_list_rejection("0-3\n\n", true)
              == "\"0-3\n\" is not a number or a range N-M of numbers up to 1048575");
    }

    TEST_CASE("parse_range_list sorts and merges overlapping and touching ranges")
    {
        CHECK(ranges_of("8-11,0-3", false) == std::vector<id_range>{{0, 3}, {8, 11}});
        CHECK(ranges_of("0-3,4-5", false) == std::vector<id_range>{{0, 5}});
        CHECK(ranges_of("0-5,2-3", false) == std::vector<id_range>{{0, 5}});
        CHECK(ranges_of("3,1-2,9", false) == std::vector<id_range>{{1, 3}, {9, 9}});
        CHECK(hugezero::detail::normalise_ranges({{5, 6}, {0, 1}, {2, 2}, {6, 9}})
              == std::vector<id_range>{{0, 2}, {5, 9}});
    }

    TEST_CASE("parse_range_list accepts ids up to its limit and no further")
    {
        static_assert(hugezero::detail::max_range_list_id == 1048575);
        CHECK(ranges_of("1048575\n", true) == std::vector<id_range>{{1048575, 1048575}});
        CHECK(ranges_of("0-1048575\n", true) == std::vector<id_range>{{0, 1048575}});
        CHECK(range_list_rejection("1048576\n", true)
              == "\"1048576\" is not a number or a range N-M of numbers up to 1048575");
        CHECK(range_list_rejection("0-18446744073709551616\n", true)
              == "\"0-18446744073709551616\" is not a number or a range N-M of numbers up to 1048575");
    }

    TEST_CASE("parse_range_list rejects malformed lists naming the bad element")
    {
        const std::string empty_element = "empty element in range list (a stray or doubled comma)";
        CHECK(range_list_rejection("0-3,,5\n", true) == empty_element);
        CHECK(range_list_rejection(",\n", true) == empty_element);
        CHECK(range_list_rejection("0,\n", true) == empty_element);
        CHECK(range_list_rejection(",0\n", true) == empty_element);
        CHECK(range_list_rejection("7-3\n", true) == "range \"7-3\" ends before it starts");
        const auto not_a_range = [](std::string_view item) {
            return "\"" + std::string(item) + "\" is not a number or a range N-M of numbers up to 1048575";
        };
        for (const std::string_view item : {"-1", "1-", "1-2-3", "a", " 1", "1 ", "0x1", "+1", "1--2"}) {
            CAPTURE(item);
            CHECK(range_list_rejection(std::string(item) + "\n", true) == not_a_range(item));
        }
        CHECK(range_list_rejection("0-3,8-x\n", true) == not_a_range("8-x"));
    }

    // ----- hstate directory names -----

    TEST_CASE("parse_hugepages_dir_name reads every architecture's sizes")
    {
        CHECK(parse_hugepages_dir_name("hugepages-2048kB").value() == 2_MiB);
        CHECK(parse_hugepages_dir_name("hugepages-1048576kB").value() == 1_GiB);
        CHECK(parse_hugepages_dir_name("hugepages-64kB").value() == 64_KiB);       // arm64 contiguous PTEs
        CHECK(parse_hugepages_dir_name("hugepages-524288kB").value() == 512_MiB);  // arm64, 64K base pages
        CHECK(parse_hugepages_dir_name("hugepages-16384kB").value() == 16_MiB);    // ppc64
        CHECK(parse_hugepages_dir_name("hugepages-16777216kB").value() == 16_GiB); // arm64 and ppc64
        CHECK(parse_hugepages_dir_name("hugepages-4kB").value() == hugezero::page_size(4096));
    }

    TEST_CASE("parse_hugepages_dir_name rejects other names and says why")
    {
        const std::string not_a_hstate_dir = "expected a directory named hugepages-<size>kB";
        for (const std::string_view name : {"", "hugepages-kB", "hugepages-2048KB", "hugepages-2048", "hugepages-2MB",
                                            "hugepages2048kB", "xhugepages-2048kB", "hugepages-2048kB ", "demote"}) {
            CAPTURE(name);
            CHECK(dir_name_rejection(name) == not_a_hstate_dir);
        }
        const std::string not_digits = "the size in a hugepages-<size>kB name must be decimal digits that fit in 64 bits";
        CHECK(dir_name_rejection("hugepages-+2048kB") == not_digits);
        CHECK(dir_name_rejection("hugepages-2M048kB") == not_digits);
        CHECK(dir_name_rejection("hugepages-18446744073709551616kB") == not_digits);
        const std::string not_a_power = "the size in a hugepages-<size>kB name must be a power of two of at least 4kB";
        CHECK(dir_name_rejection("hugepages-3000kB") == not_a_power);
        CHECK(dir_name_rejection("hugepages-2kB") == not_a_power);
        CHECK(dir_name_rejection("hugepages-0kB") == not_a_power);
        // 2^54 kB is 2^64 bytes: a power of two, but not a size 64 bits can hold.
        CHECK(dir_name_rejection("hugepages-18014398509481984kB") == not_a_power);
        CHECK(dir_name_rejection("hugepages-02048kB")
              == "the size in a hugepages-<size>kB name has a leading zero, which the kernel never prints");
    }

    // ----- showing content in messages -----

    TEST_CASE("quote_content escapes newlines quotes and control bytes")
    {
        CHECK(quote_content("") == "\"\"");
        CHECK(quote_content("512\n") == "\"512\\n\"");
        CHECK(quote_content("a\tb") == "\"a\\tb\"");
        CHECK(quote_content("say \"hi\"") == "\"say \\\"hi\\\"\"");
        CHECK(quote_content("C:\\") == "\"C:\\\\\"");
        CHECK(quote_content(std::string_view("\0\x01\x1f", 3)) == "\"\\x00\\x01\\x1f\"");
        CHECK(quote_content("\x7f\xff") == "\"\\x7f\\xff\"");
    }

    TEST_CASE("quote_content cuts long content after 80 bytes and gives its size")
    {
        const std::string eighty(80, '7');
        CHECK(quote_content(eighty) == "\"" + eighty + "\"");
        CHECK(quote_content(eighty + "89") == "\"" + eighty + "\"... (82 bytes)");
        // Escaping does not count against the limit: the cut is after 80 bytes of content.
        const std::string newlines(100, '\n');
        std::string shown = "\"";
        for (int i = 0; i < 80; ++i)
            shown += "\\n";
        CHECK(quote_content(newlines) == shown + "\"... (100 bytes)");
    }

    TEST_CASE("parse_error names the file and shows the content it rejected")
    {
        const hugezero::parse_error e("/sys/devices/system/node/online", "0-1", "the newline is missing");
        CHECK(e.path() == "/sys/devices/system/node/online");
        CHECK(e.content() == "0-1");
        CHECK(e.reason() == "the newline is missing");
        CHECK(std::string(e.what())
              == "hugezero: malformed /sys/devices/system/node/online: the newline is missing; content: \"0-1\"");
    }
}
