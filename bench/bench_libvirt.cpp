// bench_libvirt: what hugezero's libvirt hook buys a domain, measured in one run with Debian's
// libvirtd (started in a private directory, as test_libvirt does; ratios, as the machine is
// shared and noisy).
//
//   bench_libvirt [--gib N] [--repeat N] [--quiet-after-lease SECONDS] [--json]   (root, libvirt)
//
// A TCG domain of the tiny guest (tests/daemon/tiny_guest.hpp: the stock kernel of
// scripts/guest) with --gib GiB (default 4) in two guest cells, started by `virsh start`:
//   leased       the hook leases each cell from hugezerod's named reservoir (filled first)
//   prealloc_1   libvirt's own <hugepages/> with <allocation mode='immediate' threads='1'/>
//   prealloc_2   the same with threads='2'
//   plain        ordinary RAM, untouched
// Each: seconds from `virsh start` to running (virsh returns) and to the guest's init (its
// marker on the serial console); the median of --repeat (default 3) starts, taken in turn.
// hugezerod refills nothing for --quiet-after-lease seconds (default 5) after a lease, so that
// its refill does not take a CPU from the domain's start (this machine has two). It reserves the
// 2 MiB pages it needs (nr_hugepages) and puts the counter back.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "libvirt/libvirt_host.hpp"
#include "support/hugepages.hpp"

namespace {

using clock_type = std::chrono::steady_clock;
using hugezero::test::domain_ram;
using hugezero::test::domain_spec;

double median(std::vector<double> v)
{
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

struct start_times {
    double running_s = 0;
    double init_s = 0;
};

// Starts @p d, waits for its guest's init, destroys it.
start_times start_once(hugezero::test::libvirt_host& host, const domain_spec& d)
{
    std::filesystem::remove(host.console(d));
    const auto t0 = clock_type::now();
    const auto started = host.virsh({"start", d.name});
    const auto running = clock_type::now();
    if (started.exit_code != 0)
        throw std::runtime_error("virsh start " + d.name + ": " + started.err);
    const bool booted = hugezero::test::wait_until(
        [&] { return hugezero::test::file_text(host.console(d)).find("HUGEZERO-GUEST-INIT") != std::string::npos; },
        std::chrono::seconds(300));
    const auto init = clock_type::now();
    (void)host.virsh({"destroy", d.name});
    if (!booted)
        throw std::runtime_error(d.name + ": the guest did not reach its init within 300 s");
    return {std::chrono::duration<double>(running - t0).count(), std::chrono::duration<double>(init - t0).count()};
}

// The daemon's reservoir is full again (the last leased domain's leases were emptied).
void wait_filled(hugezero::test::libvirt_host& host)
{
    const bool filled = hugezero::test::wait_until(
        [&] {
            hugezerod::client c(host.daemon().socket());
            return c.status().daemon.at("filled") == "1";
        },
        std::chrono::seconds(300));
    if (!filled)
        throw std::runtime_error("hugezerod's reservoir did not fill within 300 s");
}

std::map<std::string, start_times> measure(unsigned gib, unsigned repeat, unsigned quiet_s)
{
    const auto guest = hugezero::test::tiny_guest::make();
    if (!guest.error.empty())
        throw std::runtime_error(guest.error);
    if (const auto why = hugezero::test::libvirt_host::missing(); !why.empty())
        throw std::runtime_error(why);
    const std::uint64_t pages = std::uint64_t{gib} * 512;
    hugezero::test::hugepage_reservation reserved(hugezero::page_2mib, 2 * pages + 64); // the reservoir, and a domain's
    if (!reserved.ok())
        throw std::runtime_error(reserved.reason());
    // The pool stays quiet for a VM's start after each lease (quiet_after_lease, docs/pool.md):
    // its refill would take one of this machine's two CPUs from libvirtd and QEMU meanwhile.
    hugezero::test::libvirt_host host(guest, "target = " + std::to_string(gib) + "G\nchunk = " + std::to_string(gib * 512) + "M\n",
                                      "quiet_after_lease = " + std::to_string(quiet_s) + "s\n");
    const std::vector<std::pair<std::string, domain_spec>> kinds = [&] {
        std::vector<std::pair<std::string, domain_spec>> k;
        for (const auto& [name, ram, threads] : {std::tuple{"leased", domain_ram::leased, 1U}, std::tuple{"prealloc_1", domain_ram::prealloc, 1U},
                                                 std::tuple{"prealloc_2", domain_ram::prealloc, 2U}, std::tuple{"plain", domain_ram::plain, 1U}}) {
            domain_spec d;
            d.name = std::string("hz-bench-") + name;
            d.uuid = "5e1b0c2d-3f4a-4b6c-9d8e-" + std::string(12 - std::to_string(k.size()).size(), '0') + std::to_string(k.size());
            d.cells_mib = {gib * 512, gib * 512};
            d.ram = ram;
            d.prealloc_threads = threads;
            host.define(d);
            k.emplace_back(name, d);
        }
        return k;
    }();
    std::map<std::string, std::vector<double>> running, init;
    for (unsigned round = 0; round < repeat; ++round)
        for (const auto& [name, d] : kinds) {
            wait_filled(host);
            const start_times t = start_once(host, d);
            running[name].push_back(t.running_s);
            init[name].push_back(t.init_s);
        }
    std::map<std::string, start_times> out;
    for (const auto& [name, d] : kinds)
        out[name] = {median(running[name]), median(init[name])};
    return out;
}

} // namespace

int main(int argc, char** argv)
{
    CLI::App app{"bench_libvirt: virsh start of a domain whose RAM the hook leases, against libvirt's own hugepage prealloc "
                 "and ordinary RAM (root, libvirt)"};
    unsigned gib = 4, repeat = 3, quiet_s = 5;
    bool json = false;
    app.add_option("--gib", gib, "guest memory, in GiB of 2 MiB pages (two guest cells)")->capture_default_str()->check(CLI::Range(1, 64));
    app.add_option("--repeat", repeat, "starts per figure (the median is kept)")->capture_default_str()->check(CLI::Range(1, 20));
    app.add_option("--quiet-after-lease", quiet_s, "hugezerod's quiet_after_lease, in seconds: no refill while a domain starts")
        ->capture_default_str()
        ->check(CLI::Range(0, 600));
    app.add_flag("--json", json, "print JSON");
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e) == 0 ? 0 : 2;
    }
    try {
        const auto t = measure(gib, repeat, quiet_s);
        nlohmann::json out{{"gib", gib}, {"repeat", repeat}, {"quiet_after_lease_s", quiet_s}};
        for (const auto& [name, s] : t) {
            out["running_s"][name] = s.running_s;
            out["guest_init_s"][name] = s.init_s;
        }
        const double leased = t.at("leased").running_s;
        out["ratios"] = {{"running_prealloc_1_over_leased", t.at("prealloc_1").running_s / leased},
                         {"running_prealloc_2_over_leased", t.at("prealloc_2").running_s / leased},
                         {"running_leased_over_plain", leased / t.at("plain").running_s},
                         // The bound of prealloc_1 / leased when a lease costs nothing: prealloc's own cost over a plain start.
                         {"running_prealloc_1_over_plain", t.at("prealloc_1").running_s / t.at("plain").running_s},
                         {"init_prealloc_1_over_leased", t.at("prealloc_1").init_s / t.at("leased").init_s},
                         {"init_leased_over_plain", t.at("leased").init_s / t.at("plain").init_s}};
        if (json) {
            std::cout << out.dump(2) << '\n';
            return 0;
        }
        std::printf("virsh start of a %u GiB TCG domain, two guest cells (median of %u):\n", gib, repeat);
        std::printf("  %-12s %10s %14s\n", "", "running s", "guest init s");
        for (const char* k : {"leased", "prealloc_1", "prealloc_2", "plain"})
            std::printf("  %-12s %10.3f %14.3f\n", k, t.at(k).running_s, t.at(k).init_s);
        const auto& r = out["ratios"];
        std::printf("  running: prealloc_1 / leased = %.2fx (goal >= 1.2x), prealloc_2 / leased = %.2fx, leased / plain = %.2fx "
                    "(goal <= 1.15x)\n"
                    "  bound: prealloc_1 / plain = %.2fx (what prealloc_1 / leased would be if a lease cost nothing)\n",
                    r["running_prealloc_1_over_leased"].get<double>(), r["running_prealloc_2_over_leased"].get<double>(),
                    r["running_leased_over_plain"].get<double>(), r["running_prealloc_1_over_plain"].get<double>());
        return 0;
    } catch (const std::exception& e) {
        std::cerr << "bench_libvirt: " << e.what() << '\n';
        return 1;
    }
}
