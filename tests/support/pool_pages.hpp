// Helpers of the suites that run the pool on this machine's huge pages (test_pool,
// test_recycling): the free pages, what a test must give back, whether memory reads zero.
#ifndef HUGEZERO_TESTS_SUPPORT_POOL_PAGES_HPP
#define HUGEZERO_TESTS_SUPPORT_POOL_PAGES_HPP

#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include <hugezero/hugezero.hpp>

#include "hugepages.hpp"
#include "resources.hpp"

namespace hugezero::test {

inline std::uint64_t free_pages(page_size size)
{
    return read_sysfs_counter("/sys/kernel/mm/hugepages/hugepages-" + std::to_string(size.kib()) + "kB/free_hugepages")
        .value_or(0);
}

// What a test must give back: fds, threads and free huge pages, as they were at construction.
struct pool_resources {
    explicit pool_resources(page_size s) : size(s), counts(count_resources()), free(free_pages(s)) {}
    void check_restored() const
    {
        CHECK(count_resources() == counts);
        CHECK(free_pages(size) == free);
    }
    page_size size;
    resource_counts counts;
    std::uint64_t free;
};

inline bool all_zero(const mapping& m)
{
    constexpr std::uint64_t chunk = std::uint64_t{1} << 20;
    static const std::vector<std::byte> zeros(chunk);
    const std::byte* p = m.data();
    for (std::uint64_t offset = 0; offset < m.size(); offset += chunk)
        if (std::memcmp(p + offset, zeros.data(), std::min<std::uint64_t>(chunk, m.size() - offset)) != 0)
            return false;
    return true;
}

} // namespace hugezero::test

#endif
