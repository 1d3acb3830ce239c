// hugezerod's configuration file, read without a daemon (no root needed): every key, the
// errors, the check against the machine, and `hugezerod --check`.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>

#include "hugezerod/config_file.hpp"
#include "support/subprocess.hpp"
#include "support/temp_dir.hpp"

using hugezero::node_id;

namespace {

std::string config_error_of(const std::string& text)
{
    try {
        (void)hugezerod::parse_config(text, "test.conf");
    } catch (const hugezerod::config_error& e) {
        return e.what();
    }
    return "(no error)";
}

} // namespace

TEST_SUITE("daemon")
{
    TEST_CASE("a configuration file sets every key, and a reservoir per section")
    {
        const auto c = hugezerod::parse_config("# comment\n[daemon]\nsocket = /run/x.sock\nsocket_mode = 0600\nsocket_group = root\n"
                                               "metrics = tcp:127.0.0.1:9464\nallow_users = root 1000\nallow_groups = 0\n"
                                               "ready = listening\nmax_clients = 8\nmax_leases_per_client = 2\nprezero = off\n"
                                               "admin_users = root 0\nplace_directories = /dev/hugepages/ram, /srv/hp\n"
                                               "[pool]\nworkers_per_node = 2\nrefill_rate = 1G\nbatch = 8M\n"
                                               "quiet_after_lease = 100ms\nretry_period = 1s\n"
                                               "[reservoir]\nnode = 0\npage = 2M\ntarget = 8G\nfloor_pages = 16\n"
                                               "[reservoir]\nnode = 1\npage = 1G\ntarget = 4G\nchunk = 2G\n"
                                               "cgroup = /sys/fs/cgroup/vms\ndirectory = /dev/hugepages-1G/hz\n",
                                               "test.conf");
        CHECK(c.socket == "/run/x.sock");
        CHECK(c.socket_mode == 0600);
        CHECK(c.socket_group == std::optional<gid_t>(0));
        CHECK(c.metrics == "tcp:127.0.0.1:9464");
        CHECK(c.allow_users == std::vector<uid_t>{0, 1000});
        CHECK(c.allow_groups == std::vector<gid_t>{0});
        CHECK(c.admin_users == std::vector<uid_t>{0, 0});
        CHECK(c.place_directories == std::vector<std::string>{"/dev/hugepages/ram", "/srv/hp"});
        CHECK(c.ready == hugezerod::ready_when::listening);
        CHECK(c.max_clients == 8);
        CHECK(c.max_leases_per_client == 2);
        CHECK_FALSE(c.prezero);
        CHECK(c.pool.workers_per_node == 2);
        CHECK(c.pool.refill_bytes_per_second == std::uint64_t{1} << 30);
        CHECK(c.pool.batch_bytes == std::uint64_t{8} << 20);
        CHECK(c.pool.quiet_after_lease == std::chrono::milliseconds(100));
        REQUIRE(c.pool.reservoirs.size() == 2);
        CHECK(c.pool.reservoirs[0].which == hugezero::hstate{node_id(0), hugezero::page_2mib});
        CHECK(c.pool.reservoirs[0].target_bytes == std::uint64_t{8} << 30);
        CHECK(c.pool.reservoirs[0].floor_pages == 16);
        CHECK(c.pool.reservoirs[1].which == hugezero::hstate{node_id(1), hugezero::page_1gib});
        CHECK(c.pool.reservoirs[1].chunk_bytes == std::uint64_t{2} << 30);
        CHECK(c.pool.reservoirs[1].cgroup == "/sys/fs/cgroup/vms");
        CHECK(c.reservoirs[1].line == 26);
        CHECK_FALSE(c.pool.reservoirs[0].recycle); // the default
    }

    TEST_CASE("the tenant-isolation keys: recycling, trusted users, per-user limits, the idle timeout")
    {
        const auto c = hugezerod::parse_config("[daemon]\ntrusted_users = root 1000\nmax_clients_per_user = 3\nmax_leases_per_user = 9\n"
                                               "max_cold_acquires_per_user = 2\nidle_timeout = 5s\n"
                                               "[reservoir]\nnode = 0\npage = 2M\ntarget = 8G\nrecycle = trusted-peers\n"
                                               "[reservoir]\nnode = 1\npage = 2M\ntarget = 8G\nrecycle = off\n",
                                               "test.conf");
        CHECK(c.trusted_users == std::vector<uid_t>{0, 1000});
        CHECK(c.max_clients_per_user == 3);
        CHECK(c.max_leases_per_user == 9);
        CHECK(c.max_cold_acquires_per_user == 2);
        CHECK(c.idle_timeout == std::chrono::seconds(5));
        CHECK(c.pool.reservoirs[0].recycle);
        CHECK_FALSE(c.pool.reservoirs[1].recycle);
        const auto defaults = hugezerod::parse_config("", "test.conf");
        CHECK(defaults.trusted_users.empty());
        CHECK(defaults.max_clients_per_user == 64);
        CHECK(defaults.max_leases_per_user == 256);
        CHECK(defaults.max_cold_acquires_per_user == 1);
        CHECK(defaults.idle_timeout == std::chrono::seconds(60));
        CHECK(config_error_of("[reservoir]\nrecycle = on\n") == "test.conf:2: recycle: \"on\": expected off or trusted-peers");
        CHECK(config_error_of("[daemon]\nmax_cold_acquires_per_user = 0\n")
              == "test.conf:2: max_cold_acquires_per_user: \"0\": expected a number from 1 to 1024");
    }

    TEST_CASE("configuration errors name the file, the line and the key")
    {
        CHECK(config_error_of("[daemon]\nsocket = relative\n") == "test.conf:2: socket: \"relative\": expected an absolute path");
        CHECK(config_error_of("[reservoir]\n\ntarget = 8X\n")
              == "test.conf:3: target: \"8X\": unknown unit \"X\" (use K, M, G or T; e.g. 512M, 8G)");
        CHECK(config_error_of("[reservoir]\npage = 3M\n").find("test.conf:2: page: \"3M\":") == 0);
        CHECK(config_error_of("[daemon]\nplace_directories = /a relative\n")
              == "test.conf:2: place_directories: \"/a relative\": \"relative\": expected absolute paths without empty, . or .. components");
        CHECK(config_error_of("[daemon]\nplace_directories = /a/../b\n").find("test.conf:2: place_directories: ") == 0);
        CHECK(config_error_of("[daemon]\nsockte = /x\n").find("test.conf:2: sockte: unknown key in [daemon] (known: ") == 0);
        CHECK(config_error_of("[pools]\n") == "test.conf:1: unknown section [pools] (use [daemon], [pool] or [reservoir])");
        CHECK(config_error_of("target = 1G\n") == "test.conf:1: target: a key before any section ([daemon], [pool] or [reservoir])");
        CHECK(config_error_of("[daemon]\nmax_clients = 1\nmax_clients = 2\n") == "test.conf:3: max_clients: given twice in this section");
        CHECK(config_error_of("[daemon]\nallow_users = no-such-user-here\n")
              == "test.conf:2: allow_users: \"no-such-user-here\": no such user \"no-such-user-here\"");
        CHECK(config_error_of("[daemon]\nmetrics = tcp\n").find("test.conf:2: metrics:") == 0);
        CHECK(config_error_of("[daemon]\nsocket_mode = 0999\n").find("test.conf:2: socket_mode:") == 0);
        CHECK(config_error_of("[pool]\nbatch = 0\n") == "test.conf:2: batch: \"0\": must be at least one page");
        CHECK(config_error_of("[pool]\nnonsense\n") == "test.conf:2: expected key = value, got \"nonsense\"");
        CHECK(config_error_of("[daemon\n") == "test.conf:1: a section header is [daemon], [pool] or [reservoir]");
        CHECK(config_error_of("[daemon]\n[pool]\n[daemon]\n") == "test.conf:3: a second [daemon] section (only [reservoir] repeats)");
    }

    TEST_CASE("a configuration that does not fit the machine names the reservoir's line")
    {
        const auto c = hugezerod::parse_config("[reservoir]\nnode = 0\npage = 2M\n\n[reservoir]\nnode = 0\npage = 2M\n", "m.conf");
        try {
            hugezerod::check_against(c, hugezero::machine::open());
            FAIL("a second reservoir for the same hstate was accepted");
        } catch (const hugezerod::config_error& e) {
            CHECK(std::string(e.what()) == "m.conf:5: [reservoir]: a second reservoir for node0/2M (the first is at line 1)");
        }
        const auto far = hugezerod::parse_config("[reservoir]\nnode = 4000\npage = 2M\n", "m.conf");
        CHECK_THROWS_WITH_AS(hugezerod::check_against(far, hugezero::machine::open()), doctest::Contains("m.conf:1: [reservoir]: "),
                             hugezerod::config_error);
    }

    TEST_CASE("hugezerod --check prints the configuration, or the error with exit status 2")
    {
        hugezero::test::temp_dir dir;
        const auto good = (dir.path() / "good.conf").string();
        const auto bad = (dir.path() / "bad.conf").string();
        std::ofstream(good) << "[reservoir]\nnode = 0\npage = 2M\ntarget = 64M\n";
        std::ofstream(bad) << "[reservoir]\nnode = 0\npage = 2M\ntarget = lots\n";
        const auto ok = hugezero::test::run_process({HUGEZERO_DAEMON, "--config", good, "--check"});
        CHECK(ok.exit_code == 0);
        CHECK(ok.out.find("node0/2M: target 64M") != std::string::npos);
        const auto refused = hugezero::test::run_process({HUGEZERO_DAEMON, "--config", bad, "--check"});
        CHECK(refused.exit_code == 2);
        CHECK(refused.err == "hugezerod: error: " + bad + ":4: target: \"lots\": expected a size such as 8G, 512M or 1048576\n");
        const auto missing = hugezero::test::run_process({HUGEZERO_DAEMON, "--config", (dir.path() / "none").string(), "--check"});
        CHECK(missing.exit_code == 2);
        CHECK(missing.err.find("none: cannot read it: No such file or directory") != std::string::npos);
        const auto unknown = hugezero::test::run_process({HUGEZERO_DAEMON, "--no-such-option"});
        CHECK(unknown.exit_code == 2);
        const auto flag = hugezero::test::run_process({HUGEZERO_DAEMON, "--config", good, "--metrics", "bogus", "--check"});
        CHECK(flag.exit_code == 2);
        CHECK(flag.err.find("--metrics: \"bogus\": expected unix:/PATH, tcp:127.0.0.1:PORT or off") != std::string::npos);
        const auto help = hugezero::test::run_process({HUGEZERO_DAEMON, "--help"});
        CHECK(help.exit_code == 0);
        CHECK(help.out.find("--check") != std::string::npos);
    }

    TEST_CASE("hugezerod --check refuses place_directories that are missing or on no named reservoir's mount")
    {
        hugezero::test::temp_dir dir;
        std::filesystem::create_directories(dir.path() / "pool");
        std::filesystem::create_directories(dir.path() / "ram");
        const auto conf = (dir.path() / "place.conf").string();
        const auto check = [&](const std::string& place, const std::string& directory) {
            std::ofstream(conf) << "[daemon]\nplace_directories = " << place << "\n[reservoir]\nnode = 0\npage = 2M\n" << directory;
            return hugezero::test::run_process({HUGEZERO_DAEMON, "--config", conf, "--check"});
        };
        const auto ok = check((dir.path() / "ram").string(), "directory = " + (dir.path() / "pool").string() + "\n");
        CHECK_MESSAGE(ok.exit_code == 0, ok.err);
        CHECK(ok.out.find("  leases may be placed beneath " + (dir.path() / "ram").string() + " (admin_users only)") != std::string::npos);
        const auto missing = check((dir.path() / "absent").string(), "directory = " + (dir.path() / "pool").string() + "\n");
        CHECK(missing.exit_code == 2);
        CHECK(missing.err == "hugezerod: error: " + conf + ": place_directories: " + (dir.path() / "absent").string()
                                 + " is not a directory (libvirt's memory_backing_dir: make it)\n");
        const auto memfd = check((dir.path() / "ram").string(), "");
        CHECK(memfd.exit_code == 2);
        CHECK(memfd.err.find("is on no named reservoir's mount") != std::string::npos);
    }

    TEST_CASE("every error of a file is reported at once, a line each, and the keys under a refused header are not read")
    {
        try {
            (void)hugezerod::parse_config("[daemon]\nsockte = /x\nmax_clients = 0\n[bogus]\nx = 1\n[pool]\nbatch = 0\n", "m.conf");
            FAIL("no error");
        } catch (const hugezerod::config_error& e) {
            CHECK(std::string(e.what()).find("m.conf:2: sockte: unknown key in [daemon] (known: ") == 0);
            CHECK(std::string(e.what()).find("\nm.conf:3: max_clients: \"0\": expected a number from 1 to 65536\n"
                                             "m.conf:4: unknown section [bogus] (use [daemon], [pool] or [reservoir])\n"
                                             "m.conf:7: batch: \"0\": must be at least one page")
                  != std::string::npos);
        }
        hugezero::test::temp_dir dir;
        const auto conf = (dir.path() / "two.conf").string();
        std::ofstream(conf) << "[pool]\nbatch = 0\nretry_period = 5\n";
        const auto check = hugezero::test::run_process({HUGEZERO_DAEMON, "--config", conf, "--check"});
        CHECK(check.exit_code == 2);
        CHECK(check.err == "hugezerod: error: " + conf + ":2: batch: \"0\": must be at least one page\nhugezerod: error: " + conf
                               + ":3: retry_period: \"5\": a unit is required (ns, us, ms, s or min)\n");
    }

    TEST_CASE("hugezerod --check warns when the node's free pages cannot cover a target, and when there is no reservoir")
    {
        hugezero::test::temp_dir dir;
        const auto conf = (dir.path() / "big.conf").string();
        // 1 TiB of 2 MiB pages: no test machine has that many free.
        std::ofstream(conf) << "[daemon]\nsocket = /run/x.sock\n\n[reservoir]\nnode = 0\npage = 2M\ntarget = 1T\n";
        const auto big = hugezero::test::run_process({HUGEZERO_DAEMON, "--config", conf, "--check"});
        CHECK_MESSAGE(big.exit_code == 0, big.err); // a warning: the pages may be reserved before the daemon starts
        CHECK_MESSAGE(big.out.find(conf + ":4: warning: [reservoir] node0 2M: its target needs 524288 free pages, and the node has ")
                          != std::string::npos,
                      big.out);
        CHECK(big.out.find("reserve ") != std::string::npos);
        std::ofstream(conf) << "[daemon]\nsocket = /run/x.sock\n";
        const auto none = hugezero::test::run_process({HUGEZERO_DAEMON, "--config", conf, "--check"});
        CHECK(none.exit_code == 0);
        CHECK_MESSAGE(none.out.find(conf + ": warning: no [reservoir]: every lease will be allocated and zeroed when asked for (cold)")
                          != std::string::npos,
                      none.out);
    }

    TEST_CASE("hugezerod.conf(5) documents every key of each section, and no other")
    {
        // The man page's source lists each key as a line "*key*" under "## [section]".
        std::ifstream page(std::string(HUGEZERO_SOURCE_DIR) + "/docs/man/hugezerod.conf.5.scd");
        REQUIRE(page);
        std::map<std::string, std::set<std::string>> documented;
        std::string section, line;
        while (std::getline(page, line)) {
            if (line.rfind("## [", 0) == 0)
                section = line.substr(3);
            else if (line.rfind("# ", 0) == 0)
                section.clear();
            else if (!section.empty() && line.size() > 2 && line.front() == '*' && line.back() == '*')
                documented[section].insert(line.substr(1, line.size() - 2));
        }
        hugezerod::config c;
        hugezero::pool_options pool;
        hugezero::reservoir_options reservoir;
        const auto joined = [](const std::set<std::string>& keys) {
            std::string out;
            for (const auto& key : keys)
                out += key + ' ';
            return out;
        };
        const auto names = [&](const auto& keys) {
            std::set<std::string> out;
            for (const auto& [key, set] : keys)
                out.insert(key);
            return joined(out);
        };
        CHECK(joined(documented["[daemon]"]) == names(hugezerod::detail_config::daemon_keys(c)));
        CHECK(joined(documented["[pool]"]) == names(hugezerod::detail_config::pool_keys(pool)));
        CHECK(joined(documented["[reservoir]"]) == names(hugezerod::detail_config::reservoir_keys(reservoir)));
        CHECK(documented.size() == 3);
    }
}
