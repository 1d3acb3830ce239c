// The zero_all_nodes contract (README, "zero_all_nodes"), checked by running the program: its
// JSON, its exit codes, its usage errors, its progress, and SIGINT/SIGTERM interrupting it.
#include <doctest/doctest.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <string>
#include <vector>

#include <pty.h>
#include <sys/wait.h>

#include "support/expect.hpp"
#include "support/json.hpp"
#include "support/skip.hpp"
#include "support/subprocess.hpp"
#include "support/temp_dir.hpp"
#include "support/threads.hpp"

#ifndef ZERO_ALL_NODES
#error "ZERO_ALL_NODES must name the zero_all_nodes executable"
#endif

using hugezero::test::contains;
using hugezero::test::run_process;
using namespace std::chrono_literals;
namespace json = hugezero::test::json;

namespace {

std::vector<std::string> command(std::vector<std::string> args)
{
    args.insert(args.begin(), ZERO_ALL_NODES);
    return args;
}

std::string tree(const std::string& name) { return std::string(HUGEZERO_TEST_DATA) + "/sysfs/" + name; }

// Every hstate of a run's JSON satisfies zeroed + zeroable_after == zeroable_before, and the
// totals are the sums.
void check_run_json(const json::value& j)
{
    std::uint64_t pages = 0;
    std::uint64_t bytes = 0;
    for (const auto& h : j["hstates"].as_array()) {
        INFO("node " << h["node"].as_u64() << " page_size_kb " << h["page_size_kb"].as_u64());
        CHECK(h["zeroed"].as_u64() + h["zeroable_after"].as_u64() == h["zeroable_before"].as_u64());
        pages += h["zeroed"].as_u64();
        bytes += h["zeroed"].as_u64() * h["page_size_kb"].as_u64() * 1024;
    }
    CHECK(j["pages_zeroed"].as_u64() == pages);
    CHECK(j["bytes_zeroed"].as_u64() == bytes);
    CHECK(j["seconds"].as_number() >= 0);
}

// Starts a long simulated run, signals it once it is ready, and checks the cancellation contract.
void check_cancelled_by(int signo, int expected_exit)
{
    hugezero::test::child_process child(
        command({"--simulate", "--sim-pages", "1G=40", "--sim-page-cost", "1G=100ms", "--json"}));
    REQUIRE(hugezero::test::wait_until([&] { return child.blocks_signal(signo); }));
    // Let it get well into zeroing (the run takes seconds); correctness does not depend on when.
    std::this_thread::sleep_for(250ms);
    const auto signalled_at = std::chrono::steady_clock::now();
    child.send(signo);
    const auto result = child.wait(10s);
    const auto latency = std::chrono::steady_clock::now() - signalled_at;
    MESSAGE("exited " << std::chrono::duration<double, std::milli>(latency).count() << " ms after the signal");
    CHECK(latency < 300ms);
    CHECK(result.exit_code == expected_exit);
    const auto j = json::parse(result.out);
    CHECK(j["status"].as_string() == "cancelled");
    check_run_json(j);
    std::uint64_t zeroed = 0;
    for (const auto& h : j["hstates"].as_array())
        zeroed += h["zeroed"].as_u64();
    CHECK(zeroed > 0);
    CHECK(j["pages_zeroed"].as_u64() < 2 * (40 + 256));
}

} // namespace

TEST_SUITE("cli")
{
    TEST_CASE("--help prints the usage and exits 0")
    {
        const auto r = run_process(command({"--help"}));
        CHECK(r.exit_code == 0);
        CHECK(contains(r.out, "Usage: zero_all_nodes"));
        for (const char* option : {"--simulate", "--sim-nodes", "--sim-pages", "--sim-page-cost", "--sysfs-root", "--node",
                                   "--page-size", "--threads-per-node", "--dry-run", "--json", "--quiet"})
            CHECK(contains(r.out, option));
    }

    TEST_CASE("--simulate --json zeroes the default simulated machine and reports every hstate")
    {
        const auto r = run_process(command({"--simulate", "--json"}));
        CHECK(r.exit_code == 0);
        const auto j = json::parse(r.out); // exactly one JSON object, nothing else on stdout
        CHECK(j["status"].as_string() == "complete");
        const auto& hstates = j["hstates"].as_array();
        REQUIRE(hstates.size() == 4);
        for (const auto& h : hstates) {
            const auto expected = h["page_size_kb"].as_u64() == 2048 ? 256u : 4u;
            CHECK(h["zeroable_before"].as_u64() == expected);
            CHECK(h["zeroed"].as_u64() == expected);
            CHECK(h["zeroable_after"].as_u64() == 0);
        }
        CHECK(hstates[0]["node"].as_u64() == 0);
        CHECK(hstates[3]["node"].as_u64() == 1);
        CHECK(j["pages_zeroed"].as_u64() == 2 * (256 + 4));
        check_run_json(j);
        CHECK(r.err.empty()); // stderr is not a terminal: no progress
    }

    TEST_CASE("--dry-run --json describes the machine and zeroes nothing")
    {
        const auto r = run_process(command({"--simulate", "--sim-nodes", "1", "--sim-pages", "1G=0", "--dry-run", "--json"}));
        CHECK(r.exit_code == 0);
        const std::string cpus = json::parse(r.out)["nodes"].as_array().at(0)["cpus"].as_string();
        CHECK(r.out
              == R"({"status":"dry-run","nodes":[{"node":0,"cpus":")" + cpus
                     + R"(","hstates":[{"page_size_kb":2048,"nr":256,"free":256,"surplus":0,"zeroable":256}]}]}
)");
    }

    TEST_CASE("--dry-run on a stock kernel reports zeroable as null")
    {
        const auto r = run_process(command({"--sysfs-root", tree("this-machine"), "--dry-run", "--json"}));
        CHECK(r.exit_code == 0);
        const auto j = json::parse(r.out);
        for (const auto& node : j["nodes"].as_array())
            for (const auto& h : node["hstates"].as_array())
                CHECK(h["zeroable"].is_null());
    }

    TEST_CASE("--sim-* options shape the simulated machine: --node and --page-size select")
    {
        const auto r = run_process(command({"--simulate", "--sim-nodes", "3", "--sim-pages", "2M=10", "--sim-pages", "1G=2",
                                            "--sim-page-cost", "1G=1ms", "--node", "1-2", "--page-size", "1G", "--json"}));
        CHECK(r.exit_code == 0);
        const auto j = json::parse(r.out);
        const auto& hstates = j["hstates"].as_array();
        REQUIRE(hstates.size() == 2);
        CHECK(hstates[0]["node"].as_u64() == 1);
        CHECK(hstates[1]["node"].as_u64() == 2);
        for (const auto& h : hstates) {
            CHECK(h["page_size_kb"].as_u64() == 1048576);
            CHECK(h["zeroed"].as_u64() == 2);
        }
        check_run_json(j);
    }

    TEST_CASE("--threads-per-node sets the workers: every page is still zeroed once")
    {
        const auto r = run_process(command({"--simulate", "--threads-per-node", "3", "--sim-page-cost", "2M=50us", "--json"}));
        CHECK(r.exit_code == 0);
        const auto j = json::parse(r.out);
        CHECK(j["pages_zeroed"].as_u64() == 2 * (256 + 4));
        check_run_json(j);
    }

    TEST_CASE("bad usage exits 2 with a message naming the argument")
    {
        const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
            {{"--simulate", "--sim-pages", "2X=5"}, "invalid --sim-pages value \"2X=5\""},
            {{"--simulate", "--sim-pages", "2M"}, "invalid --sim-pages value \"2M\""},
            {{"--simulate", "--sim-pages", "2M=lots"}, "invalid --sim-pages value \"2M=lots\""},
            {{"--simulate", "--sim-page-cost", "1G=fast"}, "invalid --sim-page-cost value \"1G=fast\""},
            {{"--simulate", "--sim-page-cost", "1G=70"}, "invalid --sim-page-cost value \"1G=70\""},
            {{"--simulate", "--sim-nodes", "0"}, "invalid --sim-nodes value \"0\""},
            {{"--simulate", "--threads-per-node", "0"}, "invalid --threads-per-node value \"0\""},
            {{"--simulate", "--node", "0-"}, "invalid --node value \"0-\""},
            {{"--simulate", "--page-size", "3M"}, "invalid --page-size value \"3M\""},
            {{"--simulate", "--node"}, "option --node needs a value"},
            {{"--simulate", "--json=yes"}, "option --json takes no value"},
            {{"--frobnicate"}, "unknown argument \"--frobnicate\""},
            {{"--sim-nodes", "2"}, "need --simulate"},
            {{"--simulate", "--sysfs-root", "/sys"}, "cannot be combined"},
            {{"--simulate", "--node", "7"}, "no online NUMA node 7"},
        };
        for (const auto& [args, message] : cases) {
            const auto r = run_process(command(args));
            INFO(r.err);
            CHECK(r.exit_code == 2);
            CHECK(contains(r.err, message));
            CHECK(r.out.empty());
        }
    }

    TEST_CASE("a kernel without zeroable_hugepages exits 2 and says what to do instead")
    {
        const auto r = run_process(command({"--sysfs-root", tree("this-machine"), "--json"}));
        CHECK(r.exit_code == 2);
        CHECK(contains(r.err, "zeroable_hugepages"));
        CHECK(contains(r.err, "--simulate"));
        CHECK(contains(r.err, "hugezero::pool"));
        CHECK(r.out.empty());
        // HUGEZERO_SYSFS_ROOT is the default root.
        const auto by_env = run_process(command({"--json"}), {"HUGEZERO_SYSFS_ROOT=" + tree("this-machine")});
        CHECK(by_env.exit_code == 2);
        CHECK(contains(by_env.err, "zeroable_hugepages"));
    }

    TEST_CASE("a malformed sysfs exits 2 naming the file and showing its content")
    {
        const auto r = run_process(command({"--sysfs-root", tree("malformed-node-mask"), "--dry-run"}));
        CHECK(r.exit_code == 2);
        CHECK(contains(r.err, tree("malformed-node-mask") + "/devices/system/node/"));
        CHECK(contains(r.err, "content: \""));
        const auto missing = run_process(command({"--sysfs-root", "/nonexistent/sysfs"}));
        CHECK(missing.exit_code == 2);
        CHECK(contains(missing.err, "/nonexistent/sysfs"));
    }

    TEST_CASE("an I/O error while zeroing exits 1 with status error")
    {
        // A patched kernel's tree whose zeroable_hugepages can be read but not written: it
        // stands for a read-only sysfs attribute (open for writing fails with EACCES, even for
        // root), which a real one is.
        const std::string read_only_attribute = "/sys/kernel/mm/transparent_hugepage/hpage_pmd_size";
        HUGEZERO_SKIP_IF(::access(read_only_attribute.c_str(), R_OK) != 0, "needs " + read_only_attribute);
        hugezero::test::temp_dir root;
        std::filesystem::copy(tree("two-socket-x86"), root.path(), std::filesystem::copy_options::recursive);
        for (const char* size : {"2048kB", "1048576kB"}) {
            const auto attribute = root.path() / "devices/system/node/node0/hugepages" / (std::string("hugepages-") + size) / "zeroable_hugepages";
            std::filesystem::remove(attribute);
            std::filesystem::create_symlink(read_only_attribute, attribute);
        }
        const auto r = run_process(command({"--sysfs-root", root.path().string(), "--node", "0", "--json"}));
        CHECK(r.exit_code == 1);
        const auto j = json::parse(r.out);
        CHECK(j["status"].as_string() == "error");
        CHECK(contains(j["error"].as_string(), "Permission denied"));
        CHECK(contains(r.err, "Permission denied"));
        CHECK(j["pages_zeroed"].as_u64() == 0);
    }

    TEST_CASE("SIGINT cancels every worker: exit 130 within 300 ms, JSON status cancelled, counts consistent")
    {
        check_cancelled_by(SIGINT, 130);
    }

    TEST_CASE("SIGTERM cancels the same way and exits 143")
    {
        check_cancelled_by(SIGTERM, 143);
    }

    TEST_CASE("progress goes to stderr when it is a terminal, and --quiet silences it")
    {
        for (const bool quiet : {false, true}) {
            int terminal = -1;
            const pid_t pid = ::forkpty(&terminal, nullptr, nullptr, nullptr);
            REQUIRE(pid >= 0);
            if (pid == 0) {
                std::vector<std::string> args = command({"--simulate", "--sim-pages", "1G=8", "--sim-page-cost", "1G=150ms"});
                if (quiet)
                    args.emplace_back("--quiet");
                std::vector<char*> argv;
                for (auto& a : args)
                    argv.push_back(a.data());
                argv.push_back(nullptr);
                ::execv(argv[0], argv.data());
                ::_exit(127);
            }
            std::string output;
            char buffer[4096];
            for (;;) {
                const ssize_t n = ::read(terminal, buffer, sizeof buffer);
                if (n <= 0)
                    break; // EIO once the child has exited and closed the terminal
                output.append(buffer, static_cast<std::size_t>(n));
            }
            int status = 0;
            ::waitpid(pid, &status, 0);
            ::close(terminal);
            INFO(output);
            CHECK(WIFEXITED(status));
            CHECK(WEXITSTATUS(status) == 0);
            CHECK(contains(output, "complete: 528 pages")); // the summary, on stdout
            CHECK(contains(output, "GB/s"));
            CHECK(contains(output, "ETA") == !quiet);
            CHECK(contains(output, "GiB) zeroed") == !quiet);
            CHECK(contains(output, "to go") == !quiet);
        }
    }
}
