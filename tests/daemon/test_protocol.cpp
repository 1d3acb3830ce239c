// The protocol hugezero/1 (tools/protocol), without a daemon: every request and reply parses,
// every one the daemon or a client formats parses back to what it was, and malformed ones are
// refused with their errno and a sentence.
#include <doctest/doctest.h>

#include <string>
#include <variant>

#include <hugezero/pool_statistics.hpp>
#include <hugezero/recycle_result.hpp>

#include "hugezerod/readiness.hpp"
#include "protocol/replies.hpp"
#include "protocol/requests.hpp"

namespace protocol = hugezerod::protocol;
using hugezero::node_id;

namespace {

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

    TEST_CASE("a detached, placed lease of another owner: asked, released by tag, printed back")
    {
        const std::string text = "hugezero/1 acquire node=0 page=2M bytes=33554432 name=libvirt-u-ram-node0 detach=libvirt-u "
                                 "owner=64055:107 mode=0640 place=/dev/hugepages/libvirt/qemu/3-vm/ram-node0";
        auto r = protocol::parse_request(text);
        REQUIRE(std::holds_alternative<protocol::request>(r));
        const auto& a = std::get<protocol::acquire_request>(std::get<protocol::request>(r));
        CHECK(a.detach == "libvirt-u");
        CHECK(a.owner == std::optional<protocol::file_owner>(protocol::file_owner{64055, 107}));
        CHECK(a.mode == std::optional<unsigned>(0640));
        CHECK(a.place == "/dev/hugepages/libvirt/qemu/3-vm/ram-node0");
        CHECK(protocol::format(std::get<protocol::request>(r)) == text);
        const auto g = protocol::parse_request("hugezero/1 release tag=libvirt-u");
        CHECK(std::get<protocol::release_request>(std::get<protocol::request>(g)).tag == "libvirt-u");
        CHECK(protocol::format(std::get<protocol::request>(g)) == "hugezero/1 release tag=libvirt-u");
        const std::string released = protocol::format(protocol::released_reply{0, "emptied,emptied", "libvirt-u", 2});
        CHECK(released == "hugezero/1 released tag=libvirt-u leases=2 status=emptied,emptied");
        const auto back = std::get<protocol::released_reply>(protocol::parse_reply(released));
        CHECK(back.tag == "libvirt-u");
        CHECK(back.leases == 2);
        CHECK(back.status == "emptied,emptied");
    }

    TEST_CASE("detach, owner, mode, place and release by tag refuse what they cannot carry")
    {
        const std::string acquire = "hugezero/1 acquire node=0 page=2M bytes=1 name=vm ";
        CHECK(request_error_of(acquire + "owner=1").message == "\"owner\" must be UID:GID, two decimal numbers below 4294967295, not \"1\"");
        CHECK(request_error_of(acquire + "owner=4294967295:0").code == EINVAL);
        CHECK(request_error_of(acquire + "owner=a:b").code == EINVAL);
        CHECK(request_error_of(acquire + "mode=0666").message == "\"mode\" must be 0600, 0640 or 0660, not \"0666\"");
        CHECK(request_error_of(acquire + "mode=4600").code == EINVAL);
        CHECK(request_error_of(acquire + "detach=../x").code == EINVAL);
        for (const char* bad : {"relative/x", "/", "/a//b", "/a/./b", "/a/../b", "/a/b/"})
            CHECK_MESSAGE(request_error_of(acquire + "place=" + bad).code == EINVAL, bad);
        CHECK(request_error_of(acquire + "place=/x/" + std::string(800, 'a')).code == EINVAL);
        CHECK(request_error_of("hugezero/1 acquire node=0 page=2M bytes=1 place=/x/y").message
              == "\"place\" needs \"name=\" (only a named reservoir's file can have a second link)");
        CHECK(request_error_of("hugezero/1 release").message == "release needs \"lease=\" or \"tag=\", one of them");
        CHECK(request_error_of("hugezero/1 release lease=1 tag=x").code == EINVAL);
        CHECK(request_error_of("hugezero/1 release tag=.x").code == EINVAL);
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
        CHECK(request_error_of("hugezero/1 release lease=x").code == EINVAL);
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

    TEST_CASE("every reply the daemon formats parses back to what it said")
    {
        const protocol::lease_reply lease{7, 1, 2048, 512, 3, "/dev/hugepages/vm 7"};
        const auto l = std::get<protocol::lease_reply>(protocol::parse_reply(protocol::format(lease)));
        CHECK(l.id == 7);
        CHECK(l.node == 1);
        CHECK(l.page_kib == 2048);
        CHECK(l.pages == 512);
        CHECK(l.cold == 3);
        CHECK(l.path == "/dev/hugepages/vm 7");
        CHECK(std::get<protocol::lease_reply>(protocol::parse_reply(protocol::format(protocol::lease_reply{1, 0, 4, 1, 0, {}}))).path.empty());
        const auto r = std::get<protocol::released_reply>(protocol::parse_reply(protocol::format(protocol::released_reply{9, "deferred"})));
        CHECK(r.id == 9);
        CHECK(r.status == "deferred");
        CHECK(protocol::format(protocol::released_reply{9, "deferred"}) == "hugezero/1 released lease=9 status=deferred");
    }

    TEST_CASE("the status reply lists the daemon, then each reservoir, and parses back")
    {
        hugezerod::daemon_status d;
        d.clients = 2;
        d.leases = 3;
        d.ready = true;
        d.filled = true;
        hugezero::reservoir_statistics s;
        s.which = {node_id(1), hugezero::page_2mib};
        s.state = hugezero::reservoir_state::held_by_floor;
        s.target_pages = 512;
        s.ready_pages = 100;
        const std::string text = hugezerod::status_reply_text(d, {s});
        CHECK(text.rfind("hugezero/1 status version=", 0) == 0);
        CHECK(text.find(" clients=2 leases=3 ") != std::string::npos);
        const auto parsed = std::get<protocol::status_reply>(protocol::parse_reply(text));
        CHECK(parsed.daemon.at("ready") == "1");
        CHECK(parsed.daemon.at("filled") == "1");
        REQUIRE(parsed.reservoirs.size() == 1);
        CHECK(parsed.reservoirs[0].at("node") == "1");
        CHECK(parsed.reservoirs[0].at("page_kib") == "2048");
        CHECK(parsed.reservoirs[0].at("state") == "held_by_floor");
        CHECK(parsed.reservoirs[0].at("target_pages") == "512");
        CHECK(parsed.reservoirs[0].at("last_error") == "none");
    }

    TEST_CASE("a word of the protocol is the value as printed, spaces as underscores")
    {
        CHECK(protocol::word(hugezero::reservoir_state::out_of_pages) == "out_of_pages");
        CHECK(protocol::word(hugezero::recycle_status::reservoir_full) == "reservoir_full");
        CHECK(protocol::word(hugezero::recycle_status::recycled) == "recycled");
    }
}
