// Byte sizes the tests spell their leases and reservoirs in.
#ifndef HUGEZERO_TEST_SUPPORT_SIZES_HPP
#define HUGEZERO_TEST_SUPPORT_SIZES_HPP

#include <cstdint>

namespace hugezero::test {

inline constexpr std::uint64_t mib = std::uint64_t{1} << 20;
inline constexpr std::uint64_t gib = std::uint64_t{1} << 30;

} // namespace hugezero::test

#endif
