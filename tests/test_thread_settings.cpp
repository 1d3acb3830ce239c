// thread_settings: every setting applied to a fresh thread and verified through the kernel's own
// view of that thread (sched_getaffinity, getpriority, sched_getscheduler, /proc/thread-self,
// get_mempolicy), never through the library. Each test's thread dies with its settings, and
// the main thread is checked to be untouched: the settings are per thread, by design.
#include <doctest/doctest.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <linux/mempolicy.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <hugezero/thread_settings.hpp>

#include "support/expect.hpp"
#include "support/skip.hpp"
#include "support/sysfs_tree.hpp"
#include "support/temp_dir.hpp"
#include "support/threads.hpp"

using hugezero::apply_to_current_thread;
using hugezero::cpu_set;
using hugezero::node_id;
using hugezero::setting_failure;
using hugezero::thread_settings;
using hugezero::test::run_in_new_thread;

namespace {

// The CPUs the calling thread may run on, straight from the kernel.
std::vector<unsigned> affinity_of_this_thread()
{
    cpu_set_t mask;
    CPU_ZERO(&mask);
    REQUIRE(::sched_getaffinity(0, sizeof mask, &mask) == 0);
    std::vector<unsigned> cpus;
    for (unsigned cpu = 0; cpu < CPU_SETSIZE; ++cpu)
        if (CPU_ISSET(cpu, &mask))
            cpus.push_back(cpu);
    return cpus;
}

int nice_of(pid_t tid)
{
    errno = 0;
    const int nice = ::getpriority(PRIO_PROCESS, static_cast<id_t>(tid));
    REQUIRE(errno == 0);
    return nice;
}

struct memory_policy {
    int mode = -1;
    unsigned long first_nodes = 0; // nodes 0-63 of the policy's node mask
};

memory_policy memory_policy_of_this_thread()
{
    constexpr unsigned long max_nodes = 1024;
    unsigned long mask[max_nodes / (8 * sizeof(unsigned long))] = {};
    memory_policy policy;
    REQUIRE(::syscall(SYS_get_mempolicy, &policy.mode, mask, max_nodes, nullptr, 0UL) == 0);
    policy.first_nodes = mask[0];
    return policy;
}

// The calling thread's cgroup v2 path, from /proc/thread-self/cgroup ("0::/path").
std::optional<std::string> cgroup_v2_of_this_thread()
{
    std::ifstream in("/proc/thread-self/cgroup");
    for (std::string line; std::getline(in, line);)
        if (line.rfind("0::", 0) == 0)
            return line.substr(3);
    return std::nullopt;
}

// Where cgroup v2 is mounted, from /proc/self/mountinfo ("... mountpoint ... - cgroup2 ...").
std::optional<std::filesystem::path> cgroup_v2_mount()
{
    std::ifstream in("/proc/self/mountinfo");
    for (std::string line; std::getline(in, line);) {
        const auto separator = line.find(" - ");
        if (separator == std::string::npos)
            continue;
        std::istringstream after(line.substr(separator + 3));
        std::string fstype;
        after >> fstype;
        if (fstype != "cgroup2")
            continue;
        std::istringstream before(line.substr(0, separator));
        std::string id, parent, device, root, mountpoint;
        before >> id >> parent >> device >> root >> mountpoint;
        return std::filesystem::path(mountpoint);
    }
    return std::nullopt;
}

bool write_file(const std::filesystem::path& path, const std::string& text)
{
    std::ofstream out(path);
    out << text;
    out.flush();
    return static_cast<bool>(out);
}

std::string error_text(int error) { return std::generic_category().message(error); }

} // namespace

TEST_SUITE("thread_settings")
{
    TEST_CASE("thread settings with nothing set change nothing and report nothing")
    {
        const auto before = affinity_of_this_thread();
        const auto failures = run_in_new_thread([] { return apply_to_current_thread({}); });
        CHECK(failures.empty());
        CHECK(affinity_of_this_thread() == before);
    }

    TEST_CASE("thread settings pin the thread to one allowed CPU")
    {
        const auto allowed = affinity_of_this_thread();
        REQUIRE_FALSE(allowed.empty());
        const unsigned cpu = allowed.back();
        struct result {
            std::vector<setting_failure> failures;
            std::vector<unsigned> affinity;
        };
        const result got = run_in_new_thread([&] {
            thread_settings settings;
            settings.cpus = cpu_set{cpu};
            auto failures = apply_to_current_thread(settings);
            return result{std::move(failures), affinity_of_this_thread()};
        });
        CHECK(got.failures.empty());
        CHECK(got.affinity == std::vector<unsigned>{cpu});
        CHECK(affinity_of_this_thread() == allowed); // only the worker was pinned
    }

    TEST_CASE("thread settings report pinning to an empty CPU set as EINVAL")
    {
        const auto failures = run_in_new_thread([] {
            thread_settings settings;
            settings.cpus = cpu_set{};
            return apply_to_current_thread(settings);
        });
        REQUIRE(failures.size() == 1);
        CHECK(failures[0].setting == "cpus");
        CHECK(failures[0].error.value() == EINVAL);
        CHECK(failures[0].message == "hugezero: pin worker to an empty CPU set: " + error_text(EINVAL));
    }

    TEST_CASE("thread settings report pinning to CPU 1000 as EINVAL naming the CPUs")
    {
        REQUIRE_FALSE(std::filesystem::exists("/sys/devices/system/cpu/cpu1000")); // the test needs a CPU that is not there
        const auto before = affinity_of_this_thread();
        struct result {
            std::vector<setting_failure> failures;
            std::vector<unsigned> affinity;
        };
        const result got = run_in_new_thread([] {
            thread_settings settings;
            settings.cpus = cpu_set{1000};
            auto failures = apply_to_current_thread(settings);
            return result{std::move(failures), affinity_of_this_thread()};
        });
        REQUIRE(got.failures.size() == 1);
        CHECK(got.failures[0].setting == "cpus");
        CHECK(got.failures[0].error.value() == EINVAL);
        CHECK(got.failures[0].message
              == "hugezero: pin worker to CPUs 1000 (none of them is online and allowed for this process): "
                     + error_text(EINVAL));
        CHECK(got.affinity == before); // a failed pin leaves the thread where it was
    }

    TEST_CASE("thread settings set the thread's nice level")
    {
        const int main_nice = nice_of(hugezero::current_thread_id());
        REQUIRE(main_nice < 5); // otherwise setting 5 would prove nothing
        struct result {
            std::vector<setting_failure> failures;
            int nice;
        };
        const result got = run_in_new_thread([] {
            thread_settings settings;
            settings.nice = 5;
            auto failures = apply_to_current_thread(settings);
            return result{std::move(failures), nice_of(hugezero::current_thread_id())};
        });
        CHECK(got.failures.empty());
        CHECK(got.nice == 5);
        CHECK(nice_of(hugezero::current_thread_id()) == main_nice);
    }

    TEST_CASE("thread settings reject nice 42 with EINVAL")
    {
        struct result {
            std::vector<setting_failure> failures;
            int nice;
        };
        const int main_nice = nice_of(hugezero::current_thread_id());
        const result got = run_in_new_thread([] {
            thread_settings settings;
            settings.nice = 42;
            auto failures = apply_to_current_thread(settings);
            return result{std::move(failures), nice_of(hugezero::current_thread_id())};
        });
        REQUIRE(got.failures.size() == 1);
        CHECK(got.failures[0].setting == "nice");
        CHECK(got.failures[0].error.value() == EINVAL);
        CHECK(got.failures[0].message
              == "hugezero: set worker nice level 42 (it must be between -20 and 19): " + error_text(EINVAL));
        std::ostringstream printed;
        printed << got.failures[0];
        CHECK(printed.str() == got.failures[0].message);
        CHECK(got.nice == main_nice); // nothing was applied
    }

    TEST_CASE("thread settings run the thread under SCHED_IDLE")
    {
        struct result {
            std::vector<setting_failure> failures;
            int policy;
        };
        const result got = run_in_new_thread([] {
            thread_settings settings;
            settings.idle = true;
            auto failures = apply_to_current_thread(settings);
            return result{std::move(failures), ::sched_getscheduler(0)};
        });
        CHECK(got.failures.empty());
        CHECK(got.policy == SCHED_IDLE);
        CHECK(::sched_getscheduler(0) == SCHED_OTHER);
    }

    TEST_CASE("thread settings report every failed setting")
    {
        const auto failures = run_in_new_thread([] {
            thread_settings settings;
            settings.cpus = cpu_set{};
            settings.nice = -21;
            settings.idle = true; // this one applies
            return apply_to_current_thread(settings);
        });
        REQUIRE(failures.size() == 2);
        CHECK(failures[0].setting == "cpus");
        CHECK(failures[1].setting == "nice");
        CHECK(failures[1].message
              == "hugezero: set worker nice level -21 (it must be between -20 and 19): " + error_text(EINVAL));
    }

    TEST_CASE("thread settings report a missing cgroup as ENOENT naming cgroup.threads")
    {
        const hugezero::test::temp_dir dir;
        const std::filesystem::path missing = dir.path() / "no-such-cgroup";
        const auto failures = run_in_new_thread([&] {
            thread_settings settings;
            settings.cgroup = missing;
            return apply_to_current_thread(settings);
        });
        REQUIRE(failures.size() == 1);
        CHECK(failures[0].setting == "cgroup");
        CHECK(failures[0].error.value() == ENOENT);
        CHECK(failures[0].message
              == "hugezero: move worker into cgroup: open " + (missing / "cgroup.threads").string() + ": "
                     + error_text(ENOENT));
    }

    TEST_CASE("thread settings move the thread into a threaded cgroup")
    {
        const auto mount = cgroup_v2_mount();
        HUGEZERO_SKIP_IF(!mount, "cgroup v2 is not mounted");
        const auto own = cgroup_v2_of_this_thread();
        HUGEZERO_SKIP_IF(!own, "/proc/thread-self/cgroup has no cgroup v2 line");
        const std::filesystem::path domain = *mount / std::filesystem::path(*own).relative_path();
        const std::string child_name = "hugezero-test-" + std::to_string(::getpid());
        const std::filesystem::path child = domain / child_name;
        const std::string child_in_proc = (*own == "/" ? "" : *own) + "/" + child_name;

        std::error_code error;
        HUGEZERO_SKIP_IF(!std::filesystem::create_directory(child, error),
                         "cannot create cgroup " + child.string() + ": " + error.message());
        struct remove_at_exit {
            std::filesystem::path path;
            ~remove_at_exit() { ::rmdir(path.c_str()); }
        } cleanup{child};
        HUGEZERO_SKIP_IF(!write_file(child / "cgroup.type", "threaded"),
                         "cannot make " + child.string() + " threaded");

        struct result {
            std::vector<setting_failure> into_child;
            std::optional<std::string> while_there;
            std::vector<setting_failure> back_home;
            std::optional<std::string> after;
        };
        const result got = run_in_new_thread([&] {
            result r;
            thread_settings settings;
            settings.cgroup = child;
            r.into_child = apply_to_current_thread(settings);
            r.while_there = cgroup_v2_of_this_thread();
            settings.cgroup = domain; // back into the process's own cgroup, so the child can go
            r.back_home = apply_to_current_thread(settings);
            r.after = cgroup_v2_of_this_thread();
            return r;
        });
        CHECK(got.into_child.empty());
        CHECK(got.while_there == child_in_proc);
        CHECK(got.back_home.empty());
        CHECK(got.after == own);
        CHECK(cgroup_v2_of_this_thread() == own); // the main thread never moved
        CHECK(::rmdir(child.c_str()) == 0);       // empty again
    }

    TEST_CASE("thread settings bind the thread's memory to node 0")
    {
        const memory_policy main_before = memory_policy_of_this_thread();
        struct result {
            std::vector<setting_failure> failures;
            memory_policy policy;
        };
        const result got = run_in_new_thread([] {
            thread_settings settings;
            settings.memory_node = node_id(0);
            auto failures = apply_to_current_thread(settings);
            return result{std::move(failures), memory_policy_of_this_thread()};
        });
        CHECK(got.failures.empty());
        CHECK(got.policy.mode == MPOL_BIND);
        CHECK(got.policy.first_nodes == 1UL); // node 0 and only node 0
        CHECK(memory_policy_of_this_thread().mode == main_before.mode);
        CHECK(main_before.mode == MPOL_DEFAULT);
    }

    TEST_CASE("thread settings report binding memory to a missing node as EINVAL")
    {
        HUGEZERO_SKIP_IF(std::filesystem::exists("/sys/devices/system/node/node63"), "this machine has a node 63");
        const auto failures = run_in_new_thread([] {
            thread_settings settings;
            settings.memory_node = node_id(63);
            return apply_to_current_thread(settings);
        });
        REQUIRE(failures.size() == 1);
        CHECK(failures[0].setting == "memory_node");
        CHECK(failures[0].error.value() == EINVAL);
        CHECK(failures[0].message == "hugezero: bind worker memory to node 63: " + error_text(EINVAL));
    }
}
