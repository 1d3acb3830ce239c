// Asynchronous zeroing requests: progress, completion through a timed wait and a pollable fd,
// worker placement, settings that fail, and the handle's life cycle.
#include <doctest/doctest.h>

#include <chrono>

#include <poll.h>

#include <hugezero/hugezero.hpp>

#include "support/expect.hpp"
#include "support/hstates.hpp"
#include "support/recording_backend.hpp"
#include "support/test_machine.hpp"
#include "support/threads.hpp"

using namespace hugezero::literals;
using namespace std::chrono_literals;
using hugezero::hstate;
using hugezero::node_id;

namespace {

using fixture = hugezero::test::recorded_machine;
using hugezero::test::node0_2m;

bool readable(int fd)
{
    pollfd p{fd, POLLIN, 0};
    return ::poll(&p, 1, 0) == 1;
}

} // namespace

TEST_SUITE("zeroing_request")
{
    TEST_CASE("progress grows while the request runs: completion is seen by wait(), fd() and result()")
    {
        fixture f(hugezero::sim::machine_builder().pages(2_MiB, 400).page_cost(2_MiB, 200us));
        hugezero::request_options options;
        options.zeroing.batch_bytes = 10 * (2_MiB).bytes();
        hugezero::zeroing_request request(f.machine, node0_2m, std::nullopt, options);
        REQUIRE(hugezero::test::wait_until([&] { return request.progress().pages_zeroed >= 10; }));
        CHECK_FALSE(request.done());
        CHECK_FALSE(request.wait(0ns));
        CHECK_FALSE(readable(request.fd()));
        CHECK_FALSE(request.result().has_value());
        REQUIRE(request.wait(10s));
        CHECK(request.done());
        CHECK(request.wait(std::chrono::nanoseconds::max())); // no overflow computing the deadline
        CHECK(readable(request.fd()));
        CHECK(readable(request.fd())); // it stays readable: polling does not consume it
        const auto result = request.result();
        REQUIRE(result.has_value());
        CHECK(result->status == hugezero::zeroing_status::complete);
        CHECK(result->pages_zeroed == 400);
        // 400 pages at 200 us each, all inside write(): the times say so.
        CHECK(result->time_in_writes >= 80ms);
        CHECK(result->elapsed >= result->time_in_writes);
        CHECK(request.progress().pages_zeroed == 400);
        CHECK(request.progress().writes == 40);
        CHECK(f.kernel->statistics(node0_2m).pages_zeroed_by_writes == 400);
    }

    TEST_CASE("the worker runs on the CPUs of the page's node by default")
    {
        const auto allowed = hugezero::current_affinity();
        const unsigned last = allowed.cpus().back();
        fixture f(hugezero::sim::machine_builder().pages(2_MiB, 4).cpus(node_id(0), hugezero::cpu_set{last}));
        (void)hugezero::zeroing_request(f.machine, node0_2m, std::nullopt).get();
        REQUIRE_FALSE(f.recorder->writes().empty());
        for (const auto& w : f.recorder->writes())
            CHECK(w.affinity == hugezero::cpu_set{last});
    }

    TEST_CASE("explicit CPUs, or no pinning at all, when asked")
    {
        const auto allowed = hugezero::current_affinity();
        const unsigned first = allowed.cpus().front();
        fixture f(hugezero::sim::machine_builder().pages(2_MiB, 4).cpus(node_id(0), hugezero::cpu_set{allowed.cpus().back()}));
        hugezero::request_options explicit_cpus;
        explicit_cpus.thread.cpus = hugezero::cpu_set{first};
        explicit_cpus.zeroing.batch_bytes = (2_MiB).bytes();
        (void)hugezero::zeroing_request(f.machine, node0_2m, 2, explicit_cpus).get();
        hugezero::request_options unpinned;
        unpinned.pin_to_node = false;
        (void)hugezero::zeroing_request(f.machine, node0_2m, 2, unpinned).get();
        const auto writes = f.recorder->writes();
        REQUIRE(writes.size() == 3);
        CHECK(writes[0].affinity == hugezero::cpu_set{first});
        CHECK(writes[1].affinity == hugezero::cpu_set{first});
        CHECK(writes[2].affinity == allowed);
    }

    TEST_CASE("a setting that cannot be applied is reported in the result, and the request still runs")
    {
        fixture f(hugezero::sim::machine_builder().pages(2_MiB, 4));
        hugezero::request_options options;
        options.thread.cgroup = "/nonexistent/hugezero-cgroup";
        options.thread.nice = 99;
        const auto result = hugezero::zeroing_request(f.machine, node0_2m, std::nullopt, options).get();
        CHECK(result.status == hugezero::zeroing_status::complete);
        CHECK(result.pages_zeroed == 4);
        REQUIRE(result.setting_failures.size() == 2);
        CHECK(result.setting_failures[0].setting == "cgroup");
        CHECK(result.setting_failures[0].error.value() == ENOENT);
        CHECK(hugezero::test::contains(result.setting_failures[0].message, "/nonexistent/hugezero-cgroup/cgroup.threads"));
        CHECK(result.setting_failures[1].setting == "nice");
        CHECK(result.setting_failures[1].error.value() == EINVAL);
    }

    TEST_CASE("an error inside the worker ends the request as failed, with the errno")
    {
        fixture f(hugezero::sim::machine_builder().pages(2_MiB, 4));
        f.kernel->fail_next(f.machine.zeroable_path(node0_2m), hugezero::sim::operation::open, EACCES);
        const auto result = hugezero::zeroing_request(f.machine, node0_2m, std::nullopt).get();
        CHECK(result.status == hugezero::zeroing_status::failed);
        CHECK(result.error.value() == EACCES);
        CHECK(hugezero::test::contains(result.error_message,
                                       "open for writing " + f.machine.backend().display_path("devices/system/node/node0")));
    }

    TEST_CASE("a moved-from request says so instead of crashing")
    {
        fixture f(hugezero::sim::machine_builder().pages(2_MiB, 4));
        hugezero::zeroing_request first(f.machine, node0_2m, std::nullopt);
        hugezero::zeroing_request second(std::move(first));
        CHECK(second.get().pages_zeroed == 4);
        CHECK_THROWS_AS((void)first.done(), hugezero::closed_handle_error); // NOLINT: testing use after move
        CHECK_THROWS_AS(first.request_stop(), hugezero::closed_handle_error);
    }
}
