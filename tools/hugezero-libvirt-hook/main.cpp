// hugezero-libvirt-hook: libvirt's QEMU hook (installed as /etc/libvirt/hooks/qemu.d/hugezero,
// docs/libvirt.md). For a domain whose XML carries our <metadata> element, it leases the
// domain's RAM from hugezerod before QEMU starts, one lease per RAM backend, each a detached
// lease placed where libvirt tells QEMU to open it (<memory_backing_dir>/libvirt/qemu/<id>-<name>/
// <alias>), owned by the user and group libvirt gave that directory (QEMU's); and gives them
// all back when the domain is released (stopped, or failed to start). libvirt runs it as
//
//   hugezero-libvirt-hook DOMAIN OPERATION SUB-OPERATION EXTRA   (the domain's XML on stdin)
//
// prepare/begin checks the XML, start/begin leases, release/end gives back; every other
// operation is left alone. A non-zero exit at prepare or start makes libvirt refuse the start
// with what this printed.
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include <dirent.h>
#include <sys/stat.h>

#include <hugezero/version.hpp>

#include "hugezero-libvirt-hook/domain_memory.hpp"
#include "protocol/client.hpp"

namespace {

constexpr const char* qemu_conf = "/etc/libvirt/qemu.conf";
constexpr const char* default_backing_dir = "/var/lib/libvirt/qemu/ram"; // libvirt's, without memory_backing_dir
// The longest wait for one answer of the daemon (a cold lease of many GiB takes seconds): libvirt
// waits for its hook, so a daemon that never answers must not hold a domain's start for ever.
constexpr std::chrono::milliseconds answer_within = std::chrono::minutes(10);

void usage(std::ostream& out)
{
    out << "usage: hugezero-libvirt-hook DOMAIN OPERATION SUB-OPERATION EXTRA   (the domain's XML on stdin)\n"
           "libvirt's QEMU hook: leases an opted-in domain's RAM from hugezerod at start/begin, gives it back at\n"
           "release/end, checks the domain's XML at prepare/begin. Install it as /etc/libvirt/hooks/qemu.d/hugezero\n"
           "and restart libvirtd; see "
        << HUGEZERO_DOC_DIR << "/libvirt.md.\n";
}

// memory_backing_dir of libvirt's qemu.conf (`memory_backing_dir = "/path"`), or libvirt's default.
std::string memory_backing_dir()
{
    std::ifstream in(qemu_conf);
    for (std::string line; std::getline(in, line);) {
        const std::size_t key = line.find_first_not_of(" \t");
        if (key == std::string::npos || line.compare(key, 18, "memory_backing_dir") != 0
            || line.find_first_not_of(" \t", key + 18) != line.find('=', key))
            continue;
        const std::size_t open = line.find('"', key), close = line.rfind('"');
        if (open != std::string::npos && close > open)
            return line.substr(open + 1, close - open - 1);
    }
    return default_backing_dir;
}

// The directory libvirt made for running domain @p d's memory files: <dir>/libvirt/qemu/<id>-<name>,
// the name cut at 20 characters (libvirt's virDomainDefGetShortName). A name that is not ASCII
// is cut by libvirt in wide characters: its directory is found by the id alone, and must be
// the only one of that id.
std::string domain_directory(const hugezero_libvirt::domain_memory& d)
{
    if (d.id.empty() || d.id.find_first_not_of("0123456789") != std::string::npos)
        throw std::runtime_error("the domain XML has no id: the hook leases at start/begin, when the domain has one");
    const std::string parent = memory_backing_dir() + "/libvirt/qemu";
    const bool ascii = std::all_of(d.name.begin(), d.name.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
    if (ascii)
        return parent + "/" + d.id + "-" + d.name.substr(0, 20);
    DIR* dir = ::opendir(parent.c_str());
    if (dir == nullptr)
        throw std::runtime_error("cannot list " + parent + " (memory_backing_dir of " + qemu_conf + "): " + std::strerror(errno));
    std::vector<std::string> found;
    const std::string prefix = d.id + "-";
    while (const dirent* e = ::readdir(dir))
        if (std::strncmp(e->d_name, prefix.c_str(), prefix.size()) == 0)
            found.push_back(parent + "/" + e->d_name);
    ::closedir(dir);
    if (found.size() != 1)
        throw std::runtime_error(std::to_string(found.size()) + " directories of domain id " + d.id + " in " + parent
                                 + " (expected libvirt's one, made before the start hook)");
    return found.front();
}

void give_back(const hugezero_libvirt::domain_memory& d, hugezerod::client& daemon)
{
    const auto r = daemon.release_tag(d.tag());
    if (r.leases > 0)
        std::cerr << "hugezero: domain " << d.name << ": " << hugezero_tools::count_text(r.leases, "lease") << " given back (" << r.status << ")\n";
}

// Leases every backend of @p d, placed in its directory; on any failure gives back those made.
void lease_all(const hugezero_libvirt::domain_memory& d)
{
    const std::string dir = domain_directory(d);
    struct stat st {};
    if (::lstat(dir.c_str(), &st) != 0)
        throw std::runtime_error("cannot find libvirt's memory directory of the domain, " + dir + ": " + std::strerror(errno)
                                 + " (memory_backing_dir of " + qemu_conf + ", and <source type='file'/>)");
    if (!S_ISDIR(st.st_mode))
        throw std::runtime_error(dir + " is not a directory (a symbolic link, or a file, in its place)");
    hugezerod::client daemon(hugezerod::protocol::default_socket, answer_within);
    give_back(d, daemon); // what a release hook that never ran left
    try {
        for (const auto& b : d.backends) {
            hugezerod::protocol::acquire_request r;
            r.node = hugezero::node_id(b.node);
            r.page = d.page;
            r.bytes = b.bytes;
            r.name = d.lease_name(b);
            r.detach = d.tag();
            r.owner = hugezerod::protocol::file_owner{st.st_uid, st.st_gid};
            r.mode = 0600;
            r.place = dir + "/" + b.alias;
            if (!hugezerod::protocol::valid_place(r.place) || r.place.find(' ') != std::string::npos)
                throw std::runtime_error("cannot place a lease at \"" + r.place + "\": the protocol carries paths without spaces, "
                                         "of at most " + std::to_string(hugezerod::protocol::max_place) + " bytes (rename the domain)");
            if (!d.cold_allowed)
                r.max_cold_pages = 0;
            const auto g = daemon.acquire(r);
            std::cerr << "hugezero: domain " << d.name << ": " << b.alias << " leased on node " << b.node << ", "
                      << g.info.pages << " pages (" << g.info.cold << " cold), at " << r.place << '\n';
        }
    } catch (...) {
        give_back(d, daemon);
        throw;
    }
}

// SELinux in enforcing mode separates domains by the label of their files, which a lease, made
// by the daemon and linked in, does not carry: refuse rather than leave one domain's RAM open to
// the others.
void check_no_selinux()
{
    std::ifstream enforce("/sys/fs/selinux/enforce");
    char mode = '0';
    if (enforce >> mode && mode == '1')
        throw std::runtime_error("SELinux is enforcing, and hugezero does not label leases for libvirt's sVirt: the domain's "
                                 "RAM would carry no category of its own (remove the <hugezero:memory> element, docs/libvirt.md)");
}

int run(const std::string& operation, const std::string& sub_operation)
{
    const std::string xml(std::istreambuf_iterator<char>(std::cin), {});
    const auto d = hugezero_libvirt::read_domain_memory(xml); // checks it at every operation
    if (!d.opted_in)
        return 0;
    if (operation == "prepare" || operation == "start")
        check_no_selinux();
    if (operation == "start" && sub_operation == "begin")
        lease_all(d);
    else if (operation == "release" && sub_operation == "end") {
        hugezerod::client daemon(hugezerod::protocol::default_socket, answer_within);
        give_back(d, daemon);
    }
    return 0;
}

} // namespace

int main(int argc, char** argv)
{
    const std::vector<std::string> args(argv + 1, argv + argc);
    if (args.size() == 1 && (args[0] == "--help" || args[0] == "-h")) {
        usage(std::cout);
        return 0;
    }
    if (args.size() == 1 && args[0] == "--version") {
        std::cout << "hugezero-libvirt-hook " << hugezero::version_string << '\n';
        return 0;
    }
    if (args.size() < 3) {
        usage(std::cerr);
        return 2;
    }
    try {
        return run(args[1], args[2]);
    } catch (const std::exception& e) {
        std::cerr << "hugezero: domain " << args[0] << ": " << args[1] << "/" << args[2] << ": " << e.what() << '\n';
        return 1;
    }
}
