/// @file
/// @brief Internals of hugezero::pool: changing a reservoir's target and floor while the pool runs
/// (pool::set_target(), pool::set_floor()).
#ifndef HUGEZERO_DETAIL_TARGET_CHANGE_HPP
#define HUGEZERO_DETAIL_TARGET_CHANGE_HPP

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <utility>
#include <vector>

#include <hugezero/detail/pool/pool_state.hpp>
#include <hugezero/hstate.hpp>

namespace hugezero::detail {

/// @p h's counters if it has a reservoir. @throws std::invalid_argument otherwise.
inline reservoir_counters& listed_counters(pool_engine& e, const hstate& h)
{
    const auto it = e.state->counters.find(h);
    if (it == e.state->counters.end() || !it->second->listed)
        throw std::invalid_argument("hugezero: the pool has no reservoir for " + to_string(h));
    return *it->second;
}

/// Sets @p h's floor to @p floor_pages: acquires and refill steps from now on leave that many
/// free; a refill held by the old floor looks again at once.
/// @throws std::invalid_argument if @p h has no reservoir.
inline void change_floor(pool_engine& e, const hstate& h, std::uint64_t floor_pages)
{
    reservoir_counters& c = listed_counters(e, h);
    c.floor_pages.store(floor_pages);
    e.floors.at(h)->set_floor(floor_pages);
    auto g = e.state->core.lock(); // announced on unlock: waiting workers look again
    reservoir_slot& slot = g->slots.at(h);
    slot.retry_at.reset();
    if (c.current_hold() == refill_hold::floor)
        c.hold.store(static_cast<int>(refill_hold::none), std::memory_order_relaxed);
}

/// Sets @p h's target to @p target_pages. A lower target gives ready pages back at once: whole
/// files, then the excess of one file (counted as trimmed; a file that cannot be cut stays
/// whole, counted as an error). Files being filled or scrubbed shed their excess when they join
/// the reservoir. A higher target wakes the refill (the lock's change is announced).
/// @throws std::invalid_argument if @p h has no reservoir.
inline void change_target(pool_engine& e, const hstate& h, std::uint64_t target_pages)
{
    reservoir_counters& c = listed_counters(e, h);
    std::vector<pool_file> surplus;
    std::optional<std::pair<pool_file, std::uint64_t>> excess;
    {
        auto g = e.state->core.lock();
        reservoir_slot& slot = g->slots.at(h);
        slot.target_pages = target_pages;
        c.target_pages.store(target_pages);
        slot.follow_leases();
        slot.retry_at.reset();
        surplus = slot.files.shed_to(target_pages);
        excess = slot.files.take_excess(target_pages);
    }
    if (!excess)
        return; // `surplus` closes here, outside the lock
    auto& [file, cut_to] = *excess;
    if (const int error = e.m.files().resize(file.fd.get(), h.size, cut_to); error != 0) {
        c.record_error(error); // unchanged: it goes back whole
    } else {
        c.add(c.trimmed_pages, file.pages - cut_to);
        file.pages = cut_to;
    }
    auto g = e.state->core.lock();
    g->slots.at(h).files.add(std::move(file));
}

} // namespace hugezero::detail

#endif
