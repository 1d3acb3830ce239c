// What the daemon suites that run on this machine's 2 MiB huge pages share: a reservation of
// them (root), the kernel's free count to tell that every page came back, and a connection the
// daemon closed.
#ifndef HUGEZERO_TESTS_DAEMON_REAL_PAGES_HPP
#define HUGEZERO_TESTS_DAEMON_REAL_PAGES_HPP

#include <cstdint>

#include <poll.h>
#include <sys/socket.h>

#include <doctest/doctest.h>

#include "support/hugepages.hpp"
#include "support/skip.hpp"

namespace hugezero::test {

/// The kernel's free 2 MiB pages (all nodes).
inline std::uint64_t free_2m()
{
    return read_sysfs_counter("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages").value_or(0);
}

/// Root and @p pages free 2 MiB pages reserved for the test (nr_hugepages restored at the end),
/// or a skip; check_none_lost() says whether every page the test's daemons and tenants took came
/// back.
struct real_pages {
    explicit real_pages(std::uint64_t pages) : reservation(page_2mib, pages)
    {
        if (!running_as_root())
            report_skip("needs root (huge pages, hugetlbfs, another uid's connection)");
        else if (!reservation.ok())
            report_skip(reservation.reason());
        else
            ok = true;
        free_at_start = free_2m();
    }

    /// Every page back: call once the daemons are gone and the tenants' fds closed.
    void check_none_lost() const
    {
        const std::uint64_t now = free_2m();
        CHECK_MESSAGE(now == free_at_start, "free 2 MiB pages: " << free_at_start << " at the start, " << now
                                                                  << " at the end (another process using huge pages meanwhile "
                                                                     "moves them too: run the suites that use huge pages alone)");
    }

    hugepage_reservation reservation;
    bool ok = false;
    std::uint64_t free_at_start = 0;
};

/// Whether the daemon closed connection @p s: the next receive, within 5 s, sees its end.
inline bool closed_by_peer(int s)
{
    pollfd p{s, POLLIN, 0};
    if (::poll(&p, 1, 5000) != 1)
        return false;
    char byte = 0;
    return ::recv(s, &byte, 1, 0) == 0;
}

} // namespace hugezero::test

#endif
