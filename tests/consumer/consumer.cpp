// A program that uses hugezero the way a project that depends on it would. The consumer tests
// (CMakeLists.txt beside this file) build it from an install through find_package, as a
// subproject through add_subdirectory, and through pkg-config, then check what it prints.
#include <hugezero/hugezero.hpp>

#include <iostream>
#include <memory>

int main()
{
    using namespace hugezero::literals;
    const auto kernel = hugezero::sim::machine_builder().nodes(2).pages(2_MiB, 512).build();
    const hugezero::machine machine(std::make_shared<hugezero::sim::backend>(kernel));
    const hugezero::hstate h{hugezero::node_id(1), 2_MiB};
    std::cout << "hugezero " << hugezero::version_string << ": " << h << ' ' << machine.counters(h) << '\n';
}
