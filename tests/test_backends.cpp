// One behavioural suite run against both backends: the real sysfs of this machine and the
// simulated kernel shaped like it (node 0, this process's CPUs, 2 MiB and 1 GiB pages, a stock
// kernel without zeroable_hugepages). Whatever hugezero can observe through the real kernel
// here must look the same through the simulation, so tests written against the simulation
// mean something. Each fixture brings its own "truth": the sysfs files read directly with
// std::ifstream, or sim::kernel::counts().
#include <doctest/doctest.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <fcntl.h>
#include <linux/memfd.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <unistd.h>

#include <hugezero/hugezero.hpp>

#include "support/expect.hpp"
#include "support/hugepages.hpp"
#include "support/skip.hpp"
#include "support/sysfs_tree.hpp"
#include "support/test_machine.hpp"

using namespace hugezero::literals;
using hugezero::global_counters;
using hugezero::hstate;
using hugezero::hstate_counters;
using hugezero::node_id;
using hugezero::page_size;
using hugezero::test::thrown_by;

namespace {

const hstate n0_2m{node_id(0), 2_MiB};
const hstate n0_1g{node_id(0), 1_GiB};

std::string hstate_dir(const hstate& h) { return hugezero::detail::paths::node_hstate_dir(h); }
std::string in_dir(const hstate& h, std::string_view name) { return hstate_dir(h) + "/" + std::string(name); }

std::uint64_t counter_value(const std::string& text) { return std::stoull(text); }

// The CPUs this process may run on, read independently of the library.
hugezero::cpu_set process_cpus()
{
    cpu_set_t mask;
    CPU_ZERO(&mask);
    REQUIRE(::sched_getaffinity(0, sizeof mask, &mask) == 0);
    std::vector<hugezero::detail::id_range> ranges;
    for (unsigned cpu = 0; cpu < CPU_SETSIZE; ++cpu)
        if (CPU_ISSET(cpu, &mask))
            ranges.push_back({cpu, cpu});
    return hugezero::cpu_set::from_ranges(std::move(ranges));
}

// ----- the real kernel: /sys -----

class real_sysfs {
public:
    real_sysfs()
    {
        if (hugezero::sysfs_backend::default_root() != "/sys") {
            unavailable_ = "HUGEZERO_SYSFS_ROOT points away from /sys";
            return;
        }
        for (const hstate& h : {n0_2m, n0_1g})
            if (!std::filesystem::exists(sys(hstate_dir(h)))) {
                unavailable_ = "this machine's node0 has no " + hugezero::to_string(h.size) + " huge pages";
                return;
            }
        machine_.emplace(hugezero::machine::open());
    }

    // Why this fixture cannot run here, or "".
    [[nodiscard]] const std::string& unavailable() const { return unavailable_; }
    [[nodiscard]] const hugezero::machine& machine() const { return *machine_; }

    // Reserves 2 MiB pages (restored when the fixture ends) and puts one in use, so that the
    // counters compared are not all zero and nr differs from free. Returns why it cannot, or "".
    std::string make_counters_nonzero()
    {
        if (!hugezero::test::running_as_root())
            return "reserving huge pages needs root";
        reservation_ = std::make_unique<hugezero::test::hugepage_reservation>(2_MiB, 4);
        if (!reservation_->ok())
            return reservation_->reason();
        in_use_.reset(::memfd_create("hugezero-test", MFD_CLOEXEC | MFD_HUGETLB | MFD_HUGE_2MB));
        if (!in_use_ || ::fallocate(in_use_.get(), 0, 0, static_cast<off_t>((2_MiB).bytes())) != 0)
            return "cannot fallocate a 2MiB page on a hugetlb memfd";
        return {};
    }

    [[nodiscard]] hstate_counters true_counters(const hstate& h) const
    {
        hstate_counters c;
        c.nr = counter_value(true_text(in_dir(h, "nr_hugepages")));
        c.free = counter_value(true_text(in_dir(h, "free_hugepages")));
        c.surplus = counter_value(true_text(in_dir(h, "surplus_hugepages")));
        if (truly_has_zeroable(h))
            c.zeroable = counter_value(true_text(in_dir(h, "zeroable_hugepages")));
        return c;
    }
    [[nodiscard]] global_counters true_global(page_size size) const
    {
        const std::string dir = hugezero::detail::paths::global_hstate_dir(size) + "/";
        return {counter_value(true_text(dir + "nr_hugepages")), counter_value(true_text(dir + "free_hugepages")),
                counter_value(true_text(dir + "resv_hugepages")), counter_value(true_text(dir + "surplus_hugepages")),
                counter_value(true_text(dir + "nr_overcommit_hugepages"))};
    }
    // The text of attribute @p relative.
    [[nodiscard]] std::string true_text(const std::string& relative) const { return hugezero::test::read_text(sys(relative)); }
    [[nodiscard]] std::string true_cpus(node_id node) const
    {
        std::string text = true_text(hugezero::detail::paths::node_dir(node) + "/cpulist");
        if (!text.empty() && text.back() == '\n')
            text.pop_back();
        return text;
    }
    [[nodiscard]] bool truly_has_zeroable(const hstate& h) const { return std::filesystem::exists(sys(in_dir(h, "zeroable_hugepages"))); }
    [[nodiscard]] static std::string expected_display(std::string_view relative) { return "/sys/" + std::string(relative); }
    [[nodiscard]] static std::uint32_t expected_watch_events() { return EPOLLPRI; }

private:
    static std::filesystem::path sys(std::string_view relative) { return std::filesystem::path("/sys") / relative; }

    std::string unavailable_;
    std::optional<hugezero::machine> machine_;
    std::unique_ptr<hugezero::test::hugepage_reservation> reservation_; // restored after in_use_ closes
    hugezero::unique_fd in_use_;
};

// ----- the simulated kernel, shaped like this machine -----

class simulated_kernel {
public:
    simulated_kernel() : simulated_kernel([](std::shared_ptr<hugezero::sim::kernel> k) {
        return hugezero::machine(std::make_shared<hugezero::sim::backend>(std::move(k)));
    })
    {
    }

    // A kernel shaped like this machine, seen through @p open (a backend for it, as a machine).
    template <class Open>
    explicit simulated_kernel(Open open)
        : kernel_(hugezero::sim::machine_builder()
                      .cpus(node_id(0), process_cpus())
                      .pages(2_MiB, 6)
                      .zeroed_pages(2_MiB, 2)
                      .in_use_pages(2_MiB, 3)
                      .pages(1_GiB, 1)
                      .reserved(2_MiB, 1)
                      .overcommit(2_MiB, 2)
                      .without_zeroable(2_MiB) // a stock kernel, like this one
                      .without_zeroable(1_GiB)
                      .build()),
          machine_(open(kernel_))
    {
    }

    [[nodiscard]] static const std::string& unavailable()
    {
        static const std::string always_available;
        return always_available;
    }
    [[nodiscard]] const hugezero::machine& machine() const { return machine_; }
    static std::string make_counters_nonzero() { return {}; } // built that way

    [[nodiscard]] hstate_counters true_counters(const hstate& h) const
    {
        const auto c = kernel_->counts(h);
        hstate_counters out{c.total(), c.free(), c.surplus, std::nullopt};
        if (kernel_->has_zeroable_interface(h))
            out.zeroable = c.dirty;
        return out;
    }
    [[nodiscard]] global_counters true_global(page_size size) const
    {
        global_counters g{0, 0, kernel_->reserved(size), 0, kernel_->overcommit(size)};
        for (const hstate& h : kernel_->hstates())
            if (h.size == size) {
                const auto c = kernel_->counts(h);
                g.nr += c.total();
                g.free += c.free();
                g.surplus += c.surplus;
            }
        return g;
    }
    // The text of a per-hstate counter, as the kernel prints it.
    [[nodiscard]] std::string true_text(const std::string& relative) const
    {
        const auto c = kernel_->counts(n0_2m);
        REQUIRE(relative == in_dir(n0_2m, "free_hugepages")); // the one attribute the suite reads this way
        return std::to_string(c.free()) + "\n";
    }
    [[nodiscard]] std::string true_cpus(node_id node) const { return hugezero::to_string(kernel_->node(node).cpus); }
    [[nodiscard]] bool truly_has_zeroable(const hstate& h) const { return kernel_->has_zeroable_interface(h); }
    [[nodiscard]] static std::string expected_display(std::string_view relative)
    {
        return "simulated:/sys/" + std::string(relative);
    }
    [[nodiscard]] static std::uint32_t expected_watch_events() { return EPOLLIN; }

private:
    std::shared_ptr<hugezero::sim::kernel> kernel_;
    hugezero::machine machine_;
};

#ifdef HUGEZERO_TEST_WITH_EMULATOR
// ----- the same simulated kernel, served through FUSE to the real sysfs_backend -----

// What simulated_kernel serves, mounted (tests/emulator/fuse_sysfs.hpp): the backend under test
// is then the real sysfs_backend, doing openat, pread at offset 0 and epoll through the kernel.
class emulated_kernel : public simulated_kernel {
public:
    emulated_kernel() : simulated_kernel(hugezero::test::machine_for) {}
    [[nodiscard]] std::string expected_display(std::string_view relative) const
    {
        const auto& root = dynamic_cast<const hugezero::sysfs_backend&>(machine().backend()).root();
        return (root / relative).string();
    }
    [[nodiscard]] static std::uint32_t expected_watch_events() { return EPOLLPRI; }
};
#endif

// Compares what hugezero reads with the truth. The real counters may move while we look (the
// kernel, other processes): only a reading taken while the truth stood still counts.
template <class Read, class Truth>
void check_matches_truth(Read read, Truth truth)
{
    for (int attempt = 0; attempt < 20; ++attempt) {
        const auto before = truth();
        const auto got = read();
        const auto after = truth();
        if (before == after) {
            CHECK(got == before);
            return;
        }
    }
    FAIL("the truth kept changing while it was read");
}

std::vector<page_size> sizes_of(const hugezero::node_info& node)
{
    std::vector<page_size> out;
    for (const auto& h : node.hstates)
        out.push_back(h.id.size);
    return out;
}

} // namespace

TYPE_TO_STRING(real_sysfs);
TYPE_TO_STRING(simulated_kernel);
// Run through the emulator (support/emulator_mode.hpp), only the <emulated_kernel> cases run;
// without it, the other two.
#ifdef HUGEZERO_TEST_WITH_EMULATOR
TYPE_TO_STRING(emulated_kernel);
#define HUGEZERO_BACKEND_FIXTURES real_sysfs, simulated_kernel, emulated_kernel
#else
#define HUGEZERO_BACKEND_FIXTURES real_sysfs, simulated_kernel
#endif

TEST_SUITE("backends")
{
    TEST_CASE_TEMPLATE("backend discovery finds node0 with 2MiB and 1GiB", Fixture, HUGEZERO_BACKEND_FIXTURES)
    {
        Fixture fixture;
        HUGEZERO_SKIP_IF(!fixture.unavailable().empty(), fixture.unavailable());
        const auto& t = fixture.machine().topology();
        CHECK(t.numa());
        REQUIRE_FALSE(t.nodes().empty());
        CHECK(t.nodes().front().id == node_id(0));
        const auto& node0 = t.node(node_id(0));
        CHECK(node0.has_memory);
        CHECK(hugezero::to_string(node0.cpus) == fixture.true_cpus(node_id(0)));
        CHECK(sizes_of(node0) == std::vector<page_size>{2_MiB, 1_GiB});
        CHECK(t.info(n0_2m).directory == "devices/system/node/node0/hugepages/hugepages-2048kB");
        CHECK(t.page_sizes() == std::vector<page_size>{2_MiB, 1_GiB});
    }

    TEST_CASE_TEMPLATE("backend counters equal the truth", Fixture, HUGEZERO_BACKEND_FIXTURES)
    {
        Fixture fixture;
        HUGEZERO_SKIP_IF(!fixture.unavailable().empty(), fixture.unavailable());
        const std::string why_not = fixture.make_counters_nonzero();
        HUGEZERO_SKIP_IF(!why_not.empty(), why_not);
        const auto& m = fixture.machine();
        CHECK(m.counters(n0_2m).nr > 0);
        CHECK(m.counters(n0_2m).free < m.counters(n0_2m).nr); // a page is in use
        for (const hstate& h : {n0_2m, n0_1g}) {
            CAPTURE(h);
            check_matches_truth([&] { return m.counters(h); }, [&] { return fixture.true_counters(h); });
        }
    }

    TEST_CASE_TEMPLATE("backend global counters equal the truth", Fixture, HUGEZERO_BACKEND_FIXTURES)
    {
        Fixture fixture;
        HUGEZERO_SKIP_IF(!fixture.unavailable().empty(), fixture.unavailable());
        const std::string why_not = fixture.make_counters_nonzero();
        HUGEZERO_SKIP_IF(!why_not.empty(), why_not);
        const auto& m = fixture.machine();
        CHECK(m.global(2_MiB).nr > 0);
        for (const page_size size : {2_MiB, 1_GiB}) {
            CAPTURE(size);
            check_matches_truth([&] { return m.global(size); }, [&] { return fixture.true_global(size); });
        }
    }

    TEST_CASE_TEMPLATE("backend detects and reports a kernel without zeroable_hugepages", Fixture,
                       HUGEZERO_BACKEND_FIXTURES)
    {
        Fixture fixture;
        HUGEZERO_SKIP_IF(!fixture.unavailable().empty(), fixture.unavailable());
        HUGEZERO_SKIP_IF(fixture.truly_has_zeroable(n0_2m), "this kernel has zeroable_hugepages (a patched kernel)");
        const auto& m = fixture.machine();
        for (const hstate& h : {n0_2m, n0_1g}) {
            CAPTURE(h);
            CHECK(m.supports_zeroing(h) == fixture.truly_has_zeroable(h));
        }
        CHECK_FALSE(m.counters(n0_2m).zeroable.has_value());
        const auto listing = m.backend().list(hstate_dir(n0_2m));
        REQUIRE(listing.has_value());
        CHECK(std::find(listing->begin(), listing->end(), "zeroable_hugepages") == listing->end());

        const auto e = thrown_by<hugezero::zeroing_unsupported>([&] { (void)m.zeroable(n0_2m); });
        CHECK(e.which() == n0_2m);
        const std::string message = e.what();
        CHECK(hugezero::test::contains(message, "cannot pre-zero node0/2MiB"));
        CHECK(hugezero::test::contains(message, fixture.expected_display(in_dir(n0_2m, "zeroable_hugepages")) + " does not exist"));
        CHECK(hugezero::test::contains(message, "hugezero::pool"));
    }

    TEST_CASE_TEMPLATE("backend read of a missing attribute is ENOENT naming the full path", Fixture,
                       HUGEZERO_BACKEND_FIXTURES)
    {
        Fixture fixture;
        HUGEZERO_SKIP_IF(!fixture.unavailable().empty(), fixture.unavailable());
        const std::string path = in_dir(n0_2m, "no_such_attribute");
        const auto e = thrown_by<std::system_error>([&] { (void)fixture.machine().backend().read(path); });
        CHECK(e.code().value() == ENOENT);
        CHECK(std::string(e.what())
              == "hugezero: open " + fixture.expected_display(path) + ": " + std::generic_category().message(ENOENT));
    }

    TEST_CASE_TEMPLATE("backend list of a missing directory is nullopt", Fixture, HUGEZERO_BACKEND_FIXTURES)
    {
        Fixture fixture;
        HUGEZERO_SKIP_IF(!fixture.unavailable().empty(), fixture.unavailable());
        auto& source = fixture.machine().backend();
        CHECK_FALSE(source.list("devices/system/node/node0/hugepages/hugepages-4kB").has_value());
        CHECK_FALSE(source.list("devices/system/node/node4096").has_value());
        const auto sizes = source.list("devices/system/node/node0/hugepages");
        REQUIRE(sizes.has_value());
        CHECK(*sizes == std::vector<std::string>{"hugepages-1048576kB", "hugepages-2048kB"});
        const auto counters = source.list(hstate_dir(n0_2m));
        REQUIRE(counters.has_value());
        CHECK(std::is_sorted(counters->begin(), counters->end()));
        for (const char* name : {"free_hugepages", "nr_hugepages", "surplus_hugepages"}) {
            CAPTURE(name);
            CHECK(std::binary_search(counters->begin(), counters->end(), name));
        }
    }

    TEST_CASE_TEMPLATE("backend open_writer on a read-only counter fails with EACCES", Fixture, HUGEZERO_BACKEND_FIXTURES)
    {
        Fixture fixture;
        HUGEZERO_SKIP_IF(!fixture.unavailable().empty(), fixture.unavailable());
        const std::string path = in_dir(n0_2m, "free_hugepages");
        const auto e = thrown_by<std::system_error>([&] { (void)fixture.machine().backend().open_writer(path); });
        CHECK(e.code().value() == EACCES);
        CHECK(std::string(e.what())
              == "hugezero: open for writing " + fixture.expected_display(path) + ": "
                     + std::generic_category().message(EACCES));
    }

    TEST_CASE_TEMPLATE("backend watch on a counter is pollable and rearm returns its content", Fixture,
                       HUGEZERO_BACKEND_FIXTURES)
    {
        Fixture fixture;
        HUGEZERO_SKIP_IF(!fixture.unavailable().empty(), fixture.unavailable());
        const std::string path = in_dir(n0_2m, "free_hugepages");
        const auto watch = fixture.machine().backend().open_watch(path);
        CHECK(watch->fd() >= 0);
        CHECK(watch->events() == fixture.expected_watch_events());

        // epoll accepts it (it refuses regular files with EPERM), and an armed watch on an
        // unchanged attribute reports nothing.
        const hugezero::unique_fd ep(::epoll_create1(EPOLL_CLOEXEC));
        REQUIRE(ep);
        epoll_event registration{};
        registration.events = watch->events();
        CHECK(::epoll_ctl(ep.get(), EPOLL_CTL_ADD, watch->fd(), &registration) == 0);
        epoll_event got{};
        CHECK(::epoll_wait(ep.get(), &got, 1, 0) == 0);

        check_matches_truth([&] { return watch->rearm(); }, [&] { return fixture.true_text(path); });
    }

    TEST_CASE_TEMPLATE("backend display_path names the file", Fixture, HUGEZERO_BACKEND_FIXTURES)
    {
        Fixture fixture;
        HUGEZERO_SKIP_IF(!fixture.unavailable().empty(), fixture.unavailable());
        const auto& source = fixture.machine().backend();
        for (const std::string& path : {std::string("devices/system/node/online"), in_dir(n0_1g, "nr_hugepages"),
                                       std::string("kernel/mm/hugepages/hugepages-2048kB/resv_hugepages")}) {
            CAPTURE(path);
            CHECK(source.display_path(path) == fixture.expected_display(path));
        }
    }
}
