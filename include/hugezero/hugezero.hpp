/// @file
/// @brief The one header to include: everything hugezero offers.
///
/// @mainpage hugezero
/// hugezero pre-zeroes Linux hugetlb huge pages off a VM's critical path: through the proposed
/// `zeroable_hugepages` kernel ABI when the kernel has it, through a pool of memory allocated
/// (hence zeroed) ahead of time on stock kernels, and by parallel NUMA-pinned prefault when
/// nothing was prepared. Start with hugezero::machine; see docs/design.md for the layers.
#ifndef HUGEZERO_HUGEZERO_HPP
#define HUGEZERO_HUGEZERO_HPP

#include <hugezero/version.hpp>

#include <hugezero/cpu_set.hpp>
#include <hugezero/error.hpp>
#include <hugezero/hstate.hpp>
#include <hugezero/id_range.hpp>
#include <hugezero/node_id.hpp>
#include <hugezero/page_size.hpp>

#include <hugezero/backend.hpp>
#include <hugezero/hugetlb_files.hpp>
#include <hugezero/sim/backend.hpp>
#include <hugezero/sim/builder.hpp>
#include <hugezero/sim/hugetlb_files.hpp>
#include <hugezero/sim/kernel.hpp>
#include <hugezero/sim/sysfs_view.hpp>
#include <hugezero/sysfs_backend.hpp>

#include <hugezero/machine.hpp>
#include <hugezero/topology.hpp>

#include <hugezero/policy.hpp>
#include <hugezero/service.hpp>
#include <hugezero/statistics.hpp>
#include <hugezero/thread_settings.hpp>
#include <hugezero/watcher.hpp>
#include <hugezero/zeroing.hpp>
#include <hugezero/zeroing_options.hpp>
#include <hugezero/zeroing_request.hpp>
#include <hugezero/zeroing_result.hpp>

// The stock-kernel pool: leases of pre-zeroed hugetlb memory, prefault, fd hand-off.
#include <hugezero/acquire_options.hpp>
#include <hugezero/acquire_result.hpp>
#include <hugezero/fd_passing.hpp>
#include <hugezero/lease.hpp>
#include <hugezero/mapping.hpp>
#include <hugezero/pool.hpp>
#include <hugezero/pool_options.hpp>
#include <hugezero/pool_statistics.hpp>
#include <hugezero/prefault.hpp>
#include <hugezero/prefault_options.hpp>
#include <hugezero/prefault_plan.hpp>
#include <hugezero/prefault_result.hpp>
#include <hugezero/recycle_result.hpp>
#include <hugezero/socket_message.hpp>
#include <hugezero/unique_fd.hpp>

/// @namespace hugezero
/// @brief Everything public in hugezero. Internals live in the nested `detail` namespace and may
/// change without notice.

#endif
