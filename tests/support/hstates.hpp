// The hstates the test machines use (node 0 and node 1, 2 MiB and 1 GiB pages), and zeroing
// options written in pages, so that every suite names them the same way.
#ifndef HUGEZERO_TESTS_SUPPORT_HSTATES_HPP
#define HUGEZERO_TESTS_SUPPORT_HSTATES_HPP

#include <cstdint>

#include <hugezero/hstate.hpp>
#include <hugezero/node_id.hpp>
#include <hugezero/page_size.hpp>
#include <hugezero/zeroing.hpp>

namespace hugezero::test {

inline const hstate node0_2m{node_id(0), page_2mib};
inline const hstate node0_1g{node_id(0), page_1gib};
inline const hstate node1_2m{node_id(1), page_2mib};
inline const hstate node1_1g{node_id(1), page_1gib};

// Options making each write() ask for at most @p pages pages of @p size.
inline zeroing_options batch_of(std::uint64_t pages, page_size size = page_2mib)
{
    zeroing_options options;
    options.batch_bytes = pages * size.bytes();
    return options;
}

} // namespace hugezero::test

#endif
