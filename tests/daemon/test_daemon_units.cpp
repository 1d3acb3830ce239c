// hugezerod's configuration file and protocol, parsed without a daemon (no root needed).
#include <doctest/doctest.h>

#include <string>

#include "hugezerod/config.hpp"
#include "hugezerod/protocol.hpp"
#include "support/subprocess.hpp"
#include "support/temp_dir.hpp"

namespace protocol = hugezerod::protocol;
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

protocol::parse_error request_error_of(std::string_view text)
{
    auto r = protocol::parse_request(text);
    if (auto* e = std::get_if<protocol::parse_error>(&r))
        return *e;
    return {0, "(parsed)"};
}

} // namespace

TEST_SUITE("daemon")
{
    TEST_CASE("a configuration file sets every key, and a reservoir per section")
    {
        const auto c = hugezerod::parse_config("# comment\n[daemon]\nsocket = /run/x.sock\nsocket_mode = 0600\nsocket_group = root\n"
                                               "metrics = tcp:127.0.0.1:9464\nallow_users = root 1000\nallow_groups = 0\n"
                                               "ready = listening\nmax_clients = 8\nmax_leases_per_client = 2\nprezero = off\n"
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
        CHECK(c.reservoirs[1].line == 24);
    }

    TEST_CASE("configuration errors name the file, the line and the key")
    {
        CHECK(config_error_of("[daemon]\nsocket = relative\n") == "test.conf:2: socket: \"relative\": expected an absolute path");
        CHECK(config_error_of("[reservoir]\n\ntarget = 8X\n")
              == "test.conf:3: target: \"8X\": unknown unit \"X\" (use K, M, G or T; e.g. 512M, 8G)");
        CHECK(config_error_of("[reservoir]\npage = 3M\n").find("test.conf:2: page: \"3M\":") == 0);
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
            CHECK(std::string(e.what()) == "m.conf:5: [reservoir]: a second reservoir for node0/2MiB (the first is at line 1)");
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
        CHECK(ok.out.find("node0/2MiB: target 67108864 bytes") != std::string::npos);
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

    TEST_CASE("requests parse, and print back as they parse")
    {
        auto r = protocol::parse_request("hugezero/1 acquire node=1 page=1G bytes=8589934592 name=vm-7 max_cold=0");
        REQUIRE(std::holds_alternative<protocol::request>(r));
        const auto& a = std::get<protocol::acquire_request>(std::get<protocol::request>(r));
        CHECK(a.node == node_id(1));
        CHECK(a.page == hugezero::page_1gib);
        CHECK(a.bytes == std::uint64_t{8} << 30);
        CHECK(a.name == "vm-7");
        CHECK(a.max_cold_pages == std::optional<std::uint64_t>(0));
        const auto again = protocol::parse_request(protocol::format(std::get<protocol::request>(r)));
        CHECK(std::get<protocol::acquire_request>(std::get<protocol::request>(again)).name == "vm-7");
        CHECK(std::holds_alternative<protocol::request>(protocol::parse_request("hugezero/1 status\n")));
        const auto g = protocol::parse_request("hugezero/1 release lease=42");
        CHECK(std::get<protocol::release_request>(std::get<protocol::request>(g)).lease == 42);
        const auto h = protocol::parse_request("hugezero/1 hold");
        REQUIRE(std::holds_alternative<protocol::request>(h));
        CHECK(std::holds_alternative<protocol::hold_request>(std::get<protocol::request>(h)));
        CHECK(protocol::format(protocol::hold_request{}) == "hugezero/1 hold");
        CHECK(protocol::format(protocol::status_request{}) == "hugezero/1 status");
        CHECK(protocol::verb_of(protocol::hold_request{}) == "hold");
        CHECK(protocol::verb_of(protocol::release_request{7}) == "release");
    }

    TEST_CASE("malformed requests are refused with their errno and a sentence")
    {
        CHECK(request_error_of("hugezero/2 status").code == EPROTO);
        CHECK(request_error_of("hugezero/2 status").message == "this daemon speaks hugezero/1, not hugezero/2");
        CHECK(request_error_of("GET / HTTP/1.0").code == EPROTO);
        CHECK(request_error_of(std::string(2000, 'x')).code == EMSGSIZE);
        CHECK(request_error_of(std::string("hugezero/1 status\0", 18)).code == EBADMSG);
        CHECK(request_error_of("hugezero/1  status").code == EBADMSG);
        CHECK(request_error_of("hugezero/1 status ").code == EBADMSG);
        CHECK(request_error_of("hugezero/1").code == EBADMSG);
        CHECK(request_error_of("hugezero/1 eat").message == "unknown verb \"eat\" (acquire, release, status or hold)");
        CHECK(request_error_of("hugezero/1 acquire node=0 page=2M").message == "acquire needs \"bytes=\"");
        CHECK(request_error_of("hugezero/1 acquire node=0 page=2M bytes=0").message == "\"bytes\" must be at least 1");
        CHECK(request_error_of("hugezero/1 acquire node=0 page=3M bytes=1").message
              == "invalid page size \"3M\" (a power of two of at least 4K, with a unit: 2M, 1G)");
        CHECK(request_error_of("hugezero/1 acquire node=0 page=2M bytes=" + std::string(900, '9')).message.size() < 120);
        CHECK(request_error_of("hugezero/1 acquire node=-1 page=2M bytes=1").message == "\"node\" must be a decimal number, not \"-1\"");
        CHECK(request_error_of("hugezero/1 acquire node=99999 page=2M bytes=1").message == "node 99999 is out of range (0 to 4095)");
        CHECK(request_error_of("hugezero/1 acquire node=0 page=2M bytes=99999999999999999999").code == EINVAL);
        CHECK(request_error_of("hugezero/1 acquire node=0 node=1 page=2M bytes=1").message == "key \"node\" given twice");
        CHECK(request_error_of("hugezero/1 acquire node=0 page=2M bytes=1 colour=red").message == "unknown key \"colour\"");
        CHECK(request_error_of("hugezero/1 acquire node=0 page=2M bytes=1 name=../etc").code == EINVAL);
        CHECK(request_error_of("hugezero/1 acquire node=0 page=2M bytes=1 name=hugezero.node0").code == EINVAL);
        CHECK(request_error_of("hugezero/1 status now").message == "status takes no arguments");
        CHECK(request_error_of("hugezero/1 hold lease=1").message == "hold takes no arguments");
        CHECK(request_error_of("hugezero/1 release").message == "release needs \"lease=\"");
        CHECK(request_error_of("hugezero/1 release lease=x").code == EINVAL);
    }

    TEST_CASE("replies parse: a lease with a path that has spaces, a status, held, an error")
    {
        const auto l = protocol::parse_reply("hugezero/1 lease id=3 node=0 page_kib=2048 pages=4 cold=1 path=/dev/huge pages/vm 7");
        const auto& lease = std::get<protocol::lease_reply>(l);
        CHECK(lease.id == 3);
        CHECK(lease.pages == 4);
        CHECK(lease.cold == 1);
        CHECK(lease.path == "/dev/huge pages/vm 7");
        const auto s = protocol::parse_reply("hugezero/1 status clients=1 ready=1\nreservoir node=0 ready_pages=3");
        CHECK(std::get<protocol::status_reply>(s).reservoirs.at(0).at("ready_pages") == "3");
        CHECK(std::get<protocol::held_reply>(protocol::parse_reply(protocol::format_held(2))).leases == 2);
        CHECK(protocol::format_held(2) == "hugezero/1 held leases=2");
        CHECK_THROWS_AS(protocol::parse_reply("hugezero/1 held"), std::runtime_error);
        const auto e = protocol::parse_reply(protocol::format_error(ENOSPC, "no pages on node0"));
        CHECK(std::get<protocol::error_reply>(e).code == ENOSPC);
        CHECK(std::get<protocol::error_reply>(e).message == "no pages on node0");
        CHECK_THROWS_AS(protocol::parse_reply("hugezero/1 lease id=x"), std::runtime_error);
        CHECK_THROWS_AS(protocol::parse_reply("nonsense"), std::runtime_error);
    }
}
