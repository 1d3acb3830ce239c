// The isolation soak (root, real 2 MiB pages; label isolation): hostile tenants, each a process
// of its own, lease memory from one hugezerod with the shipped defaults for a while. Each
// checks that every byte of every lease it gets is zero (a tenant's bytes carry its number, so
// a byte of another's would say whose), writes its own pattern, keeps a way back in as a hostile
// tenant would (an O_PATH descriptor in flight in a socket, a mapping, pages spliced into a
// pipe, a file grown and holed), gives the lease back, and checks later that what it kept
// reaches nothing but its own bytes. At the end every page is back in the kernel's free pool.
//
// The case runs HUGEZERO_ISOLATION_SOAK_SECONDS (default 20, 5 under the sanitizers); for the
// 10-minute run:
//   sudo HUGEZERO_ISOLATION_SOAK_SECONDS=600 build/dev/tests/test_isolation_soak
#include <doctest/doctest.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hugezero/socket_message.hpp>

#include "daemon/daemon_process.hpp"
#include "daemon/real_pages.hpp"
#include "support/hugepages.hpp"
#include "support/sizes.hpp"
#include "support/skip.hpp"
#include "support/threads.hpp"

using hugezero::test::daemon_process;
using hugezero::test::mib;
using hugezero::unique_fd;

namespace {

constexpr std::size_t spliced_bytes = 64 * 1024;

// What one tenant saw; a tenant process sends it to the test through a pipe.
struct tenant_report {
    std::uint64_t leases = 0;          // leases it got
    std::uint64_t bytes_checked = 0;   // bytes of them it read (every byte)
    std::uint64_t foreign_bytes = 0;   // bytes that carried another tenant's number
    std::uint64_t dirty_bytes = 0;     // other bytes that were not zero
    std::uint64_t kept_checks = 0;     // ways back in it tried after giving a lease back
    std::uint64_t kept_violations = 0; // ... that reached pages, or bytes not its own
    std::uint64_t refusals = 0;        // acquires refused (ENOSPC, EBUSY: the others hold the pages)
    std::uint64_t errors = 0;          // anything else unexpected
};

// A tenant's byte for lease @p n: its number in the high nibble, never zero.
unsigned char pattern(unsigned tenant, std::uint64_t n) { return static_cast<unsigned char>(((tenant + 1) << 4) | (n % 15 + 1)); }

class tenant {
public:
    tenant(unsigned number, std::string socket) : number_(number), socket_(std::move(socket)), random_(number * 7919 + 1) {}

    tenant_report run(std::chrono::steady_clock::time_point until)
    {
        hugezerod::client c(socket_);
        for (std::uint64_t n = 0; std::chrono::steady_clock::now() < until; ++n) {
            one_lease(c, n);
            if (n % 8 == 7)
                look_back();
        }
        look_back();
        for (void* map : kept_maps_)
            ::munmap(map, 2 * mib);
        return report_;
    }

private:
    void one_lease(hugezerod::client& c, std::uint64_t n)
    {
        hugezerod::protocol::acquire_request r;
        r.bytes = (1 + random_() % 4) * 2 * mib;
        hugezerod::granted_lease g;
        try {
            g = c.acquire(r);
        } catch (const hugezerod::client_error& e) {
            ++(e.code() == ENOSPC || e.code() == EBUSY ? report_.refusals : report_.errors);
            return;
        }
        ++report_.leases;
        auto* map = static_cast<unsigned char*>(::mmap(nullptr, r.bytes, PROT_READ | PROT_WRITE, MAP_SHARED, g.fd.get(), 0));
        if (map == MAP_FAILED) {
            ++report_.errors;
            return;
        }
        check_zero(map, r.bytes);
        const unsigned char mine = pattern(number_, n);
        std::memset(map, mine, r.bytes);
        keep_a_way_back(g, map, r.bytes, mine);
        g.fd.reset();
        try {
            if (c.release(g.info.id) != "emptied")
                ++report_.errors;
        } catch (const std::exception&) {
            ++report_.errors;
        }
    }

    void check_zero(const unsigned char* map, std::uint64_t bytes)
    {
        for (std::uint64_t i = 0; i < bytes; ++i) {
            if (map[i] == 0)
                continue;
            ++((map[i] >> 4) != number_ + 1 ? report_.foreign_bytes : report_.dirty_bytes);
        }
        report_.bytes_checked += bytes;
    }

    // One of the ways back in a hostile tenant keeps, at random (or none); unmaps @p map unless
    // it keeps the mapping.
    void keep_a_way_back(const hugezerod::granted_lease& g, unsigned char* map, std::uint64_t bytes, unsigned char mine)
    {
        switch (random_() % 5) {
        case 0: { // an O_PATH descriptor in flight in a socket it keeps
            int pair[2];
            const unique_fd path_only(::open(("/proc/self/fd/" + std::to_string(g.fd.get())).c_str(), O_PATH | O_CLOEXEC));
            if (!path_only || ::socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, pair) != 0
                || hugezero::send_message(pair[0], "x", path_only.get()) != 0) {
                ++report_.errors;
                break;
            }
            in_flight_.push_back({unique_fd(pair[0]), unique_fd(pair[1])});
            break;
        }
        case 1: // the mapping itself (it must never reach a page again: not read, only dropped)
            if (kept_maps_.size() < 4 && bytes == 2 * mib) {
                kept_maps_.push_back(map);
                return;
            }
            break;
        case 2: { // pages spliced into a pipe it keeps
            int p[2];
            if (::pipe2(p, O_CLOEXEC) != 0) {
                ++report_.errors;
                break;
            }
            iovec v{map, spliced_bytes};
            if (::vmsplice(p[1], &v, 1, 0) != static_cast<ssize_t>(spliced_bytes))
                ++report_.errors;
            pipes_.push_back({unique_fd(p[0]), unique_fd(p[1]), mine});
            break;
        }
        case 3: // grown by a page, written there, page 0 punched out
            if (::ftruncate(g.fd.get(), static_cast<off_t>(bytes + 2 * mib)) == 0) {
                void* more = ::mmap(nullptr, bytes + 2 * mib, PROT_READ | PROT_WRITE, MAP_SHARED, g.fd.get(), 0);
                if (more != MAP_FAILED) {
                    std::memset(static_cast<unsigned char*>(more) + bytes, mine, 2 * mib);
                    ::munmap(more, bytes + 2 * mib);
                }
                (void)::fallocate(g.fd.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 2 * mib);
            }
            break;
        default:
            break;
        }
        ::munmap(map, bytes);
    }

    // Uses what it kept: an O_PATH descriptor opens an empty file, a pipe gives back its own bytes.
    void look_back()
    {
        for (auto& kept : in_flight_) {
            ++report_.kept_checks;
            hugezero::socket_message m;
            if (hugezero::receive_message(kept.receiver.get(), 16, m) != 0 || m.fds.size() != 1) {
                ++report_.errors;
                continue;
            }
            const unique_fd again(::open(("/proc/self/fd/" + std::to_string(m.fds[0].get())).c_str(), O_RDWR | O_CLOEXEC));
            struct stat st {};
            if (!again || ::fstat(again.get(), &st) != 0 || st.st_blocks != 0 || st.st_size != 0)
                ++report_.kept_violations;
        }
        in_flight_.clear();
        for (auto& kept : pipes_) {
            ++report_.kept_checks;
            std::string got(spliced_bytes, '\0');
            if (::read(kept.read_end.get(), got.data(), spliced_bytes) != static_cast<ssize_t>(spliced_bytes)
                || got.find_first_not_of(static_cast<char>(kept.mine)) != std::string::npos)
                ++report_.kept_violations;
        }
        pipes_.clear();
        for (void* map : kept_maps_)
            ::munmap(map, 2 * mib);
        kept_maps_.clear();
    }

    struct in_flight {
        unique_fd sender, receiver;
    };
    struct spliced {
        unique_fd read_end, write_end;
        unsigned char mine;
    };

    unsigned number_;
    std::string socket_;
    std::minstd_rand random_;
    tenant_report report_;
    std::vector<in_flight> in_flight_;
    std::vector<spliced> pipes_;
    std::vector<void*> kept_maps_;
};

// HUGEZERO_ISOLATION_SOAK_SECONDS, else 20 s (5 s under the sanitizers, which check every
// byte each tenant reads and writes one by one).
std::chrono::seconds soak_length()
{
    const char* text = std::getenv("HUGEZERO_ISOLATION_SOAK_SECONDS");
    return std::chrono::seconds(text != nullptr ? std::max(1L, std::strtol(text, nullptr, 10))
                                                : hugezero::test::sanitized_build ? 5L : 20L);
}

} // namespace

TEST_SUITE("isolation")
{
    TEST_CASE("soak: hostile tenants in processes of their own never see another's bytes, and no page is lost")
    {
        const hugezero::test::real_pages pages(64);
        if (!pages.ok)
            return;
        constexpr unsigned tenants = 4;
        const auto length = soak_length();
        tenant_report total;
        {
            daemon_process d("[pool]\nquiet_after_lease = 0ms\nretry_period = 20ms\n"
                             "[reservoir]\nnode = 0\npage = 2M\ntarget = 32M\nchunk = 4M\n");
            REQUIRE_MESSAGE(d.wait_ready(), d.log());
            const auto until = std::chrono::steady_clock::now() + length;
            std::vector<std::pair<pid_t, unique_fd>> children;
            for (unsigned t = 0; t < tenants; ++t) {
                int p[2];
                REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
                const pid_t child = ::fork();
                REQUIRE(child >= 0);
                if (child == 0) {
                    ::close(p[0]);
                    tenant_report r;
                    try {
                        r = tenant(t, d.socket()).run(until);
                    } catch (...) {
                        r.errors = ~std::uint64_t{0};
                    }
                    (void)!::write(p[1], &r, sizeof r);
                    ::_exit(0);
                }
                ::close(p[1]);
                children.emplace_back(child, unique_fd(p[0]));
            }
            for (auto& [child, report] : children) {
                tenant_report r;
                CHECK(::read(report.get(), &r, sizeof r) == static_cast<ssize_t>(sizeof r));
                int status = 0;
                CHECK(::waitpid(child, &status, 0) == child);
                CHECK(WIFEXITED(status));
                total.leases += r.leases;
                total.bytes_checked += r.bytes_checked;
                total.foreign_bytes += r.foreign_bytes;
                total.dirty_bytes += r.dirty_bytes;
                total.kept_checks += r.kept_checks;
                total.kept_violations += r.kept_violations;
                total.refusals += r.refusals;
                total.errors += r.errors;
            }
            CHECK(d.stop().exit_code == 0);
        }
        const std::uint64_t free_at_end = hugezero::test::free_2m();
        std::cout << "isolation soak: " << length.count() << " s, " << tenants << " tenants, " << total.leases << " leases, "
                  << total.bytes_checked / mib << " MiB checked, " << total.foreign_bytes << " bytes of another tenant, "
                  << total.dirty_bytes << " other non-zero bytes, " << total.kept_checks << " ways back in tried, "
                  << total.kept_violations << " reached a page, " << total.refusals << " refusals, " << total.errors
                  << " errors; free 2 MiB pages " << pages.free_at_start << " before, " << free_at_end << " after\n";
        CHECK(total.leases > 0);
        CHECK(total.foreign_bytes == 0);
        CHECK(total.dirty_bytes == 0);
        CHECK(total.kept_violations == 0);
        CHECK(total.errors == 0);
        pages.check_none_lost();
    }
}
