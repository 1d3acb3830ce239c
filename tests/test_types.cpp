// The strong value types: node_id, page_size, hstate and cpu_set. Their parsing, printing,
// ordering and hashing are the vocabulary every other layer (and every error message) uses.
#include <doctest/doctest.h>

#include <cstdint>
#include <functional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <unordered_set>
#include <vector>

#include <hugezero/hugezero.hpp>

#include "support/expect.hpp"

using namespace hugezero::literals;
using hugezero::cpu_set;
using hugezero::hstate;
using hugezero::node_id;
using hugezero::page_size;
using hugezero::test::thrown_by;
using hugezero::test::printed;

namespace {

std::string page_size_parse_error(const std::string& text)
{
    return thrown_by<std::invalid_argument>([&] { (void)page_size::parse(text); }).what();
}

std::string cpu_list_error(const std::string& text)
{
    return thrown_by<std::invalid_argument>([&] { (void)cpu_set::parse(text); }).what();
}

} // namespace

TEST_SUITE("types")
{
    // ----- node_id -----

    TEST_CASE("a size literal is a byte count or a page size, as its use says")
    {
        static_assert(std::uint64_t{512_MiB} == std::uint64_t{512} << 20);
        constexpr hugezero::page_size two_mib = 2_MiB;
        static_assert(two_mib == hugezero::page_2mib);
        const std::uint64_t bytes = 3_GiB; // not a page size, but a byte count
        CHECK(bytes == std::uint64_t{3} << 30);
        CHECK(4_KiB .bytes() == 4096);
        const auto as_page = [](hugezero::page_size size) { return size; };
        CHECK(as_page(1_GiB) == hugezero::page_1gib);
        CHECK_THROWS_WITH_AS(as_page(3_MiB), "hugezero: a page size must be a power of two of at least 4KiB, got 3145728 bytes",
                             std::invalid_argument);
        std::ostringstream text;
        text << 512_MiB << ' ' << 1536_KiB << ' ' << 2_GiB;
        CHECK(text.str() == "512MiB 1536KiB 2GiB");
    }

    TEST_CASE("node_id holds its number and prints as its sysfs directory name")
    {
        constexpr node_id node(3);
        static_assert(node.value() == 3);
        CHECK(printed(node) == "node3");
        CHECK(printed(node_id(0)) == "node0");
    }

    TEST_CASE("node_id orders and hashes by number")
    {
        CHECK(node_id(0) < node_id(2));
        CHECK(node_id(2) == node_id(2));
        CHECK(node_id(2) != node_id(1));
        CHECK(std::hash<node_id>{}(node_id(7)) == std::hash<node_id>{}(node_id(7)));
        const std::unordered_set<node_id> nodes{node_id(0), node_id(2), node_id(0)};
        CHECK(nodes.size() == 2);
        CHECK(nodes.count(node_id(2)) == 1);
        CHECK(nodes.count(node_id(1)) == 0);
    }

    // ----- page_size -----

    TEST_CASE("page_size accepts powers of two from 4KiB and rejects the rest naming the size")
    {
        CHECK(page_size(4096).bytes() == 4096);
        CHECK(page_size(std::uint64_t{1} << 63).bytes() == std::uint64_t{1} << 63);
        CHECK(thrown_by<std::invalid_argument>([] { (void)page_size(0); }).what()
              == std::string("hugezero: a page size must be a power of two of at least 4KiB, got 0 bytes"));
        CHECK(thrown_by<std::invalid_argument>([] { (void)page_size(2048); }).what()
              == std::string("hugezero: a page size must be a power of two of at least 4KiB, got 2048 bytes"));
        CHECK(thrown_by<std::invalid_argument>([] { (void)page_size(3 * 4096); }).what()
              == std::string("hugezero: a page size must be a power of two of at least 4KiB, got 12288 bytes"));
    }

    TEST_CASE("page_size from_kib takes the sysfs unit and rejects overflow")
    {
        CHECK(page_size::from_kib(2048) == 2_MiB);
        CHECK(page_size::from_kib(1048576) == 1_GiB);
        CHECK(page_size::from_kib(16777216) == 16_GiB);
        CHECK(page_size::from_kib(2048).kib() == 2048);
        // 2^54 KiB is 2^64 bytes: one past what 64 bits hold.
        CHECK(thrown_by<std::invalid_argument>([] { (void)page_size::from_kib(std::uint64_t{1} << 54); }).what()
              == std::string("hugezero: page size of 18014398509481984kB is too large"));
        CHECK(thrown_by<std::invalid_argument>([] { (void)page_size::from_kib(3); }).what()
              == std::string("hugezero: a page size must be a power of two of at least 4KiB, got 3072 bytes"));
    }

    TEST_CASE("page_size parses the spellings people and sysfs use")
    {
        for (const char* text : {"2M", "2MiB", "2MB", "2048kB", "2048K", "2048KiB"}) {
            CAPTURE(text);
            CHECK(page_size::parse(text) == 2_MiB);
        }
        for (const char* text : {"1G", "1GiB", "1048576kB", "1024M"}) {
            CAPTURE(text);
            CHECK(page_size::parse(text) == 1_GiB);
        }
        CHECK(page_size::parse("64K") == 64_KiB);
        CHECK(page_size::parse("512M") == 512_MiB);
        CHECK(page_size::parse("16777216kB") == 16_GiB);
        CHECK(page_size::parse("4K") == page_size(4096));
    }

    TEST_CASE("page_size parse rejects malformed sizes with a message naming the input")
    {
        CHECK(page_size_parse_error("")
              == "hugezero: invalid page size \"\": expected digits followed by a unit such as 2M, 2048kB or 1G");
        CHECK(page_size_parse_error("2") == "hugezero: invalid page size \"2\": a unit is required (K, M or G; e.g. 2M, 2048kB, 1G)");
        CHECK(page_size_parse_error("3M") == "hugezero: invalid page size \"3M\": a page size must be a power of two of at least 4KiB");
        CHECK(page_size_parse_error("0M") == "hugezero: invalid page size \"0M\": a page size must be a power of two of at least 4KiB");
        CHECK(page_size_parse_error("1K") == "hugezero: invalid page size \"1K\": a page size must be a power of two of at least 4KiB");
        CHECK(page_size_parse_error("2X")
              == "hugezero: invalid page size \"2X\": unknown unit \"X\" (use K, M or G; e.g. 2M, 2048kB, 1G)");
        CHECK(page_size_parse_error(" 2M")
              == "hugezero: invalid page size \" 2M\": expected digits followed by a unit such as 2M, 2048kB or 1G");
        CHECK(page_size_parse_error("2M ")
              == "hugezero: invalid page size \"2M \": unknown unit \"M \" (use K, M or G; e.g. 2M, 2048kB, 1G)");
    }

    TEST_CASE("page_size parse rejects sizes that do not fit in 64 bits")
    {
        // Too many digits for 64 bits at all...
        CHECK(page_size_parse_error("99999999999999999999M")
              == "hugezero: invalid page size \"99999999999999999999M\": the number is too large");
        // ...and a number that fits until the unit shifts it out: 2^34 GiB is 2^64 bytes.
        CHECK(page_size_parse_error("17179869184G")
              == "hugezero: invalid page size \"17179869184G\": the number is too large");
        CHECK(page_size::parse("8589934592G") == page_size(std::uint64_t{1} << 63));
    }

    TEST_CASE("page_size literals and named constants")
    {
        static_assert((2_MiB).bytes() == 2 * 1024 * 1024);
        static_assert((1_GiB).bytes() == std::uint64_t{1} << 30);
        static_assert((64_KiB).bytes() == 64 * 1024);
        static_assert((16_GiB).bytes() == std::uint64_t{16} << 30);
        static_assert(hugezero::page_2mib == 2_MiB);
        static_assert(hugezero::page_1gib == 1_GiB);
        CHECK(hugezero::page_2mib.kib() == 2048);
        CHECK(hugezero::page_1gib.kib() == 1048576);
    }

    TEST_CASE("page_size prints in the largest exact binary unit")
    {
        CHECK(hugezero::to_string(2_MiB) == "2MiB");
        CHECK(hugezero::to_string(1_GiB) == "1GiB");
        CHECK(hugezero::to_string(64_KiB) == "64KiB");
        CHECK(hugezero::to_string(512_MiB) == "512MiB");
        CHECK(hugezero::to_string(16_GiB) == "16GiB");
        CHECK(hugezero::to_string(page_size(4096)) == "4KiB");
        CHECK(hugezero::to_string(page_size(std::uint64_t{1} << 40)) == "1TiB");
    }

    TEST_CASE("page_size orders and hashes by bytes")
    {
        CHECK(64_KiB < 2_MiB);
        CHECK(2_MiB < 1_GiB);
        CHECK(1_GiB == page_size::parse("1G"));
        CHECK(std::hash<page_size>{}(2_MiB) == std::hash<page_size>{}(page_size::from_kib(2048)));
        const std::set<page_size> sorted{1_GiB, 2_MiB, 64_KiB};
        CHECK(std::vector<page_size>(sorted.begin(), sorted.end()) == std::vector<page_size>{64_KiB, 2_MiB, 1_GiB});
    }

    // ----- hstate -----

    TEST_CASE("hstate prints as node/size")
    {
        const hstate h{node_id(1), 1_GiB};
        CHECK(printed(h) == "node1/1GiB");
        CHECK(hugezero::to_string(hstate{node_id(0), 2_MiB}) == "node0/2MiB");
        CHECK(hugezero::to_string(hstate{node_id(2), 16_GiB}) == "node2/16GiB");
    }

    TEST_CASE("hstate orders by node then size and hashes consistently")
    {
        const hstate n0_2m{node_id(0), 2_MiB};
        const hstate n0_1g{node_id(0), 1_GiB};
        const hstate n1_2m{node_id(1), 2_MiB};
        CHECK(n0_2m < n0_1g);
        CHECK(n0_1g < n1_2m); // the node decides before the size
        CHECK(n0_2m == hstate{node_id(0), page_size::parse("2048kB")});
        CHECK(n0_2m != n1_2m);
        CHECK(std::hash<hstate>{}(n1_2m) == std::hash<hstate>{}(hstate{node_id(1), 2_MiB}));
        const std::unordered_set<hstate> all{n0_2m, n0_1g, n1_2m, hstate{node_id(1), 2_MiB}};
        CHECK(all.size() == 3);
        CHECK(all.count(n0_1g) == 1);
        CHECK(all.count(hstate{node_id(1), 1_GiB}) == 0);
    }

    // ----- cpu_set -----

    TEST_CASE("cpu_set parses and prints the kernel's range lists unchanged")
    {
        for (const char* list : {"0-7,16-23", "0", "0-1", "5,7,9", "0-3,8-11", "1048575"}) {
            CAPTURE(list);
            CHECK(hugezero::to_string(cpu_set::parse(list)) == list);
        }
    }

    TEST_CASE("cpu_set normalises order overlaps and adjacency")
    {
        CHECK(hugezero::to_string(cpu_set::parse("3,1-2")) == "1-3");
        CHECK(hugezero::to_string(cpu_set::parse("8-11,0-3")) == "0-3,8-11");
        CHECK(hugezero::to_string(cpu_set::parse("0-5,3-8")) == "0-8");
        CHECK(hugezero::to_string(cpu_set::parse("0-3,4-5")) == "0-5");
        CHECK(hugezero::to_string(cpu_set::parse("2,2,2")) == "2");
        CHECK(hugezero::to_string(cpu_set{3, 1, 2, 7}) == "1-3,7");
        CHECK(cpu_set::parse("3,1-2") == cpu_set{1, 2, 3});
        CHECK(cpu_set::from_ranges({{4, 6}, {0, 1}}) == cpu_set::parse("0-1,4-6"));
    }

    TEST_CASE("cpu_set membership count and listing")
    {
        const cpu_set set = cpu_set::parse("0-7,16-23");
        CHECK(set.count() == 16);
        CHECK_FALSE(set.empty());
        CHECK(set.contains(0));
        CHECK(set.contains(7));
        CHECK_FALSE(set.contains(8));
        CHECK_FALSE(set.contains(15));
        CHECK(set.contains(16));
        CHECK(set.contains(23));
        CHECK_FALSE(set.contains(24));
        CHECK(cpu_set::parse("1-3,6").cpus() == std::vector<unsigned>{1, 2, 3, 6});
        CHECK(set.ranges() == std::vector<hugezero::id_range>{{0, 7}, {16, 23}});
        // The largest id does not wrap around while listing.
        CHECK(cpu_set::parse("1048574-1048575").cpus() == std::vector<unsigned>{1048574, 1048575});
    }

    TEST_CASE("cpu_set empty set parses from nothing and prints as nothing")
    {
        const cpu_set none = cpu_set::parse("");
        CHECK(none.empty());
        CHECK(none.count() == 0);
        CHECK(none.cpus().empty());
        CHECK_FALSE(none.contains(0));
        CHECK(hugezero::to_string(none) == "");
        CHECK(none == cpu_set{});
    }

    TEST_CASE("cpu_set intersection")
    {
        CHECK(hugezero::to_string(cpu_set::parse("0-7,16-23") & cpu_set::parse("4-19")) == "4-7,16-19");
        CHECK(hugezero::to_string(cpu_set::parse("0-3") & cpu_set::parse("2,3,9")) == "2-3");
        CHECK((cpu_set::parse("0-3") & cpu_set::parse("4-7")).empty());
        CHECK((cpu_set::parse("0-3") & cpu_set{}).empty());
        const cpu_set a = cpu_set::parse("1,3,5-9");
        CHECK((a & a) == a);
    }

    TEST_CASE("cpu_set parse errors name the input and say what is wrong")
    {
        CHECK(cpu_list_error("0-3,,5")
              == "hugezero: invalid CPU list \"0-3,,5\": empty element in range list (a stray or doubled comma)");
        CHECK(cpu_list_error("7-3") == "hugezero: invalid CPU list \"7-3\": range \"7-3\" ends before it starts");
        CHECK(cpu_list_error("0-3,x")
              == "hugezero: invalid CPU list \"0-3,x\": \"x\" is not a number or a range N-M of numbers up to 1048575");
        CHECK(cpu_list_error("1048576")
              == "hugezero: invalid CPU list \"1048576\": \"1048576\" is not a number or a range N-M of numbers up to 1048575");
        // A sysfs file's newline belongs to the file, not to a CPU list given by a person.
        CHECK(cpu_list_error("0-3\n")
              == "hugezero: invalid CPU list \"0-3\n\": \"0-3\n\" is not a number or a range N-M of numbers up to 1048575");
        for (const char* bad : {",", "0,", ",0", "-1", "1-", "1-2-3", " 1", "1 "}) {
            CAPTURE(bad);
            CHECK(hugezero::test::contains(cpu_list_error(bad), std::string("invalid CPU list \"") + bad + "\": "));
        }
    }
}
