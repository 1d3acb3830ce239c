// The seam that runs one test source against two backends: the in-process simulated kernel
// (sim::backend), or - in the emulator build, compiled with -DHUGEZERO_TEST_EMULATOR - the real
// sysfs_backend over a FUSE mount of the same simulated kernel (tests/emulator/fuse_sysfs.hpp),
// doing real openat, pread, write and epoll through the kernel. The test keeps the sim::kernel,
// so it can still allocate, release, plan faults and take nodes offline.
#ifndef HUGEZERO_TESTS_SUPPORT_TEST_MACHINE_HPP
#define HUGEZERO_TESTS_SUPPORT_TEST_MACHINE_HPP

#include <memory>
#include <utility>

#include <hugezero/backend.hpp>
#include <hugezero/machine.hpp>
#include <hugezero/sim/backend.hpp>
#include <hugezero/sim/kernel.hpp>

#ifdef HUGEZERO_TEST_EMULATOR
#include <hugezero/sysfs_backend.hpp>

#include "emulator/fuse_sysfs.hpp"
#include "support/temp_dir.hpp"
#endif

namespace hugezero::test {

#ifdef HUGEZERO_TEST_EMULATOR
/// Whether this executable runs its machines through the FUSE emulator.
inline constexpr bool through_emulator = true;

/// A FUSE mount of a simulated kernel in a fresh temporary directory, and the real backend over
/// it. Members are destroyed in reverse: the backend (its root fd) first, then the mount, then
/// the directory.
struct emulated_sysfs {
    explicit emulated_sysfs(std::shared_ptr<sim::kernel> k) : mount(std::move(k), dir.path()), backend(dir.path()) {}
    temp_dir dir;
    fuse_sysfs mount;
    sysfs_backend backend;
};
#else
/// Whether this executable runs its machines through the FUSE emulator.
inline constexpr bool through_emulator = false;
#endif

/// A backend serving @p k: sim::backend, or in the emulator build a sysfs_backend over a FUSE
/// mount of @p k that stays mounted as long as the backend (and so any machine using it) lives.
inline std::shared_ptr<hugezero::backend> backend_for(std::shared_ptr<sim::kernel> k)
{
#ifdef HUGEZERO_TEST_EMULATOR
    auto mounted = std::make_shared<emulated_sysfs>(std::move(k));
    return {mounted, &mounted->backend}; // shares ownership of the whole mount
#else
    return std::make_shared<sim::backend>(std::move(k));
#endif
}

/// A machine over backend_for(@p k).
inline hugezero::machine machine_for(std::shared_ptr<sim::kernel> k) { return hugezero::machine(backend_for(std::move(k))); }

} // namespace hugezero::test

#endif
