// `hugezerod --check`: a configuration checked against this machine, without starting.
#ifndef HUGEZERO_TOOLS_HUGEZEROD_CHECK_COMMAND_HPP
#define HUGEZERO_TOOLS_HUGEZEROD_CHECK_COMMAND_HPP

#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include <sys/stat.h>

#include <hugezero/machine.hpp>

#include "common/units.hpp"
#include "hugezerod/config_file.hpp"
#include "hugezerod/listeners.hpp"
#include "hugezerod/shortfall.hpp"

namespace hugezerod {

/// Each of place_directories is a directory, on the mount of a named reservoir (a lease is
/// placed as a second link to its file: from another mount it cannot be).
inline void check_place_directories(const config& c)
{
    std::vector<std::string> errors;
    for (const auto& dir : c.place_directories) {
        struct stat place {};
        if (::stat(dir.c_str(), &place) != 0 || !S_ISDIR(place.st_mode)) {
            errors.push_back(c.file + ": place_directories: " + dir + " is not a directory (libvirt's memory_backing_dir: make it)");
            continue;
        }
        bool shared = false;
        for (const auto& r : c.reservoirs) {
            struct stat reservoir {};
            shared = shared || (!r.options.directory.empty() && ::stat(r.options.directory.c_str(), &reservoir) == 0
                                && reservoir.st_dev == place.st_dev);
        }
        if (!shared)
            errors.push_back(c.file + ": place_directories: " + dir + " is on no named reservoir's mount: a lease is placed "
                             + "as a second link to a reservoir's file, so put it on the hugetlbfs of a reservoir's directory");
    }
    throw_all(errors);
}

/// Warns (on stdout, with the summary) where this machine's free huge pages cannot fill a
/// reservoir of @p c now, or where there is no reservoir at all.
inline void warn_uncovered_targets(const config& c, const hugezero::machine& m)
{
    if (c.reservoirs.empty())
        std::cout << c.file << ": warning: no [reservoir]: every lease will be allocated and zeroed when asked for (cold), on "
                  << "the VM's start path (man hugezerod.conf)\n";
    for (const auto& r : c.reservoirs) {
        const hugezero::hstate& h = r.options.which;
        const std::uint64_t page = h.size.bytes();
        const std::uint64_t needed = (r.options.target_bytes + page - 1) / page + r.options.floor_pages;
        const std::uint64_t free = m.available(h);
        if (free >= needed)
            continue;
        const auto node = static_cast<unsigned>(h.node.value());
        std::cout << c.file << ":" << r.line << ": warning: [reservoir] node" << node << " " << hugezero_tools::page_text(h.size)
                  << (r.options.floor_pages != 0 ? ": its target and floor_pages need " : ": its target needs ") << needed
                  << " free pages, and the node has " << free << " now (pages a running hugezerod holds are not free): "
                  << reserve_advice(node, h.size, needed - free) << '\n';
    }
}

/// Checks @p c against this machine and prints a summary. @throws config_error naming the file,
/// line and key of everything that is wrong, a line each.
inline int check_command(const config& c)
{
    const hugezero::machine m = hugezero::machine::open();
    std::vector<std::string> errors;
    const auto keep = [&](const auto& check) {
        try {
            check();
        } catch (const config_error& e) {
            errors.emplace_back(e.what());
        }
    };
    keep([&] { check_against(c, m); });
    if (c.metrics.rfind("tcp:", 0) == 0) {
        try {
            (void)tcp_address(c.metrics);
        } catch (const socket_error& e) {
            errors.push_back(c.file + ": metrics: " + e.what());
        }
    }
    for (const auto& r : c.reservoirs)
        for (const auto& dir : {r.options.cgroup, r.options.directory})
            if (!dir.empty() && !std::filesystem::is_directory(dir))
                errors.push_back(c.file + ":" + std::to_string(r.line) + ": [reservoir]: " + dir.string() + " is not a directory");
    keep([&] { check_place_directories(c); });
    throw_all(errors);
    std::cout << c.file << ": ok: socket " << c.socket << ", metrics " << (c.metrics.empty() ? "off" : c.metrics) << ", "
              << hugezero_tools::count_text(c.reservoirs.size(), "reservoir") << '\n';
    for (const auto& dir : c.place_directories)
        std::cout << "  leases may be placed beneath " << dir << " (admin_users only)\n";
    for (const auto& r : c.reservoirs) {
        std::cout << "  " << hugezero_tools::hstate_text(r.options.which) << ": target " << hugezero_tools::size_text(r.options.target_bytes) << ", floor "
                  << r.options.floor_pages << " pages" << (r.options.cgroup.empty() ? "" : ", cgroup " + r.options.cgroup.string())
                  << (r.options.directory.empty() ? "" : ", directory " + r.options.directory.string())
                  << (r.options.recycle ? ", recycles the leases of trusted_users" : "") << '\n';
        if (r.options.recycle && c.trusted_users.empty())
            std::cout << c.file << ":" << r.line << ": warning: recycle = trusted-peers, but trusted_users is empty: "
                      << "every lease given back is emptied (list the users to trust in [daemon])\n";
    }
    warn_uncovered_targets(c, m);
    return 0;
}

} // namespace hugezerod

#endif
