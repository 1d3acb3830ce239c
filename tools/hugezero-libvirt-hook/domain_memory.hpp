// What the libvirt hook reads in a domain's XML (docs/libvirt.md): whether the domain opted in
// (our <metadata> element), and the RAM backends libvirt will give QEMU as files in the
// domain's memory directory: one per guest NUMA cell (`ram-node<N>`), or the whole initial
// memory (`pc.ram`), and one per memory device (its alias, `dimm<N>`), each with its size and
// the host node its pages come from. Pure: XML text in, a plan or a sentence out.
#ifndef HUGEZERO_TOOLS_LIBVIRT_HOOK_DOMAIN_MEMORY_HPP
#define HUGEZERO_TOOLS_LIBVIRT_HOOK_DOMAIN_MEMORY_HPP

#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <libxml/parser.h>
#include <libxml/xpath.h>

#include <hugezero/page_size.hpp>

#include "common/units.hpp"

namespace hugezero_libvirt {

/// The namespace of our <metadata> element.
inline constexpr const char* metadata_namespace = "https://hugezero.dev/xmlns/libvirt/1";

/// A domain XML that asks for what the hook cannot do; the message says what to change.
class domain_error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// One file of guest RAM libvirt hands QEMU.
struct backend {
    std::string alias;   ///< Its file's name in the domain's memory directory.
    unsigned node = 0;   ///< The host node of its pages.
    std::uint64_t bytes = 0;
};

/// A domain's memory, as the hook leases it.
struct domain_memory {
    bool opted_in = false; ///< Our <metadata> element is there.
    std::string id;        ///< The running domain's id (empty before it runs).
    std::string name;
    std::string uuid;
    hugezero::page_size page = hugezero::page_2mib;
    bool cold_allowed = true; ///< Pages the reservoir lacks are allocated at start (else the start fails).
    std::vector<backend> backends;

    /// The tag all its leases are held under, and each lease's name.
    [[nodiscard]] std::string tag() const { return "libvirt-" + uuid; }
    [[nodiscard]] std::string lease_name(const backend& b) const { return tag() + "-" + b.alias; }
};

namespace detail_domain {

using document = std::unique_ptr<xmlDoc, decltype(&xmlFreeDoc)>;
using xpath_context = std::unique_ptr<xmlXPathContext, decltype(&xmlXPathFreeContext)>;
using xpath_result = std::unique_ptr<xmlXPathObject, decltype(&xmlXPathFreeObject)>;

// The nodes @p path selects (relative to @p at, or the document).
inline std::vector<xmlNodePtr> select(xmlXPathContext& c, const std::string& path, xmlNodePtr at = nullptr)
{
    c.node = at;
    const xpath_result r(xmlXPathEvalExpression(reinterpret_cast<const xmlChar*>(path.c_str()), &c), xmlXPathFreeObject);
    std::vector<xmlNodePtr> out;
    if (r && r->nodesetval != nullptr)
        for (int i = 0; i < r->nodesetval->nodeNr; ++i)
            out.push_back(r->nodesetval->nodeTab[i]);
    return out;
}

inline std::optional<std::string> text_of(xmlNodePtr n)
{
    if (n == nullptr)
        return std::nullopt;
    xmlChar* t = xmlNodeGetContent(n);
    std::string s = t != nullptr ? reinterpret_cast<const char*>(t) : "";
    xmlFree(t);
    return s;
}

// The text of the first node @p path selects, if any.
inline std::optional<std::string> first(xmlXPathContext& c, const std::string& path, xmlNodePtr at = nullptr)
{
    const auto nodes = select(c, path, at);
    return nodes.empty() ? std::nullopt : text_of(nodes.front());
}

// A libvirt size (<memory unit='KiB'>N</memory>) in bytes.
inline std::uint64_t bytes_of(const std::string& value, const std::string& unit, const std::string& what)
{
    static const std::pair<const char*, std::uint64_t> units[] = {
        {"b", 1},           {"bytes", 1},        {"KB", 1000},       {"k", 1024},       {"KiB", 1024},
        {"MB", 1000000},    {"M", 1 << 20},      {"MiB", 1 << 20},   {"GB", 1000000000}, {"G", 1 << 30},
        {"GiB", 1 << 30},   {"TB", 1000000000000}, {"T", 1ULL << 40}, {"TiB", 1ULL << 40}};
    const auto n = hugezero_tools::parse_number(value);
    for (const auto& [name, scale] : units)
        if (unit == name && n && *n <= UINT64_MAX / scale)
            return *n * scale;
    throw domain_error(what + ": \"" + value + " " + unit + "\" is not a size libvirt writes");
}

// The one host node of a nodeset ("1"), or a sentence: a lease's pages come from one node.
inline unsigned single_node(const std::string& nodeset, const std::string& what)
{
    const auto n = hugezero_tools::parse_number(nodeset);
    if (!n || *n > 4095)
        throw domain_error(what + ": nodeset \"" + nodeset + "\" is not one host node: a lease's pages come from one node "
                           "(give each guest cell one host node with <numatune><memnode cellid=... nodeset=N/>)");
    return static_cast<unsigned>(*n);
}

inline void read_opt_in(xmlXPathContext& c, domain_memory& d)
{
    const auto ours = select(c, std::string("/domain/metadata/*[namespace-uri()='") + metadata_namespace + "' and local-name()='memory']");
    d.opted_in = !ours.empty();
    if (!d.opted_in)
        return;
    if (const auto page = first(c, "@page", ours.front())) {
        try {
            d.page = hugezero::page_size::parse(*page);
        } catch (const std::invalid_argument&) {
            throw domain_error("<hugezero:memory page=\"" + *page + "\">: expected a huge page size such as 2M or 1G");
        }
    }
    if (const auto cold = first(c, "@cold", ours.front())) {
        if (*cold != "allow" && *cold != "refuse")
            throw domain_error("<hugezero:memory cold=\"" + *cold + "\">: expected allow or refuse");
        d.cold_allowed = *cold == "allow";
    }
}

// What libvirt must be told so that QEMU opens the leases: files, shared, no hugepages.
inline void check_backing(xmlXPathContext& c)
{
    if (first(c, "/domain/memoryBacking/source/@type") != "file")
        throw domain_error("the domain needs <memoryBacking><source type='file'/></memoryBacking>: only then does QEMU open "
                           "files in the domain's memory directory, where the hook places the leases");
    if (!select(c, "/domain/memoryBacking/hugepages").empty())
        throw domain_error("remove <hugepages/> from <memoryBacking>: with it libvirt gives QEMU a directory, not a file the "
                           "hook can place (the leases are huge pages already)");
    const bool shared = first(c, "/domain/memoryBacking/access/@mode") == std::optional<std::string>("shared");
    for (const xmlNodePtr cell : select(c, "/domain/cpu/numa/cell"))
        if (first(c, "@memAccess", cell).value_or(shared ? "shared" : "private") != "shared")
            throw domain_error("guest cell " + first(c, "@id", cell).value_or("?") + " is not shared: a private mapping "
                               "copies each page the guest writes into a new, cold one (<access mode='shared'/>)");
    if (select(c, "/domain/cpu/numa/cell").empty() && !shared)
        throw domain_error("the domain needs <memoryBacking><access mode='shared'/></memoryBacking>: a private mapping copies "
                           "each page the guest writes into a new, cold one");
}

// The host node of guest cell @p cell: its <memnode>, else the domain's <memory nodeset>, else 0.
inline unsigned host_node(xmlXPathContext& c, const std::string& cell)
{
    if (first(c, "/domain/numatune/memory/@placement") == std::optional<std::string>("auto"))
        throw domain_error("<numatune><memory placement='auto'/>: numad chooses the host node after the hook has run; "
                           "bind each guest cell to one node instead (<memnode cellid=... nodeset=N/>)");
    if (const auto set = first(c, "/domain/numatune/memnode[@cellid='" + cell + "']/@nodeset"))
        return single_node(*set, "guest cell " + cell);
    if (const auto set = first(c, "/domain/numatune/memory/@nodeset"))
        return single_node(*set, "<numatune><memory>");
    return 0;
}

inline void read_backends(xmlXPathContext& c, domain_memory& d)
{
    std::uint64_t devices = 0;
    unsigned index = 0;
    for (const xmlNodePtr mem : select(c, "/domain/devices/memory")) {
        const std::string model = first(c, "@model", mem).value_or("?");
        if (model != "dimm")
            throw domain_error("memory device of model " + model + ": the hook leases dimm devices only");
        // libvirt names the devices after the prepare hook: by then the alias is the index's.
        const std::string alias = first(c, "alias/@name", mem).value_or("dimm" + std::to_string(index++));
        const std::uint64_t bytes = bytes_of(first(c, "target/size", mem).value_or(""), first(c, "target/size/@unit", mem).value_or("KiB"),
                                             "memory device " + alias);
        const std::string cell = first(c, "target/node", mem).value_or("0");
        const auto own = first(c, "source/nodemask", mem);
        d.backends.push_back({alias, own ? single_node(*own, "memory device " + alias) : host_node(c, cell), bytes});
        devices += bytes;
    }
    const auto cells = select(c, "/domain/cpu/numa/cell");
    for (const xmlNodePtr cell : cells) {
        const std::string id = first(c, "@id", cell).value_or("?");
        const std::uint64_t bytes = bytes_of(first(c, "@memory", cell).value_or(""), first(c, "@unit", cell).value_or("KiB"), "guest cell " + id);
        d.backends.push_back({"ram-node" + id, host_node(c, id), bytes});
    }
    if (cells.empty()) {
        const std::uint64_t total = bytes_of(first(c, "/domain/memory").value_or(""), first(c, "/domain/memory/@unit").value_or("KiB"), "<memory>");
        if (total <= devices)
            throw domain_error("<memory> is not larger than the memory devices together");
        d.backends.push_back({"pc.ram", host_node(c, "0"), total - devices});
    }
}

} // namespace detail_domain

/// Reads @p xml, a domain's XML as libvirt gives a hook. @throws domain_error if the domain
/// opted in but asks for what the hook cannot lease.
inline domain_memory read_domain_memory(const std::string& xml)
{
    using namespace detail_domain;
    const document doc(xmlReadMemory(xml.data(), static_cast<int>(xml.size()), "domain.xml", nullptr, XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING),
                       xmlFreeDoc);
    if (!doc)
        throw domain_error("the domain XML on stdin does not parse");
    const xpath_context c(xmlXPathNewContext(doc.get()), xmlXPathFreeContext);
    if (!c)
        throw std::bad_alloc();
    domain_memory d;
    read_opt_in(*c, d);
    if (!d.opted_in)
        return d;
    d.id = first(*c, "/domain/@id").value_or("");
    d.name = first(*c, "/domain/name").value_or("");
    d.uuid = first(*c, "/domain/uuid").value_or("");
    if (d.uuid.size() != 36 || d.uuid.find_first_not_of("0123456789abcdefABCDEF-") != std::string::npos)
        throw domain_error("the domain has no <uuid> the hook can name its leases by");
    check_backing(*c);
    read_backends(*c, d);
    return d;
}

} // namespace hugezero_libvirt

#endif
