// hugezerod and hugezero-run end to end, on real 2 MiB huge pages (root): leases handed over
// and taken back, metrics, bad input, a peer not allowed, 1000 clients killed at random points,
// a restart under a lease, SIGHUP, systemd's notify protocol and socket activation.
#include <doctest/doctest.h>

#include <cstring>
#include <random>
#include <regex>
#include <string>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon/daemon_process.hpp"
#include "daemon/real_pages.hpp"
#include "support/hugepages.hpp"
#include "support/sizes.hpp"
#include "support/skip.hpp"

namespace protocol = hugezerod::protocol;
using hugezero::test::closed_by_peer;
using hugezero::test::daemon_process;
using hugezero::test::free_2m;
using hugezero::test::wait_until;
using namespace std::chrono_literals;
using hugezero::test::mib;

namespace {

// 64 MiB of 2 MiB pages in one reservoir on node 0, refilling at once after a lease.
const std::string small_reservoir = "[pool]\nquiet_after_lease = 0ms\nretry_period = 50ms\n"
                                    "[reservoir]\nnode = 0\npage = 2M\ntarget = 64M\n";

// Root and 96 free 2 MiB pages, or a skip.
struct real_pages : hugezero::test::real_pages {
    real_pages() : hugezero::test::real_pages(96) {}
};

protocol::acquire_request two_mib(std::uint64_t bytes, std::optional<std::uint64_t> max_cold = std::nullopt)
{
    protocol::acquire_request r;
    r.bytes = bytes;
    r.max_cold_pages = max_cold;
    return r;
}

} // namespace

TEST_SUITE("daemon")
{
    TEST_CASE("a warm lease is a hugetlb file of the pages asked for, all allocated, and given back it is emptied, its pages back at once")
    {
        real_pages pages;
        if (!pages.ok)
            return;
        // No refill after the lease: what comes back to the kernel shows in its free pages.
        daemon_process d("[pool]\nquiet_after_lease = 60min\n[reservoir]\nnode = 0\npage = 2M\ntarget = 64M\n");
        REQUIRE_MESSAGE(d.wait_ready(), d.log());
        hugezerod::client c(d.socket());
        auto g = c.acquire(two_mib(8 * mib, 0));
        CHECK(g.info.pages == 4);
        CHECK(g.info.cold == 0);
        CHECK(g.info.page_kib == 2048);
        struct stat st {};
        REQUIRE(::fstat(g.fd.get(), &st) == 0);
        CHECK(st.st_size == static_cast<off_t>(8 * mib));
        CHECK(st.st_blocks * 512 == static_cast<blkcnt_t>(8 * mib)); // every page allocated
        void* map = ::mmap(nullptr, 8 * mib, PROT_READ | PROT_WRITE, MAP_SHARED, g.fd.get(), 0);
        REQUIRE(map != MAP_FAILED);
        CHECK(static_cast<unsigned char*>(map)[8 * mib - 1] == 0);
        std::memset(map, 0x5a, 8 * mib);
        ::munmap(map, 8 * mib);
        CHECK(d.status().daemon.at("leases") == "1");
        const std::uint64_t free_before = free_2m();
        CHECK(c.release(g.info.id) == "emptied"); // the default: recycle = off
        CHECK(d.status().daemon.at("leases") == "0");
        CHECK(free_2m() == free_before + 4);
        REQUIRE(::fstat(g.fd.get(), &st) == 0); // the fd kept reaches an empty file
        CHECK(st.st_size == 0);
        CHECK(st.st_blocks == 0);
        CHECK(d.reservoir("recycled_leases") == 0);
        CHECK(hugezero::test::metric(d.metrics(), "hugezerod_recycles_total{status=\"emptied\"}") == 1);
        CHECK_THROWS_WITH_AS(c.release(g.info.id), doctest::Contains("holds no lease"), hugezerod::client_error);
        CHECK(d.stop().exit_code == 0);
    }

    TEST_CASE("a lease of a trusted user from a recycle = trusted-peers reservoir is recycled once closed, and another user's is emptied")
    {
        real_pages pages;
        if (!pages.ok)
            return;
        const std::string reservoir = "[pool]\nquiet_after_lease = 60min\n[reservoir]\nnode = 0\npage = 2M\ntarget = 64M\n"
                                      "recycle = trusted-peers\n";
        {
            daemon_process d("[daemon]\ntrusted_users = root\n" + reservoir);
            REQUIRE_MESSAGE(d.wait_ready(), d.log());
            hugezerod::client c(d.socket());
            auto g = c.acquire(two_mib(8 * mib, 0));
            g.fd.reset();
            CHECK(c.release(g.info.id) == "recycled");
            CHECK(d.reservoir("recycled_leases") == 1);
            CHECK(d.stop().exit_code == 0);
        }
        daemon_process d("[daemon]\ntrusted_users = 65534\n" + reservoir); // root is not trusted here
        REQUIRE_MESSAGE(d.wait_ready(), d.log());
        hugezerod::client c(d.socket());
        auto g = c.acquire(two_mib(8 * mib, 0));
        g.fd.reset();
        CHECK(c.release(g.info.id) == "emptied");
        CHECK(d.reservoir("recycled_leases") == 0);
        CHECK(d.stop().exit_code == 0);
    }

    TEST_CASE("a trusted lease its client left while another process still maps it is deferred, then recycled when that process ends")
    {
        real_pages pages;
        if (!pages.ok)
            return;
        daemon_process d("[daemon]\ntrusted_users = root\n[pool]\nquiet_after_lease = 60min\nretry_period = 20ms\n"
                         "[reservoir]\nnode = 0\npage = 2M\ntarget = 64M\nrecycle = trusted-peers\n");
        REQUIRE_MESSAGE(d.wait_ready(), d.log());
        int go[2];
        REQUIRE(::pipe2(go, O_CLOEXEC) == 0);
        pid_t vmm = -1;
        {
            hugezerod::client c(d.socket());
            auto g = c.acquire(two_mib(4 * mib, 0));
            vmm = ::fork(); // the VMM the client passed the lease to: it maps it, and runs until told
            if (vmm == 0) {
                ::close(c.fd()); // the VMM has the lease, not the connection
                void* map = ::mmap(nullptr, 4 * mib, PROT_READ | PROT_WRITE, MAP_SHARED, g.fd.get(), 0);
                ::close(go[1]);
                char byte = 0;
                (void)!::read(go[0], &byte, 1);
                ::_exit(map == MAP_FAILED ? 1 : 0);
            }
            REQUIRE(vmm > 0);
        } // the client leaves: its connection and its copy of the fd close
        ::close(go[0]);
        // The pool counts the pages waiting on its job thread, the daemon the status once the loop
        // has the result: wait for both.
        const auto deferred = [&] { return hugezero::test::metric(d.metrics(), "hugezerod_recycles_total{status=\"deferred\"}"); };
        REQUIRE_MESSAGE(wait_until([&] { return d.reservoir("waiting_pages") == 2 && deferred() == 1; }), d.log() << d.metrics());
        CHECK(d.reservoir("recycled_leases") == 0);
        ::close(go[1]); // the VMM ends
        int status = 0;
        ::waitpid(vmm, &status, 0);
        CHECK(WIFEXITED(status));
        CHECK(WEXITSTATUS(status) == 0);
        CHECK(wait_until([&] { return d.reservoir("waiting_pages") == 0 && d.reservoir("recycled_leases") == 1; }));
        CHECK(d.stop().exit_code == 0);
    }

    TEST_CASE("hugezerod status prints the reservoirs, as text and as JSON")
    {
        real_pages pages;
        if (!pages.ok)
            return;
        daemon_process d(small_reservoir);
        REQUIRE_MESSAGE(d.wait_ready(), d.log());
        const auto text = hugezero::test::run_process({HUGEZERO_DAEMON, "status", "--socket", d.socket()});
        CHECK(text.exit_code == 0);
        CHECK_MESSAGE(text.out.find(": filled, 1 client, 0 leases, pre-zeroing ") != std::string::npos, text.out);
        CHECK_MESSAGE(text.out.find("  node0 2M: 32/32 pages ready (100%), at_target, 0 leases out") != std::string::npos, text.out);
        CHECK(text.err.empty()); // no warning: the reservoir is at its target
        const auto json = hugezero::test::run_process({HUGEZERO_DAEMON, "status", "--socket", d.socket(), "--json", "--wait"});
        CHECK(json.exit_code == 0);
        CHECK_MESSAGE(json.out.find("\"target_pages\": 32") != std::string::npos, json.out);
        CHECK(json.out.find("\"filled\": 1") != std::string::npos);
        const auto none = hugezero::test::run_process({HUGEZERO_DAEMON, "status", "--socket", (d.dir() / "none").string()});
        CHECK(none.exit_code == 1);
        CHECK(none.err.find("none: cannot connect") != std::string::npos);
        CHECK(d.stop().exit_code == 0);
    }

    TEST_CASE("a reservoir held short of its target is a warning in the log and in status, and status --wait exits 1 saying what to do")
    {
        // Free pages, and a floor no node can keep: the refill holds at once, and takes no page.
        real_pages pages;
        if (!pages.ok)
            return;
        daemon_process d("[reservoir]\nnode = 0\npage = 2M\ntarget = 8M\nfloor_pages = 100000000\n");
        REQUIRE_MESSAGE(d.wait_ready(), d.log());
        const std::string why = "node0 2M: 0/4 pages ready: the refill stops where the node would keep fewer than floor_pages = "
                                "100000000 free; reserve 4 more (echo $(($(cat "
                                "/sys/devices/system/node/node0/hugepages/hugepages-2048kB/nr_hugepages) + 4)) > "
                                "/sys/devices/system/node/node0/hugepages/hugepages-2048kB/nr_hugepages; 1G pages are best reserved "
                                "at boot) or lower target, or floor_pages";
        CHECK_MESSAGE(d.log().find("hugezerod: warning: " + why + "\n") != std::string::npos, d.log());
        // Outside journald each line of the running daemon starts with the local time.
        CHECK_MESSAGE(std::regex_search(d.log(), std::regex(R"(^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d{4} hugezerod: serving )")),
                      d.log());
        const auto text = hugezero::test::run_process({HUGEZERO_DAEMON, "status", "--socket", d.socket()});
        CHECK(text.exit_code == 0);
        CHECK_MESSAGE(text.out.find("  node0 2M: 0/4 pages ready (0%), held_by_floor, ") != std::string::npos, text.out);
        CHECK(text.err == "hugezerod status: warning: " + why + "\n");
        const auto wait = hugezero::test::run_process({HUGEZERO_DAEMON, "status", "--socket", d.socket(), "--wait", "--json"});
        CHECK(wait.exit_code == 1);
        CHECK(wait.err == "hugezerod status: warning: " + why + "\nhugezerod status: 1 reservoir settled short of its target (above)\n");
        CHECK(wait.out.find("\"state\": \"held_by_floor\"") != std::string::npos);
        CHECK(d.stop().exit_code == 0);
    }

    TEST_CASE("a daemon without a reservoir says in its log and in status that every lease is cold")
    {
        daemon_process d("[pool]\nbatch = 16M\n");
        REQUIRE_MESSAGE(d.wait_ready(), d.log());
        CHECK_MESSAGE(d.log().find("hugezerod: warning: no [reservoir] is configured: every lease is allocated and zeroed when asked "
                                   "for (cold), on the VM's start path")
                          != std::string::npos,
                      d.log());
        const auto status = hugezero::test::run_process({HUGEZERO_DAEMON, "status", "--socket", d.socket(), "--wait"});
        CHECK(status.exit_code == 0); // nothing to wait for
        CHECK(status.err == "hugezerod status: warning: no reservoir is configured: every lease is allocated and zeroed when asked "
                            "for (cold); add a [reservoir] to the configuration (man hugezerod.conf)\n");
        CHECK(d.stop().exit_code == 0);
    }

#ifdef HUGEZERO_C_CLIENT
    TEST_CASE("the C client of examples/ gets a lease of warm zero pages, maps it and gives it back")
    {
        real_pages pages;
        if (!pages.ok)
            return;
        daemon_process d(small_reservoir);
        REQUIRE_MESSAGE(d.wait_ready(), d.log());
        const auto run = hugezero::test::run_process({HUGEZERO_C_CLIENT, d.socket(), "4000000"});
        CHECK_MESSAGE(run.exit_code == 0, run.err);
        CHECK(run.out == "lease 1: 4194304 bytes, first and last byte 0 0\nhugezero/1 released lease=1 status=emptied\n");
        const auto refused = hugezero::test::run_process({HUGEZERO_C_CLIENT, d.socket(), "0"});
        CHECK(refused.exit_code == 1);
        CHECK_MESSAGE(refused.err.find("hugezero/1 error EINVAL ") == 0, refused.err);
        const auto none = hugezero::test::run_process({HUGEZERO_C_CLIENT, (d.dir() / "none").string()});
        CHECK(none.exit_code == 1);
        CHECK(none.err.find("none: No such file or directory") != std::string::npos);
        CHECK(d.stop().exit_code == 0);
    }
#endif

    TEST_CASE("the metrics agree with the pool's statistics and with what the clients did")
    {
        real_pages pages;
        if (!pages.ok)
            return;
        daemon_process d(small_reservoir + "chunk = 4M\n"); // 16 files: both leases warm
        REQUIRE_MESSAGE(d.wait_ready(), d.log());
        hugezerod::client c(d.socket());
        auto a = c.acquire(two_mib(4 * mib, 0));
        auto b = c.acquire(two_mib(2 * mib, 0));
        const auto s = d.status().reservoirs.at(0);
        const std::string text = d.metrics();
        const std::string labels = "{node=\"0\",page_size=\"2M\"}";
        for (const std::string family : {"hugezero_reservoir_target_pages", "hugezero_reservoir_ready_pages", "hugezero_leases_out",
                                         "hugezero_leases_served_total", "hugezero_warm_pages_served_total"})
            CHECK_MESSAGE(text.find("# HELP " + family + " ") != std::string::npos, family);
        CHECK(hugezero::test::metric(text, "hugezero_reservoir_target_pages" + labels) == 32);
        CHECK(hugezero::test::metric(text, "hugezero_leases_out" + labels) == 2);
        CHECK(hugezero::test::metric(text, "hugezero_leases_served_total" + labels) == 2);
        CHECK(hugezero::test::metric(text, "hugezero_warm_pages_served_total" + labels) == 3);
        CHECK(hugezero::test::metric(text, "hugezero_cold_pages_served_total" + labels) == 0);
        CHECK(hugezero::test::metric(text, "hugezero_leases_served_total" + labels) == std::stod(s.at("leases_served")));
        CHECK(hugezero::test::metric(text, "hugezerod_leases_held") == 2);
        CHECK(wait_until([&] { return hugezero::test::metric(d.metrics(), "hugezerod_clients") == 1; })); // c; d.status()'s left
        CHECK(hugezero::test::metric(text, "hugezerod_requests_total{verb=\"acquire\"}") == 2);
        CHECK(hugezero::test::metric(text, "hugezerod_connections_refused_total") == 0);
        CHECK(text.find("# TYPE hugezero_refill_bytes_per_second gauge") != std::string::npos);
        CHECK(hugezero::test::http_get(d.metrics_socket(), "/nothing").find("not found") == 0);
        CHECK(d.stop().exit_code == 0);
    }

    TEST_CASE("bad input gets its error, the connection is closed, and nothing changes")
    {
        real_pages pages;
        if (!pages.ok)
            return;
        daemon_process d(small_reservoir);
        REQUIRE_MESSAGE(d.wait_ready(), d.log());
        const std::uint64_t fds_before = d.fds_at_rest();
        REQUIRE(fds_before > 0);
        const auto expect_refusal = [&](const std::string& text, int fd_to_send, int code, const std::string& words) {
            hugezerod::client c(d.socket());
            REQUIRE(hugezero::send_message(c.fd(), text, fd_to_send) == 0);
            hugezero::socket_message in;
            REQUIRE(hugezero::receive_message(c.fd(), protocol::max_reply, in) == 0);
            const auto r = protocol::parse_reply(in.bytes);
            REQUIRE_MESSAGE(std::holds_alternative<protocol::error_reply>(r), in.bytes);
            CHECK_MESSAGE(std::get<protocol::error_reply>(r).code == code, in.bytes);
            CHECK_MESSAGE(in.bytes.find(words) != std::string::npos, in.bytes);
            CHECK(closed_by_peer(c.fd()));
        };
        expect_refusal("hugezero/1 acquire node=0 page=2M", -1, EINVAL, "acquire needs");
        expect_refusal(std::string(5000, 'A'), -1, EMSGSIZE, "at most 1024 bytes");
        expect_refusal("hugezero/9 status", -1, EPROTO, "speaks hugezero/1, not hugezero/9");
        expect_refusal(std::string("hugezero/1 st\x01tus"), -1, EBADMSG, "printable");
        hugezero::test::temp_dir scratch;
        const int some_fd = ::open(scratch.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        expect_refusal("hugezero/1 status", some_fd, EBADMSG, "takes no fds");
        ::close(some_fd);
        CHECK(d.serving());
        CHECK_MESSAGE(d.fds_back_to(fds_before), d.fd_listing());
        CHECK(hugezero::test::metric(d.metrics(), "hugezerod_bad_requests_total") == 5);
        CHECK(d.reservoir("leases_served") == 0);
        CHECK(d.stop().exit_code == 0);
    }

    TEST_CASE("a peer that is not allowed is refused with EACCES naming its uid, and counted")
    {
        real_pages pages;
        if (!pages.ok)
            return;
        daemon_process d(small_reservoir);
        REQUIRE_MESSAGE(d.wait_ready(), d.log());
        const std::string answer = hugezero::test::asked_as(65534, [&] { (void)hugezerod::client(d.socket()).status(); });
        CHECK(answer.rfind(std::to_string(EACCES) + " ", 0) == 0);
        CHECK_MESSAGE(answer.find("uid 65534 is not allowed by " + d.config_path()) != std::string::npos, answer);
        CHECK(hugezero::test::metric(d.metrics(), "hugezerod_connections_refused_total") == 1);
        CHECK(d.log().find("refused pid ") != std::string::npos);
        CHECK(d.stop().exit_code == 0);
    }

    TEST_CASE("1000 clients killed at random points: every lease is accounted, nothing leaks, the counters are restored")
    {
        real_pages pages;
        if (!pages.ok)
            return;
        const std::uint64_t free_before = free_2m();
        {
            daemon_process d(small_reservoir + "chunk = 2M\n"); // files of one page, before and after
            REQUIRE_MESSAGE(d.wait_ready(), d.log());
            const std::uint64_t fds_before = d.fds_at_rest();
            REQUIRE(fds_before > 0);
            std::mt19937 random(12345);
            constexpr int clients = 1000, at_once = 16;
            std::vector<pid_t> running;
            for (int i = 0; i < clients; ++i) {
                const int point = static_cast<int>(random() % 5);
                const std::uint64_t bytes = 2 * mib; // files of one size: the reservoir's fds come back to their count
                const pid_t child = ::fork();
                if (child == 0) {
                    // Dies by SIGKILL at its point: after connecting, after asking, after the fd
                    // came, after mapping it, or after asking to give it back.
                    try {
                        hugezerod::client c(d.socket());
                        if (point == 0)
                            ::raise(SIGKILL);
                        const std::string request = protocol::format(two_mib(bytes));
                        (void)hugezero::send_message(c.fd(), request);
                        if (point == 1)
                            ::raise(SIGKILL);
                        hugezero::socket_message in;
                        (void)hugezero::receive_message(c.fd(), protocol::max_reply, in);
                        if (point == 2 || in.fds.empty())
                            ::raise(SIGKILL);
                        void* map = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, in.fds.front().get(), 0);
                        if (map != MAP_FAILED)
                            static_cast<unsigned char*>(map)[0] = 1;
                        if (point == 3)
                            ::raise(SIGKILL);
                        const auto lease = std::get<protocol::lease_reply>(protocol::parse_reply(in.bytes));
                        (void)hugezero::send_message(c.fd(), protocol::format(protocol::release_request{lease.id}));
                    } catch (...) {
                    }
                    ::raise(SIGKILL);
                }
                REQUIRE(child > 0);
                running.push_back(child);
                if (running.size() == at_once || i == clients - 1) {
                    for (const pid_t p : running) {
                        int status = 0;
                        ::waitpid(p, &status, 0);
                        CHECK(WIFSIGNALED(status));
                    }
                    running.clear();
                }
            }
            // Every lease back (none held, none out, none waiting for a holder, the reservoir at
            // its target again) and the daemon has the fds it had.
            CHECK_MESSAGE(d.fds_back_to(fds_before), d.fd_listing());
            const std::string text = d.metrics();
            const double granted = hugezero::test::metric(text, "hugezerod_leases_granted_total").value_or(-1);
            const double taken_back = hugezero::test::metric(text, "hugezerod_leases_taken_back_total").value_or(-1);
            const double undelivered = hugezero::test::metric(text, "hugezerod_leases_undelivered_total").value_or(-1);
            CHECK(granted == taken_back); // every lease handed over came back
            CHECK(hugezero::test::metric(text, "hugezero_leases_served_total{node=\"0\",page_size=\"2M\"}") == granted + undelivered);
            CHECK(granted >= 400); // points 2 to 4 had a lease
            CHECK(hugezero::test::metric(text, "hugezerod_leases_held") == 0);
            CHECK(d.stop().exit_code == 0);
        }
        const std::uint64_t free_after = free_2m();
        CHECK_MESSAGE(free_after == free_before, "free 2 MiB pages moved from " << free_before << " to " << free_after
                                                     << ": another process using huge pages meanwhile would explain it");
    }

    TEST_CASE("a client holding a lease across a daemon restart keeps valid memory")
    {
        real_pages pages;
        if (!pages.ok)
            return;
        daemon_process d(small_reservoir);
        REQUIRE_MESSAGE(d.wait_ready(), d.log());
        hugezerod::client c(d.socket()); // open until the daemon stops: the lease is not given back
        const hugezero::unique_fd fd = std::move(c.acquire(two_mib(4 * mib, 0)).fd);
        auto* map = static_cast<unsigned char*>(::mmap(nullptr, 4 * mib, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0));
        REQUIRE(map != MAP_FAILED);
        for (std::uint64_t i = 0; i < 4 * mib; i += 4096)
            map[i] = static_cast<unsigned char>(i / 4096);
        CHECK(d.stop().exit_code == 0);
        d.start();
        REQUIRE_MESSAGE(d.wait_ready(), d.log());
        bool intact = true;
        for (std::uint64_t i = 0; i < 4 * mib; i += 4096)
            intact = intact && map[i] == static_cast<unsigned char>(i / 4096);
        CHECK(intact);
        ::munmap(map, 4 * mib);
        CHECK(d.stop().exit_code == 0);
    }

    TEST_CASE("SIGHUP applies a new target, floor and rate without dropping a lease, and a bad file changes nothing")
    {
        real_pages pages;
        if (!pages.ok)
            return;
        daemon_process d(small_reservoir);
        REQUIRE_MESSAGE(d.wait_ready(), d.log());
        hugezerod::client c(d.socket());
        auto g = c.acquire(two_mib(2 * mib, 0));
        d.write_config("[pool]\nrefill_rate = 1G\n[reservoir]\nnode = 0\npage = 2M\ntarget = 16M\nfloor_pages = 2\n");
        d.send(SIGHUP);
        REQUIRE(wait_until([&] { return d.reservoir("target_pages") == 8; }));
        CHECK(d.reservoir("floor_pages") == 2);
        CHECK(d.status().daemon.at("refill_rate") == std::to_string(std::uint64_t{1} << 30));
        CHECK(d.reservoir("leases_out") == 1);
        CHECK(c.status().daemon.at("leases") == "1"); // the connection and its lease stayed
        d.write_config("[reservoir]\nnode = 0\npage = 2M\ntarget = many\n");
        d.send(SIGHUP);
        REQUIRE(wait_until([&] { return hugezero::test::metric(d.metrics(), "hugezerod_reloads_failed_total") == 1; }));
        CHECK(d.reservoir("target_pages") == 8);
        CHECK(d.log().find("reload refused, the old configuration stays: " + d.config_path() + ":9: target: \"many\"") != std::string::npos);
        d.write_config("[reservoir]\nnode = 0\npage = 2M\ntarget = 16M\nchunk = 4M\n");
        d.send(SIGHUP);
        REQUIRE(wait_until([&] { return hugezero::test::metric(d.metrics(), "hugezerod_reloads_failed_total") == 2; }));
        CHECK(d.log().find("needs a restart") != std::string::npos);
        CHECK(c.release(g.info.id) != "");
        CHECK(d.stop().exit_code == 0);
    }

    TEST_CASE("systemd: READY=1 once the reservoir is filled, STATUS= with its level, and socket activation")
    {
        real_pages pages;
        if (!pages.ok)
            return;
        hugezero::test::notify_socket notify;
        // The listening socket, made here as systemd would, at fd 3 in the daemon.
        hugezero::test::temp_dir socket_dir;
        ::chmod(socket_dir.path().c_str(), 0755);
        const std::string activated = (socket_dir.path() / "activated.sock").string();
        auto listener = hugezerod::listen_unix(activated, SOCK_SEQPACKET, 0666);
        ::fcntl(listener.get(), F_SETFD, 0); // inherited
        const std::string script = "exec 3<&" + std::to_string(listener.get()) + " " + std::to_string(listener.get())
                                   + "<&-; LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\" --config \"$1\" 2>>\"$2\"";
        hugezero::test::temp_dir dir;
        const std::string config = (dir.path() / "c.conf").string();
        std::ofstream(config) << "[daemon]\nsocket = " << (dir.path() / "unused.sock").string() << "\n" << small_reservoir;
        hugezero::test::child_process daemon({"/bin/sh", "-c", script, HUGEZERO_DAEMON, config, (dir.path() / "log").string()},
                                             {notify.env()});
        listener.reset();
        (void)notify.wait_for("READY=1", 30s);
        const std::string all = notify.all();
        CHECK_MESSAGE(all.find("READY=1\nSTATUS=node0/2M 32/32 pages, at target; 0 clients, 0 leases") != std::string::npos, all);
        CHECK_MESSAGE(!std::filesystem::exists(dir.path() / "unused.sock"), "it made a socket of its own");
        hugezerod::client c(activated);
        CHECK(c.status().reservoirs.at(0).at("target_pages") == "32");
        daemon.send(SIGTERM);
        CHECK(daemon.wait(60s).exit_code == 0);
        CHECK_FALSE(notify.wait_for("STOPPING=1", 0ms).empty()); // sent before it ended: queued now
        CHECK(std::filesystem::exists(activated)); // systemd's socket: not the daemon's to remove
    }

    TEST_CASE("a daemon that cannot start says why, exits 1 and leaves no socket file behind")
    {
        real_pages pages;
        if (!pages.ok)
            return;
        hugezero::test::temp_dir dir;
        const auto config = (dir.path() / "c.conf").string();
        std::ofstream(config) << "[daemon]\nsocket = " << (dir.path() / "s.sock").string() << "\nmetrics = unix:"
                              << (dir.path() / "m.sock").string() << "\n[reservoir]\nnode = 0\npage = 2M\ntarget = 8M\n"
                              << "cgroup = " << (dir.path() / "no-such-cgroup").string() << "\n";
        const auto r = hugezero::test::run_process({HUGEZERO_DAEMON, "--config", config});
        CHECK(r.exit_code == 1);
        CHECK_MESSAGE(r.err.find("no-such-cgroup") != std::string::npos, r.err);
        CHECK_FALSE(std::filesystem::exists(dir.path() / "s.sock"));
        CHECK_FALSE(std::filesystem::exists(dir.path() / "m.sock"));
    }

    TEST_CASE("with ready = listening, READY=1 comes before the reservoir is filled, its level in STATUS=")
    {
        real_pages pages;
        if (!pages.ok)
            return;
        hugezero::test::notify_socket notify;
        // 64 MiB at 8 MiB/s: eight seconds to fill, READY=1 at once.
        daemon_process d("[pool]\nrefill_rate = 8M\nbatch = 2M\n[reservoir]\nnode = 0\npage = 2M\ntarget = 64M\n",
                         {notify.env()}, "ready = listening\n");
        const std::string ready = notify.wait_for("READY=1", 30s);
        REQUIRE_FALSE(ready.empty());
        CHECK_MESSAGE(ready.find("STATUS=node0/2M ") != std::string::npos, ready);
        CHECK_MESSAGE(ready.find("/32 pages, ") != std::string::npos, ready);
        CHECK_MESSAGE(ready.find("32/32 pages") == std::string::npos, ready); // not filled yet
        CHECK(d.status().daemon.at("filled") == "0");
        CHECK(d.stop().exit_code == 0);
    }

    TEST_CASE("hugezero-run runs the command on the lease, and says clearly when no lease can be had")
    {
        real_pages pages;
        if (!pages.ok)
            return;
        daemon_process d(small_reservoir);
        REQUIRE_MESSAGE(d.wait_ready(), d.log());
        const auto ran = hugezero::test::run_process({HUGEZERO_RUN, "--socket", d.socket(), "--size", "4M", "--", "/bin/sh", "-c",
                                                      "readlink /proc/self/fd/{fd}; stat -L -c %s {path}; echo {bytes}"});
        CHECK_MESSAGE(ran.exit_code == 0, ran.err);
        CHECK(ran.out == "/memfd:hugezero-node0-2MiB (deleted)\n4194304\n4194304\n");
        CHECK(ran.err == "hugezero-run: lease 1: 2 pages of 2M on node 0, 0 of them cold\n");
        const auto refused = hugezero::test::run_process({HUGEZERO_RUN, "--socket", d.socket(), "--size", "256M", "--", "/bin/true"});
        CHECK(refused.exit_code == 1);
        CHECK_MESSAGE(refused.err.find("hugezero-run: no lease of 256M on node 0: hugezerod: ") == 0, refused.err);
        CHECK(refused.err.find("(--allow-cold takes the missing pages cold)") != std::string::npos);
        REQUIRE(d.wait_ready());
        const auto cold = hugezero::test::run_process(
            {HUGEZERO_RUN, "--socket", d.socket(), "--size", "68M", "--allow-cold", "--", "/bin/sh", "-c", "exit 7"});
        CHECK(cold.exit_code == 7); // the command's own
        // The refill made files of the last lease's size (2 pages): most of these 34 pages are cold.
        CHECK_MESSAGE(cold.err.find("34 pages of 2M on node 0, ") != std::string::npos, cold.err);
        CHECK_MESSAGE(cold.err.find(" of them cold (allocated and zeroed just now)") != std::string::npos, cold.err);
        const auto no_daemon = hugezero::test::run_process({HUGEZERO_RUN, "--socket", (d.dir() / "none").string(), "--size", "2M", "--", "/bin/true"});
        CHECK(no_daemon.exit_code == 1);
        CHECK(no_daemon.err.find("none: cannot connect: No such file or directory") != std::string::npos);
        const auto bad = hugezero::test::run_process({HUGEZERO_RUN, "--size", "2X", "--", "/bin/true"});
        CHECK(bad.exit_code == 2);
        CHECK(d.stop().exit_code == 0);
    }

    TEST_CASE("a connection that said hold keeps its lease and may ask nothing more: hugezero-run hands the command one")
    {
        real_pages pages;
        if (!pages.ok)
            return;
        daemon_process d(small_reservoir);
        REQUIRE_MESSAGE(d.wait_ready(), d.log());
        {
            hugezerod::client c(d.socket());
            const auto g = c.acquire(two_mib(4 * mib, 0));
            CHECK(c.hold() == 1);
            const auto refused = [&](auto&& request) {
                try {
                    request();
                } catch (const hugezerod::client_error& e) {
                    CHECK(e.code() == EPERM);
                    CHECK(std::string(e.what()) == "hugezerod: this connection said hold: it keeps its 1 lease until it closes, and may ask nothing more");
                    return true;
                }
                return false;
            };
            CHECK(refused([&] { (void)c.acquire(two_mib(2 * mib, 0)); }));
            CHECK(refused([&] { (void)c.release(g.info.id); }));
            CHECK(refused([&] { (void)c.status(); }));
            CHECK(refused([&] { (void)c.hold(); }));
            // Refused, not closed: the lease is still this connection's. (Through the metrics:
            // this process said hold, so the daemon refuses it a connection of its own now.)
            const std::string metrics = d.metrics();
            CHECK(hugezero::test::metric(metrics, "hugezerod_leases_held") == 1);
            CHECK(hugezero::test::metric(metrics, "hugezerod_held_requests_refused_total") == 4);
            CHECK(hugezero::test::metric(metrics, "hugezerod_acquires_refused_total") == 1);
            CHECK(hugezero::test::metric(metrics, "hugezerod_requests_total{verb=\"hold\"}") == 2); // the one taken, the one refused
            CHECK(hugezero::test::metric(metrics, "hugezerod_requests_total{verb=\"acquire\"}") == 2);
        }
        REQUIRE(wait_until([&] { return d.status().daemon.at("leases") == "0"; }));
        // The command asks for a lease on the connection it inherited (fd 9): refused unless the
        // launcher was told to hand on a full connection. printf writes once (one packet), dd reads
        // the reply packet whole; timeout turns a daemon that never answers into a failure.
        const std::string ask = "printf 'hugezero/1 acquire node=0 page=2M bytes=2097152' >&9; timeout 10 dd bs=4096 count=1 <&9 2>/dev/null";
        const auto held = hugezero::test::run_process({HUGEZERO_RUN, "--socket", d.socket(), "--size", "2M", "--hold-fd", "9", "-q", "--",
                                                       "/bin/sh", "-c", ask});
        CHECK_MESSAGE(held.exit_code == 0, held.err);
        CHECK(held.out == "hugezero/1 error EPERM this connection said hold: it keeps its 1 lease until it closes, and may ask nothing more");
        const auto full = hugezero::test::run_process({HUGEZERO_RUN, "--socket", d.socket(), "--size", "2M", "--hold-fd", "9", "-q",
                                                       "--full-connection", "--", "/bin/sh", "-c", ask});
        CHECK_MESSAGE(full.exit_code == 0, full.err);
        CHECK_MESSAGE(full.out.rfind("hugezero/1 lease id=", 0) == 0, full.out);
        REQUIRE(wait_until([&] { return d.status().daemon.at("leases") == "0"; }));
        CHECK(d.stop().exit_code == 0);
    }
}
