// A pool on the simulated kernel: the kernel (to plan faults, read the ground truth, see where
// a file's pages are), a machine over it, and what must be given back when the test ends (every
// hstate's pages, every file, fds and threads).
#ifndef HUGEZERO_TESTS_SUPPORT_SIM_POOL_HPP
#define HUGEZERO_TESTS_SUPPORT_SIM_POOL_HPP

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <sstream>
#include <string>

#include <doctest/doctest.h>

#include <hugezero/hugezero.hpp>

#include "support/resources.hpp"

namespace hugezero::test {

struct sim_pool_machine {
    explicit sim_pool_machine(const sim::machine_builder& builder)
        : kernel(builder.build()), machine(std::make_shared<sim::backend>(kernel)), resources(count_resources())
    {
        for (const hstate& h : kernel->hstates())
            pages.emplace(h, kernel->counts(h));
    }

    // Every page back in its hstate's free pool, no file left, no fd or thread more than at
    // the start. Call once every pool and lease of the test is gone.
    void check_restored() const
    {
        const sim::file_statistics files = kernel->file_stats();
        CHECK(files.files_open == 0);
        CHECK(files.pages_in_files == 0);
        for (const auto& [h, before] : pages) {
            const sim::page_counts now = kernel->counts(h);
            INFO(h);
            CHECK(now.in_use == before.in_use);
            CHECK(now.free() == before.free());
        }
        CHECK(count_resources() == resources);
    }

    // Pages of the file behind @p fd, per node.
    [[nodiscard]] std::map<node_id, std::uint64_t> nodes_of(int fd) const { return kernel->file_layout(fd).pages_per_node; }

    std::shared_ptr<sim::kernel> kernel;
    hugezero::machine machine;
    resource_counts resources;
    std::map<hstate, sim::page_counts> pages;
};

// Starts @p p, waits until it is filled, and pauses it: the refill then leaves the room to a
// lease given back (recycling tests).
inline void fill_then_pause(pool& p, std::chrono::seconds limit = std::chrono::seconds(10))
{
    p.start();
    REQUIRE(p.wait_filled(limit));
    p.pause();
}

// One reservoir of @p target_bytes of @p h, in files of @p chunk_bytes (0: one file), leaving
// @p floor_pages free.
inline pool_options one_reservoir(const hstate& h, std::uint64_t target_bytes, std::uint64_t chunk_bytes = 0,
                                  std::uint64_t floor_pages = 0)
{
    pool_options options;
    options.reservoirs.push_back({h, target_bytes, chunk_bytes, floor_pages});
    options.quiet_after_lease = std::chrono::nanoseconds::zero();
    return options;
}

// @p options with every reservoir recycling (reservoir_options::recycle): the recycling tests'.
inline pool_options recycling(pool_options options)
{
    for (reservoir_options& r : options.reservoirs)
        r.recycle = true;
    return options;
}

// Two nodes, each with 64 free 2 MiB pages (128 MiB) and 4 free 1 GiB pages, all dirty.
inline sim::machine_builder two_nodes() { return sim::machine_builder().nodes(2).pages(page_2mib, 64).pages(page_1gib, 4); }

// The free pages of @p h on the simulated kernel of @p t.
inline std::uint64_t free_pages(const sim_pool_machine& t, const hstate& h) { return t.kernel->counts(h).free(); }

template <class T>
std::string text_of(const T& value)
{
    std::ostringstream out;
    out << value;
    return out.str();
}

} // namespace hugezero::test

#endif
