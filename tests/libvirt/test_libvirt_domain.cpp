// What hugezero-libvirt-hook reads in a domain's XML (tools/hugezero-libvirt-hook/domain_memory.hpp),
// and its command line, without libvirt or root. Label libvirt.
#include <doctest/doctest.h>

#include <string>

#include "hugezero-libvirt-hook/domain_memory.hpp"
#include "support/subprocess.hpp"

using hugezero_libvirt::read_domain_memory;

namespace {

const std::string opt_in = "<metadata><hugezero:memory xmlns:hugezero='https://hugezero.dev/xmlns/libvirt/1' page='2M'/></metadata>";
const std::string file_shared = "<memoryBacking><source type='file'/><access mode='shared'/></memoryBacking>";

std::string domain(const std::string& inside)
{
    return "<domain type='kvm' id='7'><name>vm1</name><uuid>3f0c2a9e-5b7d-4c1e-8a6f-0d9b8e7c6a51</uuid>"
           "<memory unit='KiB'>4194304</memory>"
           + inside + "</domain>";
}

std::string error_of(const std::string& xml)
{
    try {
        (void)read_domain_memory(xml);
    } catch (const hugezero_libvirt::domain_error& e) {
        return e.what();
    }
    return "(no error)";
}

} // namespace

TEST_SUITE("libvirt")
{
    TEST_CASE("a domain without our element is left alone, whatever its memory")
    {
        CHECK_FALSE(read_domain_memory(domain("<memoryBacking><hugepages/></memoryBacking>")).opted_in);
        CHECK_FALSE(read_domain_memory(domain("")).opted_in);
    }

    TEST_CASE("each guest cell is a lease from the host node it is bound to, and each dimm one more")
    {
        const auto d = read_domain_memory(domain(
            opt_in + file_shared
            + "<cpu><numa><cell id='0' cpus='0' memory='1' unit='GiB'/><cell id='1' cpus='1' memory='2097152' unit='KiB'/></numa></cpu>"
              "<numatune><memory nodeset='3'/><memnode cellid='1' mode='strict' nodeset='1'/></numatune>"
              "<devices><memory model='dimm'><target><size unit='MiB'>512</size><node>1</node></target><alias name='dimm0'/></memory>"
              "</devices>"));
        REQUIRE(d.opted_in);
        CHECK(d.id == "7");
        CHECK(d.tag() == "libvirt-3f0c2a9e-5b7d-4c1e-8a6f-0d9b8e7c6a51");
        CHECK(d.cold_allowed);
        REQUIRE(d.backends.size() == 3);
        CHECK(d.backends[0].alias == "dimm0");
        CHECK(d.backends[0].node == 1);
        CHECK(d.backends[0].bytes == 512ULL << 20);
        CHECK(d.backends[1].alias == "ram-node0");
        CHECK(d.backends[1].node == 3); // <numatune><memory>: no memnode of its own
        CHECK(d.backends[1].bytes == 1ULL << 30);
        CHECK(d.backends[2].alias == "ram-node1");
        CHECK(d.backends[2].node == 1);
        CHECK(d.backends[2].bytes == 2ULL << 30);
        CHECK(d.lease_name(d.backends[2]) == "libvirt-3f0c2a9e-5b7d-4c1e-8a6f-0d9b8e7c6a51-ram-node1");
    }

    TEST_CASE("before libvirt names memory devices (the prepare hook) a dimm is named by its index, and its own nodemask comes first")
    {
        const auto d = read_domain_memory(domain(opt_in + file_shared
                                                 + "<devices><memory model='dimm'><source><nodemask>2</nodemask></source><target>"
                                                   "<size unit='MiB'>512</size><node>0</node></target></memory></devices>"));
        REQUIRE(d.backends.size() == 2);
        CHECK(d.backends[0].alias == "dimm0");
        CHECK(d.backends[0].node == 2);
    }

    TEST_CASE("without cells the initial memory is one lease, pc.ram, less the memory devices")
    {
        const auto d = read_domain_memory(domain(
            "<metadata><hz:memory xmlns:hz='https://hugezero.dev/xmlns/libvirt/1' page='1G' cold='refuse'/></metadata>" + file_shared
            + "<devices><memory model='dimm'><target><size unit='GiB'>1</size><node>0</node></target><alias name='dimm0'/></memory></devices>"));
        CHECK(d.page == hugezero::page_1gib);
        CHECK_FALSE(d.cold_allowed);
        REQUIRE(d.backends.size() == 2);
        CHECK(d.backends[1].alias == "pc.ram");
        CHECK(d.backends[1].bytes == 3ULL << 30);
    }

    TEST_CASE("what the hook cannot lease is refused with what to change")
    {
        CHECK(error_of(domain(opt_in)).find("needs <memoryBacking><source type='file'/>") != std::string::npos);
        CHECK(error_of(domain(opt_in + "<memoryBacking><source type='file'/></memoryBacking>")).find("<access mode='shared'/>")
              != std::string::npos);
        CHECK(error_of(domain(opt_in + "<memoryBacking><hugepages/><source type='file'/><access mode='shared'/></memoryBacking>"))
                  .find("remove <hugepages/>")
              != std::string::npos);
        CHECK(error_of(domain(opt_in + file_shared + "<cpu><numa><cell id='0' cpus='0' memory='1' unit='GiB' memAccess='private'/></numa></cpu>"))
              == "guest cell 0 is not shared: a private mapping copies each page the guest writes into a new, cold one (<access mode='shared'/>)");
        CHECK(error_of(domain(opt_in + file_shared + "<numatune><memory nodeset='0-1'/></numatune>")).find("nodeset \"0-1\" is not one host node")
              != std::string::npos);
        CHECK(error_of(domain("<metadata><hugezero:memory xmlns:hugezero='https://hugezero.dev/xmlns/libvirt/1' page='3M'/></metadata>"
                              + file_shared))
              == "<hugezero:memory page=\"3M\">: expected a huge page size such as 2M or 1G");
        CHECK(error_of(domain("<metadata><hugezero:memory xmlns:hugezero='https://hugezero.dev/xmlns/libvirt/1' cold='maybe'/></metadata>"
                              + file_shared))
              == "<hugezero:memory cold=\"maybe\">: expected allow or refuse");
        CHECK(error_of(domain(opt_in + file_shared + "<devices><memory model='nvdimm'/></devices>"))
              == "memory device of model nvdimm: the hook leases dimm devices only");
        CHECK(error_of("<domain") == "the domain XML on stdin does not parse");
        CHECK(error_of(domain(opt_in + file_shared + "<numatune><memory mode='strict' placement='auto'/></numatune>"))
                  .find("numad chooses the host node after the hook has run")
              != std::string::npos);
    }

    TEST_CASE("the hook's command line: --help, --version, too few arguments, a bad XML, an opted-out domain")
    {
        using hugezero::test::run_process;
        const auto help = run_process({HUGEZERO_LIBVIRT_HOOK, "--help"});
        CHECK(help.exit_code == 0);
        CHECK(help.out.find("usage: hugezero-libvirt-hook DOMAIN OPERATION SUB-OPERATION EXTRA") == 0);
        CHECK(run_process({HUGEZERO_LIBVIRT_HOOK, "--version"}).out.find("hugezero-libvirt-hook ") == 0);
        CHECK(run_process({HUGEZERO_LIBVIRT_HOOK, "vm1"}).exit_code == 2);
        const auto bad = run_process({"/bin/sh", "-c", "echo '<domain' | \"$0\" vm1 prepare begin -", HUGEZERO_LIBVIRT_HOOK});
        CHECK(bad.exit_code == 1);
        CHECK(bad.err == "hugezero: domain vm1: prepare/begin: the domain XML on stdin does not parse\n");
        const auto alone = run_process({"/bin/sh", "-c", "echo \"$1\" | \"$0\" vm1 start begin -", HUGEZERO_LIBVIRT_HOOK, domain("")});
        CHECK(alone.exit_code == 0); // not ours: no daemon asked
        CHECK(alone.err.empty());
    }
}
