// The zero_all_nodes contract (README, "zero_all_nodes"), checked by running the program: its
// JSON, its exit codes, its usage errors, its progress, and SIGINT/SIGTERM interrupting it.
// Built twice: against `--simulate`, and (emulator build) against the same simulated kernel
// mounted through FUSE and passed as `--sysfs-root`, where the program does real I/O and a
// signal interrupts writes really blocked in the kernel. The contract is the same.
#include <doctest/doctest.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <optional>
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

#include <hugezero/page_size.hpp>

#include "zero_all_nodes/cli.hpp"

#include <hugezero/sim/builder.hpp>

#include "support/test_machine.hpp"

#ifndef ZERO_ALL_NODES
#error "ZERO_ALL_NODES must name the zero_all_nodes executable"
#endif

using hugezero::test::contains;
using hugezero::test::run_process;
using namespace std::chrono_literals;
namespace json = hugezero::test::json;

namespace {

// zero_all_nodes with @p args, whatever the machine (usage, golden trees).
std::vector<std::string> command(std::vector<std::string> args)
{
    args.insert(args.begin(), ZERO_ALL_NODES);
    return args;
}

std::string tree(const std::string& name) { return std::string(HUGEZERO_TEST_DATA) + "/sysfs/" + name; }

// Where zero_all_nodes gets its machine: `--simulate` with the given --sim-* options or, run
// through the emulator, the kernel those options describe (as zero_all_nodes would build it),
// mounted through FUSE for the life of this object and named with `--sysfs-root`.
class machine_source {
public:
    explicit machine_source(std::vector<std::string> sim_args = {}) : sim_args_(std::move(sim_args))
    {
        if (!hugezero::test::through_emulator())
            return;
        std::vector<std::string> parsed_args{"--simulate"};
        parsed_args.insert(parsed_args.end(), sim_args_.begin(), sim_args_.end());
        const auto o = zero_all_nodes::parse_arguments(parsed_args);
        kernel_ = zero_all_nodes::simulated_machine(o).build();
        mount_.emplace(kernel_);
    }

    // The program's command line: the source, then @p args.
    [[nodiscard]] std::vector<std::string> command(const std::vector<std::string>& args) const
    {
        std::vector<std::string> all{ZERO_ALL_NODES};
        if (mount_) {
            all.insert(all.end(), {"--sysfs-root", mount_->path()});
        } else {
            all.emplace_back("--simulate");
            all.insert(all.end(), sim_args_.begin(), sim_args_.end());
        }
        all.insert(all.end(), args.begin(), args.end());
        return all;
    }

    // Through the emulator, the kernel's own account must agree with the run's JSON: what it
    // zeroed through writes is what the program reports, hstate by hstate.
    void check_against_kernel(const json::value& j) const
    {
        if (!kernel_)
            return;
        for (const auto& h : j["hstates"].as_array()) {
            const hugezero::hstate which{hugezero::node_id(static_cast<unsigned>(h["node"].as_u64())),
                                         hugezero::page_size::from_kib(h["page_size_kb"].as_u64())};
            INFO(which);
            CHECK(h["zeroed"].as_u64() == kernel_->statistics(which).pages_zeroed_by_writes);
            CHECK(h["zeroable_after"].as_u64() == kernel_->zeroable(which));
            CHECK(kernel_->counts(which).zeroing == 0);
        }
    }

    // Through the emulator: the kernel behind the mount, and the mount.
    [[nodiscard]] const std::shared_ptr<hugezero::sim::kernel>& kernel() const { return kernel_; }
    [[nodiscard]] const hugezero::test::mounted_kernel& mount() const { return mount_.value(); }

private:
    std::vector<std::string> sim_args_;
    std::shared_ptr<hugezero::sim::kernel> kernel_;
    std::optional<hugezero::test::mounted_kernel> mount_;
};

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

// Starts a long run of @p source, signals it once it is ready, and checks the cancellation
// contract: the exit code, the latency (@p max_latency, plus the scheduling slack of this
// build: sanitizers slow the exit path), a JSON status "cancelled" with consistent counts.
// Returns the JSON.
json::value check_cancelled_by(const machine_source& source, int signo, int expected_exit,
                               std::chrono::milliseconds max_latency, std::uint64_t total_pages)
{
    hugezero::test::child_process child(source.command({"--json"}));
    REQUIRE(hugezero::test::wait_until([&] { return child.blocks_signal(signo); }));
    // Let it get well into zeroing (the run takes seconds); correctness does not depend on when.
    std::this_thread::sleep_for(250ms);
    const auto signalled_at = std::chrono::steady_clock::now();
    child.send(signo);
    const auto result = child.wait(10s);
    const auto latency = std::chrono::steady_clock::now() - signalled_at;
    MESSAGE("exited " << std::chrono::duration<double, std::milli>(latency).count() << " ms after the signal");
    INFO(result.err);
    CHECK(latency < max_latency + hugezero::test::scheduling_slack);
    CHECK(result.exit_code == expected_exit);
    const auto j = json::parse(result.out);
    CHECK(j["status"].as_string() == "cancelled");
    check_run_json(j);
    source.check_against_kernel(j);
    std::uint64_t zeroed = 0;
    for (const auto& h : j["hstates"].as_array())
        zeroed += h["zeroed"].as_u64();
    CHECK(zeroed > 0);
    CHECK(j["pages_zeroed"].as_u64() < total_pages);
    return j;
}

} // namespace

TEST_SUITE("cli")
{
    // Usage does not depend on the machine: checked once.
    TEST_CASE("--help prints the usage and exits 0" * hugezero::test::not_through_emulator)
    {
        const auto r = run_process(command({"--help"}));
        CHECK(r.exit_code == 0);
        CHECK(contains(r.out, "Usage: zero_all_nodes"));
        for (const char* option : {"--simulate", "--sim-nodes", "--sim-pages", "--sim-page-cost", "--sysfs-root", "--node",
                                   "--page-size", "--threads-per-node", "--dry-run", "--json", "--quiet"})
            CHECK(contains(r.out, option));
    }

    TEST_CASE("the default simulated machine: --json zeroes every hstate and reports it")
    {
        const machine_source source;
        const auto r = run_process(source.command({"--json"}));
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
        // At least one 1 GiB page's 70 ms went by, whatever the parallelism.
        CHECK(j["seconds"].as_number() >= 0.070);
        CHECK(j["seconds"].as_number() < 60);
        check_run_json(j);
        source.check_against_kernel(j);
        CHECK(r.err.empty()); // stderr is not a terminal: no progress
    }

    TEST_CASE("--dry-run --json describes the machine and zeroes nothing")
    {
        const machine_source source({"--sim-nodes", "1", "--sim-pages", "1G=0"});
        const auto r = run_process(source.command({"--dry-run", "--json"}));
        CHECK(r.exit_code == 0);
        const std::string cpus = json::parse(r.out)["nodes"].as_array().at(0)["cpus"].as_string();
        CHECK(r.out
              == R"({"status":"dry-run","nodes":[{"node":0,"cpus":")" + cpus
                     + R"(","hstates":[{"page_size_kb":2048,"nr":256,"free":256,"surplus":0,"zeroable":256}]}]}
)");
    }

    // A golden tree on disk: nothing to run through FUSE.
    TEST_CASE("--dry-run on a stock kernel reports zeroable as null" * hugezero::test::not_through_emulator)
    {
        const auto r = run_process(command({"--sysfs-root", tree("this-machine"), "--dry-run", "--json"}));
        CHECK(r.exit_code == 0);
        const auto j = json::parse(r.out);
        REQUIRE_FALSE(j["nodes"].as_array().empty());
        for (const auto& node : j["nodes"].as_array()) {
            REQUIRE_FALSE(node["hstates"].as_array().empty());
            for (const auto& h : node["hstates"].as_array())
                CHECK(h["zeroable"].is_null());
        }
    }


    TEST_CASE("--sim-* options shape the simulated machine: --node and --page-size select")
    {
        const machine_source source({"--sim-nodes", "3", "--sim-pages", "2M=10", "--sim-pages", "1G=2", "--sim-page-cost", "1G=1ms"});
        const auto r = run_process(source.command({"--node", "1-2", "--page-size", "1G", "--json"}));
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
        source.check_against_kernel(j);
    }

    TEST_CASE("--threads-per-node sets the workers: every page is still zeroed once")
    {
        const machine_source source({"--sim-page-cost", "2M=50us"});
        const auto r = run_process(source.command({"--threads-per-node", "3", "--json"}));
        CHECK(r.exit_code == 0);
        const auto j = json::parse(r.out);
        CHECK(j["pages_zeroed"].as_u64() == 2 * (256 + 4));
        // At least one 1 GiB page's 70 ms went by, whatever the parallelism.
        CHECK(j["seconds"].as_number() >= 0.070);
        CHECK(j["seconds"].as_number() < 60);
        check_run_json(j);
        source.check_against_kernel(j);
    }

    // Usage, stock kernels and malformed trees: golden trees, checked once.
    TEST_CASE("SIZE and DURATION accept every documented spelling" * hugezero::test::not_through_emulator)
    {
        using zero_all_nodes::parse_arguments;
        const auto o = parse_arguments({"--simulate", "--sim-pages", "2048kB=3", "--sim-pages", "1048576kB=2",
                                        "--sim-page-cost", "2M=150us", "--sim-page-cost", "1G=1s"});
        CHECK(o.sim_pages.at(hugezero::page_2mib) == 3);
        CHECK(o.sim_pages.at(hugezero::page_1gib) == 2);
        CHECK(o.sim_page_costs.at(hugezero::page_2mib) == 150us);
        CHECK(o.sim_page_costs.at(hugezero::page_1gib) == 1s);
        CHECK(zero_all_nodes::parse_duration("70ms") == 70ms);
        CHECK(zero_all_nodes::parse_duration("250ns") == 250ns);
        CHECK(zero_all_nodes::parse_duration("2min") == 120s);
        CHECK_THROWS_AS((void)zero_all_nodes::parse_duration("70"), std::invalid_argument);
        CHECK_THROWS_AS((void)zero_all_nodes::parse_duration("ms"), std::invalid_argument);
        CHECK_THROWS_AS((void)zero_all_nodes::parse_duration("99999999999999999999s"), std::invalid_argument);
        const auto removed = parse_arguments({"--simulate", "--sim-pages", "2M=0"});
        CHECK(removed.sim_pages.count(hugezero::page_2mib) == 0);
    }

    TEST_CASE("bad usage exits 2 with a message naming the argument" * hugezero::test::not_through_emulator)
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

    TEST_CASE("a kernel without zeroable_hugepages exits 2 and says what to do instead" * hugezero::test::not_through_emulator)
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

    TEST_CASE("a malformed sysfs exits 2 naming the file and showing its content" * hugezero::test::not_through_emulator)
    {
        const auto r = run_process(command({"--sysfs-root", tree("malformed-node-mask"), "--dry-run"}));
        CHECK(r.exit_code == 2);
        CHECK(contains(r.err, tree("malformed-node-mask") + "/devices/system/node/"));
        CHECK(contains(r.err, "content: \""));
        const auto missing = run_process(command({"--sysfs-root", "/nonexistent/sysfs"}));
        CHECK(missing.exit_code == 2);
        CHECK(contains(missing.err, "/nonexistent/sysfs"));
    }

    TEST_CASE("an I/O error while zeroing exits 1 with status error" * hugezero::test::not_through_emulator)
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
    TEST_CASE("an I/O error while zeroing exits 1 with status error" * hugezero::test::only_through_emulator)
    {
        // The kernel fails every write to node 0's 1 GiB pages with EIO.
        const machine_source source({"--sim-nodes", "1", "--sim-pages", "2M=0", "--sim-page-cost", "1G=10ms"});
        const hugezero::hstate node0_1g{hugezero::node_id(0), hugezero::page_1gib};
        source.kernel()->fail_next(hugezero::detail::paths::join(hugezero::detail::paths::node_hstate_dir(node0_1g),
                                                                 "zeroable_hugepages"),
                                   hugezero::sim::operation::write, EIO, 1000);
        const auto r = run_process(source.command({"--json"}));
        CHECK(r.exit_code == 1);
        const auto j = json::parse(r.out);
        CHECK(j["status"].as_string() == "error");
        CHECK(contains(j["error"].as_string(), "node0/1GiB: Input/output error"));
        CHECK(contains(r.err, "Input/output error"));
        check_run_json(j);
        source.check_against_kernel(j);
    }

    TEST_CASE("an error the service retries does not end the run: exit 0, and a warning" * hugezero::test::only_through_emulator)
    {
        // Before, any error count ended the run with exit 1, though the service would have
        // retried the write after its back-off and zeroed everything.
        const machine_source source({"--sim-nodes", "1", "--sim-pages", "1G=0"});
        const hugezero::hstate node0_2m{hugezero::node_id(0), hugezero::page_2mib};
        source.kernel()->fail_next(hugezero::detail::paths::join(hugezero::detail::paths::node_hstate_dir(node0_2m),
                                                                 "zeroable_hugepages"),
                                   hugezero::sim::operation::write, EIO, 1);
        const auto r = run_process(source.command({"--json"}));
        INFO(r.err);
        CHECK(r.exit_code == 0);
        const auto j = json::parse(r.out);
        CHECK(j["status"].as_string() == "complete");
        const auto& hstate = j["hstates"].as_array().at(0);
        CHECK(hstate["errors"].as_u64() == 1);
        CHECK(hstate["zeroable_after"].as_u64() == 0);
        CHECK(contains(r.err, "warning: node0/2MiB: 1 error, retried (last: Input/output error)"));
        check_run_json(j);
        source.check_against_kernel(j);
    }

    TEST_CASE("workers that cannot start exit 1 with status error, not 2")
    {
        // SIGURG ignored by whoever started the program (the disposition survives exec): the
        // service refuses to take the signal over, and start() fails with EBUSY.
        const machine_source source({"--sim-nodes", "1"});
        std::vector<std::string> argv{"/bin/sh", "-c", "trap '' URG; exec \"$@\"", "sh"};
        for (const auto& arg : source.command({"--json"}))
            argv.push_back(arg);
        const auto r = run_process(argv);
        INFO(r.err);
        CHECK(r.exit_code == 1);
        const auto j = json::parse(r.out);
        CHECK(j["status"].as_string() == "error");
        CHECK(contains(j["error"].as_string(), "cannot start the pre-zeroing workers"));
        CHECK(contains(j["error"].as_string(), "SIGURG"));
        CHECK(j["pages_zeroed"].as_u64() == 0);
        check_run_json(j);
    }

    TEST_CASE("SIGINT cancels every worker: exit 130 within 300 ms, JSON status cancelled, counts consistent")
    {
        const machine_source source({"--sim-pages", "1G=40", "--sim-page-cost", "1G=100ms"});
        check_cancelled_by(source, SIGINT, 130, 300ms, 2 * (40 + 256));
    }

    TEST_CASE("SIGTERM cancels the same way and exits 143")
    {
        const machine_source source({"--sim-pages", "1G=40", "--sim-page-cost", "1G=100ms"});
        check_cancelled_by(source, SIGTERM, 143, 300ms, 2 * (40 + 256));
    }

    TEST_CASE("SIGINT interrupts writes in the middle of a batch: exit within one page's time + 50 ms")
    {
        // 2 MiB pages of 3 ms: each write asks for a batch of 32 pages (96 ms), so the signal
        // finds writes in the middle and must cut them short.
        const machine_source source({"--sim-pages", "1G=0", "--sim-pages", "2M=100000", "--sim-page-cost", "2M=3ms"});
        (void)check_cancelled_by(source, SIGINT, 130, 3ms + 50ms, 2 * 100000);
        if (hugezero::test::through_emulator()) {
            // The signal really reached writes blocked in the kernel's FUSE code: FUSE_INTERRUPT.
            CHECK(source.mount().interrupted_writes() >= 1);
            std::uint64_t interrupted = 0;
            for (const auto& h : source.kernel()->hstates())
                interrupted += source.kernel()->statistics(h).writes_interrupted;
            CHECK(interrupted >= 1);
        }
    }

    TEST_CASE("progress goes to stderr when it is a terminal, and --quiet silences it")
    {
        for (const bool quiet : {false, true}) {
            const machine_source source({"--sim-pages", "1G=8", "--sim-page-cost", "1G=150ms"});
            // Built before fork(): the child of a threaded process may only call async-signal-safe functions.
            std::vector<std::string> args = source.command(quiet ? std::vector<std::string>{"--quiet"} : std::vector<std::string>{});
            std::vector<char*> argv;
            for (auto& a : args)
                argv.push_back(a.data());
            argv.push_back(nullptr);
            int terminal = -1;
            const pid_t pid = ::forkpty(&terminal, nullptr, nullptr, nullptr);
            REQUIRE(pid >= 0);
            if (pid == 0) {
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
