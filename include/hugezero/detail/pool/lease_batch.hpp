/// @file
/// @brief Internals of hugezero::pool: several leases from one acquire(), all or none.
#ifndef HUGEZERO_DETAIL_LEASE_BATCH_HPP
#define HUGEZERO_DETAIL_LEASE_BATCH_HPP

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <hugezero/acquire_options.hpp>
#include <hugezero/acquire_result.hpp>
#include <hugezero/detail/pool/lease_maker.hpp>
#include <hugezero/detail/pool/pool_state.hpp>
#include <hugezero/lease.hpp>

namespace hugezero::detail {

// A lease that never left the pool goes back to its reservoir as it is, every page zero.
inline void take_back_unused(pool_engine& e, hugezero::lease& l)
{
    const hstate h = l.which();
    const std::uint64_t pages = l.pages();
    pool_file own{};
    own.name = lease_access::take_name(l);
    if (reservoir_directory* dir = e.directory_of(h); dir != nullptr && own.name)
        (void)dir->make_ready(own.name);
    own.fd = e.state->descriptions.take(lease_access::ticket_of(l));
    unique_fd lease_fd = lease_access::take_fd(l);
    if (!own.fd) // the lease had the file's own description
        own.fd = std::move(lease_fd);
    else // never handed out: the next lease may have it
        own.lease_fd = std::move(lease_fd);
    own.pages = pages;
    std::vector<pool_file> surplus;
    auto g = e.state->core.lock();
    reservoir_slot& slot = g->slots.at(h);
    slot.files.add(std::move(own));
    surplus = slot.files.shed_to(slot.target_pages);
    g.unlock(); // `surplus` closes outside the lock
}

/// pool::acquire() of several leases: all, or none (those made go back to their reservoirs).
inline acquire_many_result lease_all(pool_engine& e, std::span<const lease_request> requests, const acquire_options& options)
{
    acquire_many_result all;
    for (std::size_t i = 0; i < requests.size(); ++i) {
        acquire_options named = options;
        named.name = requests[i].name;
        acquire_result one = lease_maker::acquire(e, requests[i].which, requests[i].bytes, named);
        if (!one) {
            for (hugezero::lease& made : all.leases)
                take_back_unused(e, made);
            all.leases.clear();
            all.error = one.error;
            all.message = "hugezero: lease " + std::to_string(i + 1) + " of " + std::to_string(requests.size())
                          + " not made, and none was: " + one.message.substr(std::string_view("hugezero: ").size());
            return all;
        }
        all.leases.push_back(std::move(one.lease));
    }
    return all;
}

} // namespace hugezero::detail

#endif
