// In test_daemon (one unit with test_daemon.cpp). Detached, placed leases (docs/daemon.md, "Detached and placed leases"): what the libvirt hook asks of
// the daemon, without libvirt. Root and 64 free 2 MiB pages; each case checks that every page
// came back.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/daemon_process.hpp"
#include "daemon/real_pages.hpp"
#include "support/hugetlbfs.hpp"
#include "support/sizes.hpp"

using hugezero::test::daemon_process;
using hugezero::test::mib;
using hugezero::test::wait_until;
namespace protocol = hugezerod::protocol;

namespace {

struct pages_for_placing : hugezero::test::real_pages {
    pages_for_placing() : hugezero::test::real_pages(64) {}
};

// A named reservoir in <mount>/pool, leases placed in <mount>/ram.
struct placing_daemon {
    hugezero::test::hugetlbfs_mount mount{hugezero::page_2mib};
    std::filesystem::path pool = mount.path() / "pool";
    std::filesystem::path ram = mount.path() / "ram";
    std::unique_ptr<daemon_process> daemon;

    explicit placing_daemon(const std::string& daemon_keys = "")
    {
        REQUIRE_MESSAGE(mount.ok(), mount.reason());
        std::filesystem::create_directories(pool);
        std::filesystem::create_directories(ram / "domain");
        daemon = std::make_unique<daemon_process>("[daemon]\nplace_directories = " + ram.string() + "\n" + daemon_keys
                                                  + "[pool]\nquiet_after_lease = 0ms\nretry_period = 20ms\n"
                                                    "[reservoir]\nnode = 0\npage = 2M\ntarget = 32M\nchunk = 8M\ndirectory = "
                                                  + pool.string() + "\n");
        REQUIRE_MESSAGE(daemon->wait_ready(), daemon->log());
    }
};

protocol::acquire_request detached(const std::string& name, const std::string& place)
{
    protocol::acquire_request r;
    r.bytes = 8 * mib;
    r.max_cold_pages = 0;
    r.name = name;
    r.detach = "libvirt-test";
    r.owner = protocol::file_owner{65534, 65534};
    r.mode = 0600;
    r.place = place;
    return r;
}

struct stat lstat_of(const std::filesystem::path& p)
{
    struct stat st {};
    REQUIRE_MESSAGE(::lstat(p.c_str(), &st) == 0, p);
    return st;
}

} // namespace

TEST_SUITE("daemon")
{
    TEST_CASE("a detached lease outlives its connection at its placed path, owned as asked, until its tag is released")
    {
        pages_for_placing pages;
        if (!pages.ok)
            return;
        {
            placing_daemon p;
            daemon_process& d = *p.daemon;
            const auto place = p.ram / "domain" / "ram-node0";
            hugezero::unique_fd kept;
            {
                hugezerod::client hook(d.socket());
                auto g = hook.acquire(detached("libvirt-test-ram-node0", place.string()));
                CHECK(g.info.cold == 0);
                CHECK(g.info.path == (p.pool / "libvirt-test-ram-node0").string());
                kept = std::move(g.fd);
            } // the hook exits: the lease stays
            const struct stat st = lstat_of(place);
            CHECK(S_ISREG(st.st_mode));
            CHECK(st.st_ino == lstat_of(p.pool / "libvirt-test-ram-node0").st_ino);
            CHECK(st.st_uid == 65534);
            CHECK(st.st_gid == 65534);
            CHECK((st.st_mode & 07777) == 0600);
            CHECK(st.st_size == static_cast<off_t>(8 * mib));
            hugezerod::client admin(d.socket());
            CHECK(admin.status().daemon.at("detached") == "1");
            CHECK(hugezero::test::metric(d.metrics(), "hugezerod_leases_detached") == 1);
            const auto other = admin.release_tag("libvirt-other");
            CHECK(other.leases == 0);
            CHECK(other.status == "none");
            const auto back = admin.release_tag("libvirt-test");
            CHECK(back.leases == 1);
            CHECK(back.status == "emptied");
            CHECK_FALSE(std::filesystem::exists(place)); // the placed link went
            CHECK_FALSE(std::filesystem::exists(p.pool / "libvirt-test-ram-node0"));
            struct stat after {};
            REQUIRE(::fstat(kept.get(), &after) == 0);
            CHECK(after.st_uid == 0); // given back to the daemon's user
            CHECK((after.st_mode & 07777) == 0600);
            CHECK(after.st_blocks == 0); // emptied
            CHECK(admin.status().daemon.at("detached") == "0");
            kept.reset();
            CHECK(d.stop().exit_code == 0);
        } // the mount goes, with the reservoir's ready files
        pages.check_none_lost();
    }

    TEST_CASE("a daemon stopped with a detached lease out leaves its file, and the next daemon empties it once nothing refers to it")
    {
        pages_for_placing pages;
        if (!pages.ok)
            return;
        {
            placing_daemon p;
            daemon_process& d = *p.daemon;
            const auto place = p.ram / "domain" / "ram-node0";
            const auto name = p.pool / "libvirt-test-ram-node0";
            hugezero::unique_fd vm; // QEMU, still running on it
            {
                hugezerod::client hook(d.socket());
                vm = hook.acquire(detached("libvirt-test-ram-node0", place.string())).fd;
            }
            CHECK(d.stop().exit_code == 0);
            CHECK(std::filesystem::exists(name)); // not removed: the next daemon has to see it
            d.start();
            REQUIRE_MESSAGE(d.wait_ready(), d.log());
            CHECK(wait_until([&] { return d.reservoir("waiting_pages") == 4; })); // watched: the fd refers to it
            CHECK(lstat_of(name).st_blocks > 0);
            hugezerod::client hook(d.socket());
            CHECK(hook.release_tag("libvirt-test").leases == 0); // this daemon never made it
            vm.reset();                                              // QEMU exits
            std::filesystem::remove(place);                           // libvirt removes its directory
            CHECK(wait_until([&] { return !std::filesystem::exists(name); }));
            CHECK(d.reservoir("waiting_pages") == 0);
            CHECK(d.stop().exit_code == 0);
        }
        pages.check_none_lost();
    }

    TEST_CASE("a placement the daemon must refuse: not an admin, outside place_directories, across a mount, into another's directory, over a file, from a memfd")
    {
        pages_for_placing pages;
        if (!pages.ok)
            return;
        {
            placing_daemon p("allow_users = root 65534\n");
            daemon_process& d = *p.daemon;
            const auto as_nobody = hugezero::test::asked_as(65534, [&] { (void)hugezerod::client(d.socket()).acquire(detached("a", (p.ram / "domain" / "a").string())); });
            CHECK_MESSAGE(as_nobody.rfind(std::to_string(EPERM) + " hugezerod: uid 65534 is not among admin_users of ", 0) == 0, as_nobody);
            hugezerod::client hook(d.socket());
            const auto refused = [&](protocol::acquire_request r) -> std::pair<int, std::string> {
                r.max_cold_pages.reset(); // warm or not: the placement is what is refused
                try {
                    (void)hook.acquire(r);
                    return {0, "granted"};
                } catch (const hugezerod::client_error& e) {
                    return {e.code(), e.what()};
                }
            };
            auto outside = refused(detached("b", "/tmp/hugezero-elsewhere"));
            CHECK(outside.first == EPERM);
            CHECK(outside.second == "hugezerod: /tmp/hugezero-elsewhere is not beneath a directory of place_directories");
            // hugetlbfs has no symbolic links; another mount inside is refused as one would be.
            std::filesystem::create_directory(p.ram / "other-mount");
            REQUIRE(::mount("none", (p.ram / "other-mount").c_str(), "tmpfs", 0, "size=1M") == 0);
            CHECK(refused(detached("c", (p.ram / "other-mount" / "c").string())).first == EXDEV);
            ::umount((p.ram / "other-mount").c_str());
            CHECK(refused(detached("d", (p.ram / "absent" / "d").string())).first == ENOENT);
            // A directory of another user than the lease's owner, or writable by others: a tenant's.
            std::filesystem::create_directory(p.ram / "someone-elses");
            REQUIRE(::chown((p.ram / "someone-elses").c_str(), 1000, 1000) == 0);
            auto foreign = refused(detached("g", (p.ram / "someone-elses" / "g").string()));
            CHECK(foreign.first == EPERM);
            CHECK_MESSAGE(foreign.second.find("belongs to uid 1000, mode 0755: a lease is placed only in a directory of") != std::string::npos,
                          foreign.second);
            std::filesystem::create_directory(p.ram / "open");
            REQUIRE(::chmod((p.ram / "open").c_str(), 01777) == 0);
            CHECK(refused(detached("h", (p.ram / "open" / "h").string())).first == EPERM);
            REQUIRE(::chown((p.ram / "someone-elses").c_str(), 65534, 65534) == 0); // the lease's owner's: placed
            {
                hugezerod::client other(d.socket());
                auto r = detached("i", (p.ram / "someone-elses" / "i").string());
                r.max_cold_pages.reset();
                CHECK(other.acquire(r).info.pages == 4);
                CHECK(other.release_tag("libvirt-test").leases == 1);
            }
            { std::ofstream(p.ram / "domain" / "taken") << "x"; }
            const ino_t taken = lstat_of(p.ram / "domain" / "taken").st_ino;
            auto over = refused(detached("e", (p.ram / "domain" / "taken").string()));
            CHECK(over.first == EEXIST);
            CHECK(lstat_of(p.ram / "domain" / "taken").st_ino == taken);
            // Every refused lease goes back (on a job thread, after the refusal), its name too: the
            // reservoir then holds only ready files.
            const auto only_ready_files = [&] {
                for (const auto& e : std::filesystem::directory_iterator(p.pool))
                    if (e.path().filename().string().rfind("hugezero.", 0) != 0)
                        return false;
                return true;
            };
            CHECK(wait_until(only_ready_files));
            CHECK(hook.status().daemon.at("detached") == "0");
            CHECK(d.stop().exit_code == 0);

            daemon_process memfd("[daemon]\nplace_directories = " + p.ram.string()
                                 + "\n[reservoir]\nnode = 0\npage = 2M\ntarget = 8M\n");
            REQUIRE_MESSAGE(memfd.wait_ready(), memfd.log());
            hugezerod::client c(memfd.socket());
            try {
                (void)c.acquire(detached("f", (p.ram / "domain" / "f").string()));
                FAIL("a memfd lease was placed");
            } catch (const hugezerod::client_error& e) {
                CHECK(e.code() == EINVAL);
                CHECK(std::string(e.what()).find("from a memfd reservoir has no file to place") != std::string::npos);
        }
        CHECK(memfd.stop().exit_code == 0);
        }
        pages.check_none_lost();
    }
}
