/// @file
/// @brief hugezero::service_options: how the pre-zeroing service runs.
#ifndef HUGEZERO_SERVICE_OPTIONS_HPP
#define HUGEZERO_SERVICE_OPTIONS_HPP

#include <chrono>
#include <memory>
#include <vector>

#include <hugezero/hstate.hpp>
#include <hugezero/policy.hpp>
#include <hugezero/thread_settings.hpp>
#include <hugezero/watcher.hpp>
#include <hugezero/zeroing_options.hpp>

namespace hugezero {

/// How the pre-zeroing service runs.
struct service_options {
    /// The hstates to keep zeroed; empty means every hstate whose kernel has `zeroable_hugepages`.
    std::vector<hstate> hstates;
    /// Workers per node (each zeroes that node's hstates); 0 means one per CPU of the node.
    unsigned workers_per_node = 1;
    /// When and how much to zero. Default: everything, at once.
    std::shared_ptr<zeroing_policy> policy = policies::all();
    /// Batch size and cancellation of each write.
    zeroing_options zeroing;
    /// Worker placement and charging. Without `cpus`, workers are pinned to their node's CPUs.
    thread_settings thread;
    /// The watcher's safety-net period.
    watcher_options watch;
    /// How long a worker waits before retrying an hstate after an error.
    std::chrono::nanoseconds error_backoff = std::chrono::seconds(1);
};

} // namespace hugezero

#endif
