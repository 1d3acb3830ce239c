// bench_daemon: what hugezerod buys a VMM, measured in one run (ratios, as the machine is
// shared and noisy).
//
//   bench_daemon [--gib N] [--requests N] [--repeat N] [--skip-qemu] [--json]   (root)
//
// - round trip: a client asks a running hugezerod for a warm 2 MiB lease and receives its fd;
//   p50 and p99 over --requests (default 1000), back to back, from a reservoir with a ready
//   file for each (the pool quiet after each lease, its default). Beside it, the floor
//   of this machine: the same exchange with a process that only echoes a packet and an fd.
// - QEMU: from launch to QMP ready, and to the guest's init (the tiny guest of tests/daemon:
//   the stock kernel of scripts/guest, a busybox init that prints a marker), with --gib GiB
//   (default 8) of 2 MiB pages:
//     leased         hugezero-run --size NG -- qemu ... memory-backend-file,mem-path={path},share=on
//     qemu_prealloc  QEMU's own memory-backend-memfd,hugetlb=on,prealloc=on,prealloc-threads=2
//     plain_128m     QEMU with 128 MiB of ordinary RAM: the floor of a QEMU start
//     plain_same_size  QEMU with --gib GiB of ordinary RAM, untouched: what QEMU itself spends
//                    on a guest of that size, whatever backs it
//   each the median of --repeat (default 3) launches, taken in turn.
// It reserves the huge pages it needs (nr_hugepages) and puts the counter back.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <sys/mman.h>
#include <sys/wait.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "daemon/daemon_process.hpp"
#include "daemon/tiny_guest.hpp"
#include "support/hugepages.hpp"

using clock_type = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {

double seconds_since(clock_type::time_point start) { return std::chrono::duration<double>(clock_type::now() - start).count(); }

double percentile(std::vector<double> v, double p)
{
    std::sort(v.begin(), v.end());
    return v.empty() ? 0.0 : v[static_cast<std::size_t>(p * static_cast<double>(v.size() - 1))];
}

double median(std::vector<double> v) { return percentile(std::move(v), 0.5); }

struct round_trips {
    double p50_us = 0, p99_us = 0;
};

// The floor of any such exchange on this machine: a process that answers each packet with a
// packet and an fd (a memfd), over the same kind of socket; measured the same way.
round_trips measure_echo_floor(unsigned requests)
{
    int pair[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0)
        throw std::runtime_error("socketpair failed");
    const pid_t echo = ::fork();
    if (echo == 0) {
        ::close(pair[0]);
        const int memfd = ::memfd_create("echo", MFD_CLOEXEC);
        hugezero::socket_message in;
        while (hugezero::receive_message(pair[1], 1024, in) == 0 && !in.end)
            (void)hugezero::send_message(pair[1], "hugezero/1 lease id=1 node=0 page_kib=2048 pages=1 cold=0", memfd);
        ::_exit(0);
    }
    ::close(pair[1]);
    std::vector<double> us;
    const std::string request = "hugezero/1 acquire node=0 page=2048K bytes=2097152 max_cold=0";
    for (unsigned i = 0; i < requests; ++i) {
        const auto start = clock_type::now();
        hugezero::socket_message in;
        (void)hugezero::send_message(pair[0], request);
        (void)hugezero::receive_message(pair[0], hugezerod::protocol::max_reply, in);
        us.push_back(seconds_since(start) * 1e6);
    }
    ::close(pair[0]);
    ::waitpid(echo, nullptr, 0);
    return {percentile(us, 0.5), percentile(us, 0.99)};
}

round_trips measure_round_trips(unsigned requests)
{
    // A ready file per request, and the pool quiet after each lease (its default): what a VM
    // starting on a warm reservoir meets. The leases stay out until the end.
    hugezero::test::hugepage_reservation pages(hugezero::page_2mib, requests + 16);
    if (!pages.ok())
        throw std::runtime_error(pages.reason());
    hugezero::test::daemon_process d("[reservoir]\nnode = 0\npage = 2M\ntarget = " + std::to_string(2 * requests) + "M\nchunk = 2M\n",
                                     {}, "max_leases_per_client = " + std::to_string(requests) + "\n");
    if (!d.wait_ready())
        throw std::runtime_error("hugezerod did not fill its reservoir: " + d.log());
    hugezerod::client c(d.socket());
    hugezerod::protocol::acquire_request r;
    r.bytes = 2 << 20;
    r.max_cold_pages = 0;
    round_trips out;
    std::vector<double> us;
    for (unsigned i = 0; i < requests; ++i) {
        const auto start = clock_type::now();
        auto g = c.acquire(r);
        us.push_back(seconds_since(start) * 1e6);
    }
    out.p50_us = percentile(us, 0.5);
    out.p99_us = percentile(us, 0.99);
    (void)d.stop();
    return out;
}

// Waits for QMP on @p path to answer qmp_capabilities.
bool qmp_ready(const std::string& path, clock_type::time_point deadline)
{
    while (clock_type::now() < deadline) {
        try {
            auto [s, error] = hugezerod::connect_unix(path, SOCK_STREAM);
            if (error != 0) {
                std::this_thread::sleep_for(1ms); // the socket is not there yet: QEMU is starting
                continue;
            }
            std::string got;
            char buffer[4096];
            const auto read_until = [&](const char* word) {
                while (got.find(word) == std::string::npos) {
                    const ssize_t n = ::recv(s.get(), buffer, sizeof buffer, 0);
                    if (n <= 0)
                        return false;
                    got.append(buffer, static_cast<std::size_t>(n));
                }
                return true;
            };
            if (!read_until("\"QMP\""))
                continue;
            const std::string hello = "{\"execute\":\"qmp_capabilities\"}\n";
            (void)::send(s.get(), hello.data(), hello.size(), MSG_NOSIGNAL);
            if (read_until("\"return\""))
                return true;
        } catch (const std::exception&) {
            std::this_thread::sleep_for(1ms); // the socket is not there yet: QEMU is starting
        }
    }
    return false;
}

struct launch_times {
    double qmp_s = 0, init_s = 0;
};

launch_times launch(const std::vector<std::string>& argv, const std::string& qmp, const std::string& console,
                    const std::string& marker)
{
    std::filesystem::remove(console);
    const auto start = clock_type::now();
    hugezero::test::child_process vm(argv);
    launch_times t;
    if (!qmp_ready(qmp, start + 120s))
        throw std::runtime_error("QEMU's QMP did not answer within 120 s: " + argv[0]);
    t.qmp_s = seconds_since(start);
    while (hugezero::test::file_text(console).find(marker) == std::string::npos) {
        if (seconds_since(start) > 300)
            throw std::runtime_error("the guest did not reach its init within 300 s");
        std::this_thread::sleep_for(1ms); // a file another process writes: polled
    }
    t.init_s = seconds_since(start);
    vm.send(SIGTERM);
    (void)vm.wait(60s);
    return t;
}

struct qemu_figures {
    launch_times leased, prealloc, plain, plain_same_size;
};

qemu_figures measure_qemu(unsigned gib, unsigned repeat)
{
    const auto guest = hugezero::test::tiny_guest::make();
    if (!guest.error.empty())
        throw std::runtime_error(guest.error);
    const unsigned mib = gib * 1024;
    hugezero::test::hugepage_reservation pages(hugezero::page_2mib, mib / 2 + 16);
    if (!pages.ok())
        throw std::runtime_error(pages.reason());
    hugezero::test::temp_dir dir;
    const std::string qmp = (dir.path() / "qmp.sock").string(), console = (dir.path() / "console.log").string();
    const std::string pattern = "bench", marker = "HUGEZERO-GUEST-INIT bench";
    std::vector<launch_times> leased, prealloc, plain, plain_same_size;
    for (unsigned i = 0; i < repeat; ++i) {
        plain.push_back(launch(guest.qemu_args(128, "", pattern, console, qmp, "memory-backend-ram,id=m0,size=128M"), qmp, console, marker));
        plain_same_size.push_back(launch(guest.qemu_args(mib, "", pattern, console, qmp,
                                                         "memory-backend-ram,id=m0,size=" + std::to_string(mib) + "M"),
                                         qmp, console, marker));
        {
            hugezero::test::daemon_process d("[pool]\nquiet_after_lease = 0ms\n[reservoir]\nnode = 0\npage = 2M\ntarget = "
                                             + std::to_string(gib) + "G\nchunk = " + std::to_string(gib) + "G\n");
            if (!d.wait_ready())
                throw std::runtime_error("hugezerod did not fill " + std::to_string(gib) + " GiB: " + d.log());
            leased.push_back(launch(guest.launch_command(HUGEZERO_RUN, d.socket(), mib, pattern, console, qmp), qmp, console, marker));
            (void)d.stop(); // its pages go back: QEMU's own prealloc needs them
        }
        const std::string backend = "memory-backend-memfd,id=m0,size=" + std::to_string(mib)
                                  + "M,hugetlb=on,hugetlbsize=2M,prealloc=on,prealloc-threads=2";
        prealloc.push_back(launch(guest.qemu_args(mib, "", pattern, console, qmp, backend), qmp, console, marker));
    }
    const auto med = [](const std::vector<launch_times>& v) {
        std::vector<double> q, g;
        for (const auto& t : v) {
            q.push_back(t.qmp_s);
            g.push_back(t.init_s);
        }
        return launch_times{median(q), median(g)};
    };
    return {med(leased), med(prealloc), med(plain), med(plain_same_size)};
}

} // namespace

int main(int argc, char** argv)
{
    CLI::App app{"bench_daemon: hugezerod's round trip, and QEMU's start on a lease against its own prealloc (root)"};
    unsigned gib = 8, requests = 1000, repeat = 3;
    bool json = false, skip_qemu = false;
    app.add_option("--gib", gib, "guest memory for the QEMU figures, in GiB of 2 MiB pages")->capture_default_str()->check(CLI::Range(1, 64));
    app.add_option("--requests", requests, "round trips measured")->capture_default_str()->check(CLI::Range(10, 1000000));
    app.add_option("--repeat", repeat, "launches per QEMU figure (the median is kept)")->capture_default_str()->check(CLI::Range(1, 20));
    app.add_flag("--skip-qemu", skip_qemu, "measure the round trip only");
    app.add_flag("--json", json, "print JSON");
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e) == 0 ? 0 : 2;
    }
    try {
        const round_trips floor = measure_echo_floor(requests);
        const round_trips rt = measure_round_trips(requests);
        nlohmann::json out{{"round_trip_p50_us", rt.p50_us}, {"round_trip_p99_us", rt.p99_us}, {"requests", requests},
                           {"echo_floor_p50_us", floor.p50_us}, {"echo_floor_p99_us", floor.p99_us}};
        if (!skip_qemu) {
            const qemu_figures q = measure_qemu(gib, repeat);
            out["gib"] = gib;
            out["qmp_ready_s"] = {{"leased", q.leased.qmp_s}, {"qemu_prealloc", q.prealloc.qmp_s}, {"plain_128m", q.plain.qmp_s},
                                  {"plain_same_size", q.plain_same_size.qmp_s}};
            out["guest_init_s"] = {{"leased", q.leased.init_s}, {"qemu_prealloc", q.prealloc.init_s}, {"plain_128m", q.plain.init_s},
                                   {"plain_same_size", q.plain_same_size.init_s}};
            out["ratios"] = {{"qmp_leased_over_plain", q.leased.qmp_s / q.plain.qmp_s},
                             {"qmp_prealloc_over_leased", q.prealloc.qmp_s / q.leased.qmp_s},
                             {"qmp_leased_over_plain_same_size", q.leased.qmp_s / q.plain_same_size.qmp_s}};
        }
        if (json) {
            std::cout << out.dump(2) << '\n';
            return 0;
        }
        std::printf("round trip, warm 2 MiB lease: p50 %.1f us, p99 %.1f us over %u requests (goal p99 <= 100 us)\n", rt.p50_us,
                    rt.p99_us, requests);
        std::printf("  this machine's floor (a process echoing a packet and an fd): p50 %.1f us, p99 %.1f us\n", floor.p50_us,
                    floor.p99_us);
        if (!skip_qemu) {
            const auto& q = out["qmp_ready_s"];
            const auto& g = out["guest_init_s"];
            std::printf("QEMU with %u GiB of 2 MiB pages (median of %u):\n", gib, repeat);
            std::printf("  %-14s %12s %14s\n", "", "QMP ready s", "guest init s");
            for (const char* k : {"leased", "qemu_prealloc", "plain_128m", "plain_same_size"})
                std::printf("  %-14s %12.3f %14.3f\n", k, q[k].get<double>(), g[k].get<double>());
            std::printf("  QMP ready: leased / plain_128m = %.2fx (goal <= 1.2x); qemu_prealloc / leased = %.1fx (goal >= 10x);\n"
                        "             leased / plain_same_size = %.2fx\n",
                        out["ratios"]["qmp_leased_over_plain"].get<double>(), out["ratios"]["qmp_prealloc_over_leased"].get<double>(),
                        out["ratios"]["qmp_leased_over_plain_same_size"].get<double>());
        }
        return 0;
    } catch (const std::exception& e) {
        std::cerr << "bench_daemon: " << e.what() << '\n';
        return 1;
    }
}
