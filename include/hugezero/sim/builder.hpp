/// @file
/// @brief hugezero::sim::machine_builder, a fluent way to build a simulated kernel.
#ifndef HUGEZERO_SIM_BUILDER_HPP
#define HUGEZERO_SIM_BUILDER_HPP

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include <hugezero/cpu_set.hpp>
#include <hugezero/error.hpp>
#include <hugezero/hstate.hpp>
#include <hugezero/sim/kernel.hpp>
#include <hugezero/thread_settings.hpp>

namespace hugezero::sim {

/// Builds a simulated kernel, fluently, like libgpiod's gpio-sim builder:
/// @code
/// using namespace hugezero::literals;
/// using namespace std::chrono_literals;
/// auto k = hugezero::sim::machine_builder().nodes(2).pages(2_MiB, 512).pages(1_GiB, 4)
///              .page_cost(1_GiB, 70ms).build();
/// hugezero::machine m(std::make_shared<hugezero::sim::backend>(k));
/// @endcode
/// Defaults: one node (node 0); every node's CPUs are the CPUs this process may run on (so
/// workers pinned to a simulated node can run); no pages; pages cost nothing to zero; writes
/// above the zeroable count fail with `EINVAL`; signals make writes fail with `EINTR`; no
/// notification rate limit.
class machine_builder {
public:
    /// Nodes 0 to @p count - 1 (replacing any earlier choice).
    machine_builder& nodes(unsigned count)
    {
        ids_.clear();
        for (unsigned i = 0; i < count; ++i)
            ids_.push_back(i);
        return *this;
    }
    /// Exactly these node numbers, which may be sparse (e.g. {0, 2}).
    machine_builder& node_ids(std::vector<unsigned> ids)
    {
        ids_ = std::move(ids);
        return *this;
    }
    /// The CPUs of @p node.
    machine_builder& cpus(node_id node, cpu_set cpus)
    {
        cpus_[node] = std::move(cpus);
        return *this;
    }
    /// Makes @p node memoryless: it has CPUs but no huge pages.
    machine_builder& memoryless(node_id node)
    {
        memoryless_.insert(node);
        return *this;
    }
    /// @p count dirty free pages of @p size on every node with memory.
    machine_builder& pages(page_size size, std::uint64_t count)
    {
        per_size(size).dirty = count;
        return *this;
    }
    /// @p count dirty free pages on one hstate (overrides the per-size default there).
    machine_builder& pages(const hstate& h, std::uint64_t count)
    {
        specific(h).dirty = count;
        return *this;
    }
    /// @p count already-zeroed free pages of @p size on every node with memory.
    machine_builder& zeroed_pages(page_size size, std::uint64_t count)
    {
        per_size(size).zeroed = count;
        return *this;
    }
    /// @p count pages of @p size in use by consumers on every node with memory.
    machine_builder& in_use_pages(page_size size, std::uint64_t count)
    {
        per_size(size).in_use = count;
        return *this;
    }
    /// Removes page size @p size from every node.
    machine_builder& without_page_size(page_size size)
    {
        defaults_.erase(size);
        for (auto it = specific_.begin(); it != specific_.end();)
            it = it->first.size == size ? specific_.erase(it) : std::next(it);
        return *this;
    }
    /// Zeroing one page of @p size takes @p cost.
    machine_builder& page_cost(page_size size, std::chrono::nanoseconds cost)
    {
        config_.page_costs[size] = cost;
        return *this;
    }
    /// How page time is spent: waiting (default) or memset over a buffer of up to
    /// @p buffer_limit bytes, repeated to cover the page.
    machine_builder& work(work_mode mode, std::uint64_t buffer_limit = std::uint64_t{64} << 20)
    {
        config_.work = mode;
        config_.memset_buffer_limit = buffer_limit;
        return *this;
    }
    /// Page size @p size has no `zeroable_hugepages` on any node (a stock kernel).
    machine_builder& without_zeroable(page_size size)
    {
        per_size(size).zeroable_interface = false;
        return *this;
    }
    /// Hstate @p h has no `zeroable_hugepages`.
    machine_builder& without_zeroable(const hstate& h)
    {
        specific(h).zeroable_interface = false;
        return *this;
    }
    /// What a write above the zeroable count does.
    machine_builder& out_of_range(out_of_range_policy policy)
    {
        config_.out_of_range = policy;
        return *this;
    }
    /// What a signal does to a write in progress.
    machine_builder& on_signal(signal_policy policy)
    {
        config_.on_signal = policy;
        return *this;
    }
    /// At most one notification per hstate per @p period; others are dropped.
    machine_builder& notify_min_period(std::chrono::nanoseconds period)
    {
        config_.notify_min_period = period;
        return *this;
    }
    /// Global `resv_hugepages` of @p size.
    machine_builder& reserved(page_size size, std::uint64_t count)
    {
        config_.reserved[size] = count;
        return *this;
    }
    /// Global `nr_overcommit_hugepages` of @p size.
    machine_builder& overcommit(page_size size, std::uint64_t count)
    {
        config_.overcommit[size] = count;
        return *this;
    }
    /// A kernel built without NUMA: no `devices/system/node`, one node 0.
    machine_builder& without_numa()
    {
        config_.numa = false;
        return nodes(1);
    }

    /// The kernel.
    /// @throws std::invalid_argument for an inconsistent machine (see kernel::create).
    [[nodiscard]] std::shared_ptr<kernel> build() const
    {
        for (const auto& [h, cfg] : specific_)
            if (std::find(ids_.begin(), ids_.end(), h.node.value()) == ids_.end())
                throw std::invalid_argument("hugezero::sim: pages configured for " + to_string(h) + ", but there is no node "
                                            + std::to_string(h.node.value()));
        kernel::config cfg = config_;
        const cpu_set allowed = current_affinity(); // pinning a worker elsewhere would fail
        for (const unsigned id : ids_) {
            kernel::node_config node{node_id(id), allowed, memoryless_.count(node_id(id)) == 0, {}};
            if (const auto it = cpus_.find(node.id); it != cpus_.end())
                node.cpus = it->second;
            if (node.has_memory) {
                for (const auto& [size, defaults] : sizes()) {
                    const auto it = specific_.find({node.id, size});
                    kernel::hstate_config h = it != specific_.end() ? it->second : defaults;
                    h.size = size;
                    node.hstates.push_back(h);
                }
            } else {
                // Pages asked for on this very memoryless node: let kernel::create reject them
                // rather than drop them silently.
                for (const auto& [h, hc] : specific_)
                    if (h.node == node.id)
                        node.hstates.push_back(hc);
            }
            cfg.nodes.push_back(std::move(node));
        }
        return kernel::create(std::move(cfg));
    }

private:
    kernel::hstate_config& per_size(page_size size)
    {
        return defaults_.try_emplace(size, kernel::hstate_config{size}).first->second;
    }

    kernel::hstate_config& specific(const hstate& h)
    {
        const auto it = specific_.find(h);
        if (it != specific_.end())
            return it->second;
        const auto base = defaults_.find(h.size);
        return specific_.emplace(h, base != defaults_.end() ? base->second : kernel::hstate_config{h.size}).first->second;
    }

    std::map<page_size, kernel::hstate_config> sizes() const
    {
        std::map<page_size, kernel::hstate_config> out = defaults_;
        for (const auto& [h, cfg] : specific_)
            out.emplace(h.size, kernel::hstate_config{h.size});
        return out;
    }

    std::vector<unsigned> ids_{0};
    std::map<node_id, cpu_set> cpus_;
    std::set<node_id> memoryless_;
    std::map<page_size, kernel::hstate_config> defaults_;
    std::map<hstate, kernel::hstate_config> specific_;
    kernel::config config_;
};

} // namespace hugezero::sim

#endif
