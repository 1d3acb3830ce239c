// hugezero on a stock kernel (Debian's 6.12 built without the patch), in a two-node guest
// (scripts/guest): the stock-kernel tools where placement can fail. Every page of a lease on the
// node asked for, with 2 MiB and 1 GiB pages; the refill workers bound to the node and pinned to
// its CPU; prefault threads faulting on the node; a pool's pages charged to its process's
// hugetlb cgroup, or to a reservoir's; and the ABI, absent, reported as such.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hugezero/hugezero.hpp>

#include "guest/guest_kernel.hpp"
#include "support/hstates.hpp"
#include "support/sizes.hpp"
#include "support/threads.hpp"

using namespace hugezero::literals;
using namespace std::chrono_literals;
using hugezero::hstate;
using hugezero::node_id;
using hugezero::test::node0_1g;
using hugezero::test::node0_2m;
using hugezero::test::node1_1g;
using hugezero::test::node1_2m;
using hugezero::test::guest::counters_guard;
using hugezero::test::guest::page_nodes;
using hugezero::test::mib;

namespace {

bool in_two_node_guest()
{
    return hugezero::machine::open().topology().nodes().size() == 2
           && std::filesystem::exists("/sys/kernel/mm/hugepages/hugepages-2048kB");
}

#define REQUIRE_TWO_NODES()                                                                                  \
    HUGEZERO_SKIP_UNLESS_REQUIRED("guest", !in_two_node_guest(), "not in a two-node guest (scripts/guest)")

hugezero::pool_options one_reservoir(const hstate& h, std::uint64_t bytes, unsigned workers = 1)
{
    hugezero::pool_options options;
    options.reservoirs.push_back({h, bytes, 0, 0});
    options.reservoirs.back().recycle = true; // the recycling cases'; the others never recycle
    options.workers_per_node = workers;
    options.quiet_after_lease = 0ms;
    return options;
}

// The CPUs each thread of this process may run on, by thread id.
std::vector<std::string> thread_cpu_lists()
{
    std::vector<std::string> lists;
    for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
        std::ifstream status(task.path() / "status");
        for (std::string line; std::getline(status, line);)
            if (line.rfind("Cpus_allowed_list:", 0) == 0)
                lists.push_back(line.substr(line.find_first_not_of(" \t", 18)));
    }
    return lists;
}

} // namespace

TEST_SUITE("guest-stock")
{
    TEST_CASE("every page of a lease is on the node asked for, warm or cold, on each node")
    {
        REQUIRE_TWO_NODES();
        const auto m = hugezero::machine::open();
        const counters_guard counters(m);
        for (const hstate& h : {node0_2m, node1_2m}) {
            INFO(h);
            hugezero::pool p(m, one_reservoir(h, 16 * mib));
            p.start();
            REQUIRE(p.wait_filled(60s));
            auto got = p.acquire(h, 32 * mib); // 8 pages warm, 8 cold (allocated here, bound to the node)
            REQUIRE_MESSAGE(got, got.message);
            CHECK(got.lease.cold_pages() == 8);
            const auto ram = got.lease.map();
            REQUIRE(hugezero::populate(ram, hugezero::prefault_options::on_node(m, h.node)));
            CHECK(page_nodes(ram.data(), ram.size(), 2_MiB) == std::vector<int>(16, static_cast<int>(h.node.value())));
            CHECK(std::all_of(ram.data(), ram.data() + ram.size(), [](std::byte b) { return b == std::byte{0}; }));
        }
        counters.check_restored();
    }

    TEST_CASE("a lease given back waits while another process maps it, then is scrubbed and served again on its node")
    {
        // The write lease that proves a file has no other reference (F_SETLEASE), on this
        // kernel, and the scrub in a worker of the other node.
        REQUIRE_TWO_NODES();
        const auto m = hugezero::machine::open();
        const counters_guard counters(m);
        {
            auto options = one_reservoir(node1_2m, 8 * mib);
            options.retry_period = 5ms;
            hugezero::pool p(m, options);
            p.start();
            REQUIRE(p.wait_filled(60s));
            p.pause(); // the refill leaves the room to the lease coming back
            auto got = p.acquire(node1_2m, 8 * mib);
            REQUIRE_MESSAGE(got, got.message);
            {
                const auto ram = got.lease.map();
                std::fill(ram.data(), ram.data() + ram.size(), std::byte{0xa5});
            }
            int go[2];
            REQUIRE(::pipe2(go, O_CLOEXEC) == 0);
            void* shared = ::mmap(nullptr, got.lease.size(), PROT_READ, MAP_SHARED, got.lease.fd(), 0);
            REQUIRE(shared != MAP_FAILED);
            const int lease_fd = got.lease.fd();
            const pid_t child = ::fork();
            REQUIRE(child >= 0);
            if (child == 0) { // keeps the mapping only
                ::close(lease_fd);
                ::close(go[1]);
                char c;
                (void)!::read(go[0], &c, 1);
                ::_exit(0);
            }
            ::close(go[0]);
            ::munmap(shared, got.lease.size());
            const auto deferred = p.recycle(std::move(got.lease));
            CHECK_MESSAGE(deferred.status == hugezero::recycle_status::deferred, deferred.message);
            ::close(go[1]);
            int status = 0;
            REQUIRE(::waitpid(child, &status, 0) == child);
            REQUIRE(hugezero::test::wait_until([&] { return p.statistics(node1_2m).scrubbing_pages == 4; }, 60s));
            p.resume();
            REQUIRE(p.wait_filled(60s));
            CHECK(p.statistics(node1_2m).scrubbed_pages == 4);
            CHECK(p.statistics(node1_2m).refill_pages == 4);
            auto again = p.acquire(node1_2m, 8 * mib);
            REQUIRE_MESSAGE(again, again.message);
            const auto ram = again.lease.map();
            REQUIRE(hugezero::populate(ram, hugezero::prefault_options::on_node(m, node1_2m.node)));
            CHECK(page_nodes(ram.data(), ram.size(), 2_MiB) == std::vector<int>(4, 1));
            CHECK(std::all_of(ram.data(), ram.data() + ram.size(), [](std::byte b) { return b == std::byte{0}; }));
        }
        counters.check_restored();
    }

    TEST_CASE("a lease of 1 GiB pages is on its node")
    {
        REQUIRE_TWO_NODES();
        const auto m = hugezero::machine::open();
        HUGEZERO_SKIP_IF(std::find(m.topology().page_sizes().begin(), m.topology().page_sizes().end(), 1_GiB)
                             == m.topology().page_sizes().end(),
                         "the guest has no 1 GiB pages");
        const counters_guard counters(m);
        for (const hstate& h : {node0_1g, node1_1g}) {
            INFO(h);
            HUGEZERO_SKIP_IF(m.counters(h).free < 1, "no free 1 GiB page on a node of the guest");
            hugezero::pool p(m, one_reservoir(h, 1024 * mib));
            p.start();
            REQUIRE(p.wait_filled(120s));
            auto got = p.acquire(h, 1024 * mib);
            REQUIRE_MESSAGE(got, got.message);
            CHECK(got.lease.cold_pages() == 0);
            const auto ram = got.lease.map();
            CHECK(page_nodes(ram.data(), ram.size(), 1_GiB) == std::vector<int>{static_cast<int>(h.node.value())});
        }
        counters.check_restored();
    }

    TEST_CASE("refill workers are pinned to their node's CPU while they run")
    {
        REQUIRE_TWO_NODES();
        const auto m = hugezero::machine::open();
        const auto node1_cpus = hugezero::to_string(m.topology().node(node_id(1)).cpus);
        const auto pinned_to_node1 = [&] {
            const auto lists = thread_cpu_lists();
            return std::count(lists.begin(), lists.end(), node1_cpus);
        };
        const auto before = pinned_to_node1();
        {
            hugezero::pool p(m, one_reservoir(node1_2m, 0, 2));
            p.start();
            CHECK(pinned_to_node1() == before + 2);
            CHECK(p.setting_failures().empty());
        }
        // A thread joined a moment ago may still be listed in /proc/self/task for a while.
        CHECK(hugezero::test::wait_until([&] { return pinned_to_node1() == before; }, 2s));
    }

    TEST_CASE("refill pages land on the reservoir's node even when its workers run on another node's CPUs")
    {
        // Only the workers' memory binding can put the pages there: the kernel's default policy
        // would take them from the node of the CPU they run on.
        REQUIRE_TWO_NODES();
        const auto m = hugezero::machine::open();
        const counters_guard counters(m);
        {
            auto options = one_reservoir(node1_2m, 32 * mib);
            options.thread.cpus = m.topology().node(node_id(0)).cpus;
            hugezero::pool p(m, options);
            p.start();
            REQUIRE(p.wait_filled(60s));
            p.stop();
            auto got = p.acquire(node1_2m, 32 * mib);
            REQUIRE_MESSAGE(got, got.message);
            CHECK(got.lease.cold_pages() == 0);
            const auto ram = got.lease.map();
            CHECK(page_nodes(ram.data(), ram.size(), 2_MiB) == std::vector<int>(16, 1));
        }
        counters.check_restored();
    }

    TEST_CASE("two refill workers of a node fill one file on that node")
    {
        REQUIRE_TWO_NODES();
        const auto m = hugezero::machine::open();
        const counters_guard counters(m);
        {
            auto options = one_reservoir(node1_2m, 64 * mib, 2);
            options.batch_bytes = 4 * mib;
            hugezero::pool p(m, options);
            p.start();
            REQUIRE(p.wait_filled(60s));
            CHECK(p.statistics(node1_2m).ready_files == 1);
            auto got = p.acquire(node1_2m, 64 * mib);
            REQUIRE_MESSAGE(got, got.message);
            CHECK(got.lease.cold_pages() == 0);
            const auto ram = got.lease.map();
            CHECK(page_nodes(ram.data(), ram.size(), 2_MiB) == std::vector<int>(32, 1));
        }
        counters.check_restored();
    }

    TEST_CASE("populate() pinned to a node faults a fresh mapping in on that node, from the node's CPU")
    {
        REQUIRE_TWO_NODES();
        const auto m = hugezero::machine::open();
        const counters_guard counters(m);
        for (const node_id node : {node_id(0), node_id(1)}) {
            INFO(node);
            const auto ram = hugezero::mapping::map_anonymous(16 * mib, 2_MiB);
            const auto r = hugezero::populate(ram, hugezero::prefault_options::on_node(m, node));
            REQUIRE_MESSAGE(r, r.message);
            CHECK(r.setting_failures.empty());
            CHECK(page_nodes(ram.data(), ram.size(), 2_MiB) == std::vector<int>(8, static_cast<int>(node.value())));
        }
        counters.check_restored();
    }

    TEST_CASE("thread settings pin a thread to a node's CPU and bind its memory there")
    {
        REQUIRE_TWO_NODES();
        const auto m = hugezero::machine::open();
        const counters_guard counters(m);
        hugezero::test::run_in_new_thread([&] {
            hugezero::thread_settings settings;
            settings.cpus = m.topology().node(node_id(1)).cpus;
            settings.memory_node = node_id(1);
            CHECK(hugezero::apply_to_current_thread(settings).empty());
            std::this_thread::yield();
            CHECK(m.topology().node(node_id(1)).cpus.contains(static_cast<unsigned>(::sched_getcpu())));
            hugezero::pool p(m); // cold: allocated by this thread
            auto got = p.acquire(node1_2m, 8 * mib);
            REQUIRE_MESSAGE(got, got.message);
            const auto ram = got.lease.map();
            CHECK(page_nodes(ram.data(), ram.size(), 2_MiB) == std::vector<int>(4, 1));
        });
        counters.check_restored();
    }

    TEST_CASE("a pool's pages are charged to its process's hugetlb cgroup")
    {
        REQUIRE_TWO_NODES();
        const auto m = hugezero::machine::open();
        const counters_guard counters(m);
        const std::filesystem::path root = "/sys/fs/cgroup";
        const std::filesystem::path cgroup = root / "hugezero-pool";
        REQUIRE(hugezero::test::guest::write_text(root / "cgroup.subtree_control", "+hugetlb +memory"));
        std::filesystem::create_directory(cgroup);
        const auto charged = [&] { return std::stoull(hugezero::test::guest::read_text(cgroup / "hugetlb.2MB.current")); };
        // The hugetlb controller counts per process: the whole test process moves in, and back.
        REQUIRE(hugezero::test::guest::write_text(cgroup / "cgroup.procs", std::to_string(::getpid())));
        CHECK(charged() == 0);
        {
            hugezero::pool p(m, one_reservoir(node0_2m, 32 * mib));
            p.start();
            REQUIRE(p.wait_filled(60s));
            CHECK(charged() == 32 * mib);
            p.stop(); // no refill meanwhile
            auto got = p.acquire(node0_2m, 40 * mib); // 4 more pages, cold, by this thread
            REQUIRE_MESSAGE(got, got.message);
            CHECK(charged() == 40 * mib);
        }
        CHECK(charged() == 0);
        REQUIRE(hugezero::test::guest::write_text(root / "cgroup.procs", std::to_string(::getpid())));
        CHECK(hugezero::test::wait_until([&] { // exited workers leave the cgroup a moment after their join
            std::error_code error;
            return std::filesystem::remove(cgroup, error) || !std::filesystem::exists(cgroup);
        }));
        counters.check_restored();
    }

    TEST_CASE("a reservoir charged to a cgroup has its pages, warm and cold, on its node and charged to that cgroup")
    {
        REQUIRE_TWO_NODES();
        const auto m = hugezero::machine::open();
        const counters_guard counters(m);
        const std::filesystem::path root = "/sys/fs/cgroup";
        const std::filesystem::path tenant = root / "hugezero-tenant";
        REQUIRE(hugezero::test::guest::write_text(root / "cgroup.subtree_control", "+hugetlb +memory"));
        std::filesystem::create_directory(tenant);
        const auto charged = [&] { return std::stoull(hugezero::test::guest::read_text(tenant / "hugetlb.2MB.current")); };
        {
            auto options = one_reservoir(node1_2m, 16 * mib);
            options.reservoirs[0].cgroup = tenant;
            hugezero::pool p(m, options);
            p.start();
            REQUIRE(p.wait_filled(60s));
            CHECK(charged() == 16 * mib);
            p.stop();
            // From node 0's CPU: the helper takes on this thread's binding to node 1 (the cold
            // path's), not its own placement.
            hugezero::test::run_in_new_thread([&] {
                hugezero::thread_settings on_node0;
                on_node0.cpus = m.topology().node(node_id(0)).cpus;
                REQUIRE(hugezero::apply_to_current_thread(on_node0).empty());
                auto got = p.acquire(node1_2m, 24 * mib); // 4 pages more, cold
                REQUIRE_MESSAGE(got, got.message);
                CHECK(got.lease.cold_pages() == 4);
                CHECK(charged() == 24 * mib);
                const auto ram = got.lease.map();
                CHECK(page_nodes(ram.data(), ram.size(), 2_MiB) == std::vector<int>(12, 1));
            });
        }
        CHECK(charged() == 0);
        CHECK(hugezero::test::wait_until([&] { // helpers reaped a moment ago may still be counted
            std::error_code error;
            return std::filesystem::remove(tenant, error) || !std::filesystem::exists(tenant);
        }));
        counters.check_restored();
    }

    TEST_CASE("a stock kernel has no zeroable_hugepages: the service says so and points to the pool")
    {
        REQUIRE_TWO_NODES();
        const auto m = hugezero::machine::open();
        HUGEZERO_SKIP_IF(hugezero::test::guest::reference_kernel(), "this guest runs the reference ABI kernel");
        CHECK_FALSE(m.supports_zeroing(node0_2m));
        CHECK_FALSE(m.supports_zeroing(node1_2m));
        try {
            hugezero::prezero_service service(m);
            FAIL("no exception");
        } catch (const hugezero::zeroing_unsupported& e) {
            CHECK(std::string(e.what()).find("pool") != std::string::npos);
        }
    }
}
