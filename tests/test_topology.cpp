// Discovery over golden sysfs trees (tests/data/sysfs, see its README.md): real and unusual
// machines must come out exactly as the files describe them, and every malformed file must be
// reported with its full path and its content. Trees are opened through machine::open(path),
// the way a user points hugezero at a copy of /sys.
#include <doctest/doctest.h>

#include <cerrno>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include <hugezero/hugezero.hpp>

#include "support/expect.hpp"
#include "support/sysfs_tree.hpp"
#include "support/temp_dir.hpp"
#include "support/threads.hpp"

using namespace hugezero::literals;
using hugezero::global_counters;
using hugezero::hstate;
using hugezero::hstate_counters;
using hugezero::machine;
using hugezero::node_id;
using hugezero::page_size;
using hugezero::test::golden_tree;
using hugezero::test::thrown_by;
using hugezero::test::printed;

namespace {

machine open_tree(const char* name) { return machine::open(golden_tree(name)); }

// The full path hugezero shows for @p relative in tree @p name.
std::string shown(const char* name, const std::string& relative) { return (golden_tree(name) / relative).string(); }

std::vector<page_size> sizes_of(const hugezero::node_info& node)
{
    std::vector<page_size> out;
    for (const auto& h : node.hstates)
        out.push_back(h.id.size);
    return out;
}

std::vector<unsigned> node_numbers(const machine& m)
{
    std::vector<unsigned> out;
    for (const auto& n : m.topology().nodes())
        out.push_back(n.id.value());
    return out;
}

hstate_counters counters(std::uint64_t nr, std::uint64_t free, std::uint64_t surplus,
                         std::optional<std::uint64_t> zeroable = std::nullopt)
{
    return {nr, free, surplus, zeroable};
}

const std::string node0_2mib_dir = "devices/system/node/node0/hugepages/hugepages-2048kB";

// The parse_error a malformed counter file in tree @p name gives when machine::counters() reads it.
hugezero::parse_error counter_error(const char* name)
{
    const machine m = open_tree(name); // counters are read lazily: discovery succeeds
    return thrown_by<hugezero::parse_error>([&] { (void)m.counters({node_id(0), 2_MiB}); });
}

// The parse_error discovery gives for tree @p name.
hugezero::parse_error discovery_error(const char* name)
{
    return thrown_by<hugezero::parse_error>([&] { (void)open_tree(name); });
}

std::string expected_parse_message(const std::string& path, const std::string& reason, const std::string& quoted)
{
    return "hugezero: malformed " + path + ": " + reason + "; content: " + quoted;
}

} // namespace

TEST_SUITE("topology")
{
    // ----- the machine these tests run on, captured from its /sys -----

    TEST_CASE("this-machine tree has node0 with cpus 0-1 and 2MiB and 1GiB pages")
    {
        const machine m = open_tree("this-machine");
        const auto& t = m.topology();
        CHECK(t.numa());
        CHECK(node_numbers(m) == std::vector<unsigned>{0});
        const auto& node0 = t.node(node_id(0));
        CHECK(hugezero::to_string(node0.cpus) == "0-1");
        CHECK(node0.has_memory);
        CHECK(sizes_of(node0) == std::vector<page_size>{2_MiB, 1_GiB});
        CHECK(t.page_sizes() == std::vector<page_size>{2_MiB, 1_GiB});
        CHECK(t.hstates() == std::vector<hstate>{{node_id(0), 2_MiB}, {node_id(0), 1_GiB}});
        CHECK(t.info({node_id(0), 2_MiB}).directory == node0_2mib_dir);
        CHECK(t.info({node_id(0), 1_GiB}).directory == "devices/system/node/node0/hugepages/hugepages-1048576kB");
        // A stock kernel: no zeroable_hugepages anywhere.
        CHECK_FALSE(m.supports_zeroing({node_id(0), 2_MiB}));
        CHECK_FALSE(m.supports_zeroing({node_id(0), 1_GiB}));
    }

    TEST_CASE("this-machine tree counters are read per node and globally")
    {
        // Captured with 16 2MiB pages of which 4 fallocated and 2 reserved by a mapping.
        const machine m = open_tree("this-machine");
        CHECK(m.counters({node_id(0), 2_MiB}) == counters(16, 12, 0));
        CHECK(m.counters({node_id(0), 1_GiB}) == counters(1, 1, 0));
        CHECK(m.global(2_MiB) == global_counters{16, 12, 2, 0, 4});
        CHECK(m.global(1_GiB) == global_counters{1, 1, 0, 0, 0});
    }

    // ----- a two-socket x86 server whose kernel has zeroable_hugepages on node 0 -----

    TEST_CASE("two-socket-x86 tree has two nodes with their cpus and per-hstate zeroing support")
    {
        const machine m = open_tree("two-socket-x86");
        const auto& t = m.topology();
        CHECK(node_numbers(m) == std::vector<unsigned>{0, 1});
        CHECK(hugezero::to_string(t.node(node_id(0)).cpus) == "0-7,16-23");
        CHECK(hugezero::to_string(t.node(node_id(1)).cpus) == "8-15,24-31");
        CHECK(sizes_of(t.node(node_id(0))) == std::vector<page_size>{2_MiB, 1_GiB});
        CHECK(sizes_of(t.node(node_id(1))) == std::vector<page_size>{2_MiB, 1_GiB});
        CHECK(m.supports_zeroing({node_id(0), 2_MiB}));
        CHECK(m.supports_zeroing({node_id(0), 1_GiB}));
        CHECK_FALSE(m.supports_zeroing({node_id(1), 2_MiB}));
        CHECK_FALSE(m.supports_zeroing({node_id(1), 1_GiB}));
        CHECK(m.zeroable_path({node_id(0), 1_GiB})
              == "devices/system/node/node0/hugepages/hugepages-1048576kB/zeroable_hugepages");
    }

    TEST_CASE("two-socket-x86 tree counters include zeroable where the kernel has it")
    {
        const machine m = open_tree("two-socket-x86");
        CHECK(m.counters({node_id(0), 2_MiB}) == counters(1024, 1000, 0, 600));
        CHECK(m.counters({node_id(0), 1_GiB}) == counters(16, 12, 0, 5));
        CHECK(m.counters({node_id(1), 2_MiB}) == counters(512, 256, 3));
        CHECK(m.counters({node_id(1), 1_GiB}) == counters(8, 8, 0));
        CHECK(m.zeroable({node_id(0), 2_MiB}) == 600);
        CHECK(m.zeroable({node_id(0), 1_GiB}) == 5);
        CHECK(m.global(2_MiB) == global_counters{1536, 1256, 40, 3, 16});
        CHECK(m.global(1_GiB) == global_counters{24, 20, 2, 0, 0});
    }

    TEST_CASE("two-socket-x86 tree prints its topology machine and counters")
    {
        const machine m = open_tree("two-socket-x86");
        CHECK(printed(m.topology())
              == "node0 cpus 0-7,16-23\n"
                 "  node0/2MiB zeroable_hugepages: present\n"
                 "  node0/1GiB zeroable_hugepages: present\n"
                 "node1 cpus 8-15,24-31\n"
                 "  node1/2MiB zeroable_hugepages: absent\n"
                 "  node1/1GiB zeroable_hugepages: absent\n");
        CHECK(printed(m)
              == "node0 cpus 0-7,16-23\n"
                 "  node0/2MiB nr 1024 free 1000 surplus 0 zeroable 600\n"
                 "  node0/1GiB nr 16 free 12 surplus 0 zeroable 5\n"
                 "node1 cpus 8-15,24-31\n"
                 "  node1/2MiB nr 512 free 256 surplus 3 zeroable -\n"
                 "  node1/1GiB nr 8 free 8 surplus 0 zeroable -\n");
        CHECK(printed(m.counters({node_id(1), 2_MiB})) == "nr 512 free 256 surplus 3 zeroable -");
        CHECK(printed(m.global(2_MiB)) == "nr 1536 free 1256 resv 40 surplus 3 overcommit 16");
    }

    // ----- unusual machines -----

    TEST_CASE("sparse-nodes tree keeps the kernel's node numbers")
    {
        const machine m = open_tree("sparse-nodes");
        CHECK(node_numbers(m) == std::vector<unsigned>{0, 2});
        CHECK(hugezero::to_string(m.topology().node(node_id(2)).cpus) == "4-7");
        CHECK(m.topology().info({node_id(2), 2_MiB}).directory
              == "devices/system/node/node2/hugepages/hugepages-2048kB");
        CHECK(m.counters({node_id(0), 2_MiB}) == counters(64, 60, 0));
        CHECK(m.counters({node_id(2), 2_MiB}) == counters(32, 30, 1));
        CHECK(m.global(2_MiB) == global_counters{96, 90, 0, 1, 0});
        // Node 1 is possible but not online: it does not exist for hugezero.
        CHECK(thrown_by<std::invalid_argument>([&] { (void)m.topology().node(node_id(1)); }).what()
              == std::string("hugezero: no online NUMA node 1 (online nodes: 0, 2)"));
    }

    TEST_CASE("memoryless-node tree has a node with cpus and no hstates")
    {
        const machine m = open_tree("memoryless-node");
        CHECK(node_numbers(m) == std::vector<unsigned>{0, 1});
        const auto& node1 = m.topology().node(node_id(1));
        CHECK_FALSE(node1.has_memory);
        CHECK(hugezero::to_string(node1.cpus) == "4-7");
        // The tree has a stale node1/hugepages directory; a node without memory has no hstates.
        CHECK(node1.hstates.empty());
        CHECK(m.topology().node(node_id(0)).has_memory);
        CHECK(m.topology().hstates() == std::vector<hstate>{{node_id(0), 2_MiB}, {node_id(0), 1_GiB}});
        CHECK(m.counters({node_id(0), 1_GiB}) == counters(2, 1, 0));
        CHECK(printed(m.topology())
              == "node0 cpus 0-3\n"
                 "  node0/2MiB zeroable_hugepages: absent\n"
                 "  node0/1GiB zeroable_hugepages: absent\n"
                 "node1 cpus 4-7 (memoryless)\n");
        CHECK(thrown_by<std::invalid_argument>([&] { (void)m.counters({node_id(1), 2_MiB}); }).what()
              == std::string("hugezero: node 1 has no 2MiB huge pages (it has: none)"));
    }

    TEST_CASE("arm64-64k tree has 2MiB 512MiB and 16GiB pages")
    {
        const machine m = open_tree("arm64-64k");
        CHECK(m.topology().page_sizes() == std::vector<page_size>{2_MiB, 512_MiB, 16_GiB});
        CHECK(sizes_of(m.topology().node(node_id(0))) == std::vector<page_size>{2_MiB, 512_MiB, 16_GiB});
        CHECK(m.topology().info({node_id(0), 16_GiB}).directory
              == "devices/system/node/node0/hugepages/hugepages-16777216kB");
        CHECK(m.counters({node_id(0), 2_MiB}) == counters(256, 200, 0));
        CHECK(m.counters({node_id(0), 512_MiB}) == counters(8, 6, 0));
        CHECK(m.counters({node_id(0), 16_GiB}) == counters(1, 1, 0));
        CHECK(m.global(512_MiB) == global_counters{8, 6, 0, 0, 2});
        CHECK(printed(m)
              == "node0 cpus 0-63\n"
                 "  node0/2MiB nr 256 free 200 surplus 0 zeroable -\n"
                 "  node0/512MiB nr 8 free 6 surplus 0 zeroable -\n"
                 "  node0/16GiB nr 1 free 1 surplus 0 zeroable -\n");
    }

    TEST_CASE("node-without-hugepages-dir tree has a memory node with no hstates")
    {
        // node1 is a CPU-less memory node (say CXL) whose directory has no hugepages/ at all.
        const machine m = open_tree("node-without-hugepages-dir");
        CHECK(node_numbers(m) == std::vector<unsigned>{0, 1});
        const auto& node1 = m.topology().node(node_id(1));
        CHECK(node1.has_memory);
        CHECK(node1.cpus.empty()); // its cpulist is an empty mask, "\n"
        CHECK(node1.hstates.empty());
        CHECK(m.counters({node_id(0), 2_MiB}) == counters(10, 9, 0));
        CHECK(printed(m.topology())
              == "node0 cpus 0-3\n"
                 "  node0/2MiB zeroable_hugepages: absent\n"
                 "node1 cpus none\n");
    }

    TEST_CASE("no-numa tree is one node 0 fed by the global counters")
    {
        const machine m = open_tree("no-numa");
        const auto& t = m.topology();
        CHECK_FALSE(t.numa());
        CHECK(node_numbers(m) == std::vector<unsigned>{0});
        CHECK(hugezero::to_string(t.node(node_id(0)).cpus) == "0-3"); // devices/system/cpu/online
        CHECK(t.node(node_id(0)).has_memory);
        CHECK(sizes_of(t.node(node_id(0))) == std::vector<page_size>{2_MiB, 1_GiB});
        CHECK(t.info({node_id(0), 2_MiB}).directory == "kernel/mm/hugepages/hugepages-2048kB");
        CHECK_FALSE(m.supports_zeroing({node_id(0), 2_MiB}));
        CHECK(m.counters({node_id(0), 2_MiB}) == counters(20, 15, 2));
        CHECK(m.counters({node_id(0), 1_GiB}) == counters(2, 2, 0));
        CHECK(m.global(2_MiB) == global_counters{20, 15, 1, 2, 5});
        CHECK(printed(m)
              == "node0 cpus 0-3\n"
                 "  node0/2MiB nr 20 free 15 surplus 2 zeroable -\n"
                 "  node0/1GiB nr 2 free 2 surplus 0 zeroable -\n");
    }

    // ----- choosing the root -----

    TEST_CASE("HUGEZERO_SYSFS_ROOT points machine open at another tree")
    {
        {
            const hugezero::test::scoped_env env("HUGEZERO_SYSFS_ROOT", golden_tree("two-socket-x86").string());
            CHECK(hugezero::sysfs_backend::default_root() == golden_tree("two-socket-x86"));
            const machine m = machine::open();
            CHECK(node_numbers(m) == std::vector<unsigned>{0, 1});
            CHECK(m.counters({node_id(1), 2_MiB}) == counters(512, 256, 3));
            CHECK(m.backend().display_path("devices/system/node/online")
                  == shown("two-socket-x86", "devices/system/node/online"));
        }
        {
            const hugezero::test::scoped_env env("HUGEZERO_SYSFS_ROOT", std::string());
            CHECK(hugezero::sysfs_backend::default_root() == "/sys"); // empty means unset
        }
        const hugezero::test::scoped_env env("HUGEZERO_SYSFS_ROOT", std::nullopt);
        CHECK(hugezero::sysfs_backend::default_root() == "/sys");
    }

    TEST_CASE("a missing sysfs root is a system_error naming it")
    {
        const hugezero::test::temp_dir dir;
        const std::filesystem::path missing = dir.path() / "no-such-sys";
        const auto e = thrown_by<std::system_error>([&] { (void)machine::open(missing); });
        CHECK(e.code().value() == ENOENT);
        CHECK(std::string(e.what())
              == "hugezero: open sysfs root " + missing.string() + ": " + std::generic_category().message(ENOENT));

        const std::filesystem::path file = golden_tree("this-machine") / "devices/system/node/online";
        CHECK(thrown_by<std::system_error>([&] { (void)machine::open(file); }).code().value() == ENOTDIR);
    }

    // ----- asking for what is not there -----

    TEST_CASE("unknown nodes and hstates are invalid arguments naming them")
    {
        const machine m = open_tree("two-socket-x86");
        CHECK(thrown_by<std::invalid_argument>([&] { (void)m.topology().node(node_id(7)); }).what()
              == std::string("hugezero: no online NUMA node 7 (online nodes: 0, 1)"));
        CHECK(thrown_by<std::invalid_argument>([&] { (void)m.counters({node_id(7), 2_MiB}); }).what()
              == std::string("hugezero: no online NUMA node 7 (online nodes: 0, 1)"));
        CHECK(thrown_by<std::invalid_argument>([&] { (void)m.counters({node_id(0), 16_GiB}); }).what()
              == std::string("hugezero: node 0 has no 16GiB huge pages (it has: 2MiB, 1GiB)"));
        CHECK(thrown_by<std::invalid_argument>([&] { (void)m.supports_zeroing({node_id(1), 64_KiB}); }).what()
              == std::string("hugezero: node 1 has no 64KiB huge pages (it has: 2MiB, 1GiB)"));
        CHECK(thrown_by<std::invalid_argument>([&] { (void)m.global(16_GiB); }).what()
              == std::string("hugezero: the kernel has no 16GiB huge pages"));
    }

    TEST_CASE("zeroable on a stock-kernel hstate throws zeroing_unsupported pointing to the pool")
    {
        const machine m = open_tree("two-socket-x86");
        const hstate h{node_id(1), 2_MiB};
        const std::string path = shown("two-socket-x86", "devices/system/node/node1/hugepages/hugepages-2048kB/zeroable_hugepages");
        const auto e = thrown_by<hugezero::zeroing_unsupported>([&] { (void)m.zeroable(h); });
        CHECK(e.which() == h);
        const std::string message = e.what();
        CHECK(hugezero::test::contains(message, "hugezero: cannot pre-zero node1/2MiB"));
        CHECK(hugezero::test::contains(message, "zeroable_hugepages"));
        CHECK(hugezero::test::contains(message, path + " does not exist"));
        CHECK(hugezero::test::contains(message, "hugezero::pool"));
        CHECK(thrown_by<hugezero::zeroing_unsupported>([&] { (void)m.zeroable_path(h); }).which() == h);
        // The counters of such an hstate are still there, without the zeroable one.
        CHECK_FALSE(m.counters(h).zeroable.has_value());
    }

    // ----- malformed counters: found when machine::counters() reads them -----

    TEST_CASE("malformed counter without its newline names the file and shows the content")
    {
        const auto e = counter_error("malformed-counter-no-newline");
        const std::string path = shown("malformed-counter-no-newline", node0_2mib_dir + "/free_hugepages");
        CHECK(e.path() == path);
        CHECK(e.content() == "6");
        CHECK(std::string(e.what())
              == expected_parse_message(path, "expected a decimal count followed by a newline; the newline is missing", "\"6\""));
    }

    TEST_CASE("malformed counter with non-digits names the file and shows the content")
    {
        const auto e = counter_error("malformed-counter-non-digit");
        const std::string path = shown("malformed-counter-non-digit", node0_2mib_dir + "/nr_hugepages");
        CHECK(e.path() == path);
        CHECK(e.content() == "0x8\n");
        CHECK(std::string(e.what())
              == expected_parse_message(
                  path, "expected a decimal count followed by a newline; found a character that is not a digit", "\"0x8\\n\""));
    }

    TEST_CASE("malformed counter beyond 64 bits names the file and shows the content")
    {
        const auto e = counter_error("malformed-counter-overflow");
        const std::string path = shown("malformed-counter-overflow", node0_2mib_dir + "/surplus_hugepages");
        CHECK(e.path() == path);
        CHECK(e.content() == "18446744073709551616\n");
        CHECK(std::string(e.what())
              == expected_parse_message(path, "the count does not fit in 64 bits", "\"18446744073709551616\\n\""));
    }

    TEST_CASE("malformed empty counter file names the file and shows the empty content")
    {
        const auto e = counter_error("malformed-counter-empty");
        const std::string path = shown("malformed-counter-empty", node0_2mib_dir + "/nr_hugepages");
        CHECK(e.path() == path);
        CHECK(e.content().empty());
        CHECK(std::string(e.what())
              == expected_parse_message(path, "the file is empty; expected a decimal count followed by a newline", "\"\""));
    }

    TEST_CASE("malformed global counter is found by machine global")
    {
        const machine m = open_tree("malformed-global-counter");
        CHECK(m.counters({node_id(0), 2_MiB}) == counters(8, 6, 0)); // the node's own files are fine
        const auto e = thrown_by<hugezero::parse_error>([&] { (void)m.global(2_MiB); });
        const std::string path = shown("malformed-global-counter", "kernel/mm/hugepages/hugepages-2048kB/resv_hugepages");
        CHECK(e.path() == path);
        CHECK(e.content() == "-1\n");
        CHECK(std::string(e.what())
              == expected_parse_message(
                  path, "expected a decimal count followed by a newline; found a character that is not a digit", "\"-1\\n\""));
    }

    // ----- malformed masks, CPU lists and directory names: found by discovery -----

    TEST_CASE("malformed cpulist with an empty element fails discovery naming the file")
    {
        const auto e = discovery_error("malformed-cpulist-empty-element");
        const std::string path = shown("malformed-cpulist-empty-element", "devices/system/node/node0/cpulist");
        CHECK(e.path() == path);
        CHECK(e.content() == "0-3,,5\n");
        CHECK(std::string(e.what())
              == expected_parse_message(path, "empty element in range list (a stray or doubled comma)", "\"0-3,,5\\n\""));
    }

    TEST_CASE("malformed cpulist with a reversed range fails discovery naming the file")
    {
        const auto e = discovery_error("malformed-cpulist-reversed-range");
        const std::string path = shown("malformed-cpulist-reversed-range", "devices/system/node/node0/cpulist");
        CHECK(e.path() == path);
        CHECK(e.content() == "7-3\n");
        CHECK(std::string(e.what()) == expected_parse_message(path, "range \"7-3\" ends before it starts", "\"7-3\\n\""));
    }

    TEST_CASE("malformed node mask without its newline fails discovery naming the file")
    {
        const auto e = discovery_error("malformed-node-mask");
        const std::string path = shown("malformed-node-mask", "devices/system/node/online");
        CHECK(e.path() == path);
        CHECK(e.content() == "0");
        CHECK(std::string(e.what())
              == expected_parse_message(
                  path, "expected a range list such as 0-3,8-11 followed by a newline; the newline is missing", "\"0\""));
    }

    TEST_CASE("malformed entry in a hugepages directory fails discovery naming the directory and entry")
    {
        const auto e = discovery_error("malformed-hugepages-dir-name");
        const std::string path = shown("malformed-hugepages-dir-name", "devices/system/node/node0/hugepages");
        CHECK(e.path() == path);
        CHECK(e.content() == "hugepages-2MB");
        CHECK(std::string(e.what())
              == expected_parse_message(path, "unexpected entry: expected a directory named hugepages-<size>kB",
                                        "\"hugepages-2MB\""));
    }

    // ----- a file that cannot be read -----

    TEST_CASE("an unreadable counter is a system_error EACCES naming the full path")
    {
        // Git cannot store mode 000, so the tree is copied and damaged here. Root reads anything
        // through CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH, so the read happens in a thread that has
        // dropped those for itself (capabilities are per thread on Linux).
        const hugezero::test::temp_dir dir;
        const std::filesystem::path root = dir.path() / "sys";
        hugezero::test::copy_tree(golden_tree("this-machine"), root);
        const std::filesystem::path file = root / node0_2mib_dir / "free_hugepages";
        std::filesystem::permissions(file, std::filesystem::perms::none);

        const machine m = machine::open(root); // discovery does not read counters
        struct outcome {
            int drop_error;
            std::optional<std::system_error> error;
        };
        const outcome got = hugezero::test::run_in_new_thread([&] {
            const int drop_error = hugezero::test::drop_file_read_override_in_this_thread();
            if (drop_error != 0)
                return outcome{drop_error, std::nullopt};
            return outcome{0, thrown_by<std::system_error>([&] { (void)m.counters({node_id(0), 2_MiB}); })};
        });
        REQUIRE(got.drop_error == 0);
        REQUIRE(got.error.has_value());
        CHECK(got.error->code().value() == EACCES);
        CHECK(std::string(got.error->what())
              == "hugezero: open " + file.string() + ": " + std::generic_category().message(EACCES));
        // The same machine still reads the other counters, and the damaged one once it is readable.
        CHECK(m.counters({node_id(0), 1_GiB}) == counters(1, 1, 0));
        std::filesystem::permissions(file, std::filesystem::perms::owner_read);
        CHECK(m.counters({node_id(0), 2_MiB}) == counters(16, 12, 0));
    }
}
