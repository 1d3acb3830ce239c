// A reload (SIGHUP) as a pure function of the running configuration and the file read again
// (tools/hugezerod/reload.hpp): what it applies, what it refuses, and what waits for a restart.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "hugezerod/config_file.hpp"
#include "hugezerod/reload.hpp"

namespace {

const std::string running = "[daemon]\nsocket = /run/a.sock\nmetrics = off\n[pool]\nrefill_rate = 1G\n"
                            "[reservoir]\nnode = 0\npage = 2M\ntarget = 64M\nchunk = 8M\nfloor_pages = 4\n";

hugezerod::config parsed(const std::string& text) { return hugezerod::parse_config(text, "hugezerod.conf"); }

std::string replaced(std::string text, const std::string& from, const std::string& to)
{
    text.replace(text.find(from), from.size(), to);
    return text;
}

} // namespace

TEST_SUITE("daemon")
{
    TEST_CASE("a reload of the same file changes nothing and keeps nothing back")
    {
        const auto plan = hugezerod::plan_reload(parsed(running), parsed(running));
        CHECK(plan.refusal.empty());
        CHECK(plan.kept.empty());
        CHECK(plan.next.reservoirs.at(0).options.target_bytes == 64 << 20);
    }

    TEST_CASE("targets, floors and the refill rate apply at once")
    {
        const std::string fresh = replaced(replaced(replaced(running, "target = 64M", "target = 128M"), "floor_pages = 4", "floor_pages = 9"),
                                           "refill_rate = 1G", "refill_rate = 2G");
        const auto plan = hugezerod::plan_reload(parsed(running), parsed(fresh));
        REQUIRE(plan.refusal.empty());
        CHECK(plan.kept.empty());
        CHECK(plan.next.reservoirs.at(0).options.target_bytes == 128 << 20);
        CHECK(plan.next.reservoirs.at(0).options.floor_pages == 9);
        CHECK(plan.next.pool.refill_bytes_per_second == std::uint64_t{2} << 30);
    }

    TEST_CASE("a reservoir added, or one's node, page, chunk, cgroup or directory changed, needs a restart")
    {
        const auto added = hugezerod::plan_reload(parsed(running), parsed(running + "[reservoir]\nnode = 0\npage = 1G\ntarget = 1G\n"));
        CHECK(added.refusal == "hugezerod.conf: adding or removing a [reservoir] needs a restart");
        const auto chunk = hugezerod::plan_reload(parsed(running), parsed(replaced(running, "chunk = 8M", "chunk = 16M")));
        CHECK(chunk.refusal
              == "hugezerod.conf:6: [reservoir]: chunk: changing a reservoir's node, page, chunk, cgroup, directory or recycle needs a "
                 "restart (systemctl restart hugezerod)");
        const auto page = hugezerod::plan_reload(parsed(running), parsed(replaced(running, "page = 2M", "page = 1G")));
        CHECK_FALSE(page.refusal.empty());
    }

    TEST_CASE("what only a restart changes keeps its old value, and is named")
    {
        const std::string fresh = replaced(replaced(running, "socket = /run/a.sock", "socket = /run/b.sock"), "metrics = off",
                                           "metrics = unix:/run/m.sock");
        const auto plan = hugezerod::plan_reload(parsed(running), parsed(fresh));
        REQUIRE(plan.refusal.empty());
        CHECK(plan.kept == std::vector<std::string>{"socket", "metrics"});
        CHECK(plan.next.socket == "/run/a.sock");
        CHECK(plan.next.metrics.empty());
    }
}
