// The seam that runs one test source against two backends (support/emulator_mode.hpp): the
// in-process simulated kernel (sim::backend), or - run with --through-emulator, in an
// executable built with the emulator (HUGEZERO_TEST_WITH_EMULATOR) - the real sysfs_backend
// over a FUSE mount of the same simulated kernel (tests/emulator/fuse_sysfs.hpp). The test keeps
// the sim::kernel, so it can still allocate, release, plan faults and take nodes offline.
#ifndef HUGEZERO_TESTS_SUPPORT_TEST_MACHINE_HPP
#define HUGEZERO_TESTS_SUPPORT_TEST_MACHINE_HPP

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <hugezero/backend.hpp>
#include <hugezero/machine.hpp>
#include <hugezero/sim/backend.hpp>
#include <hugezero/sim/builder.hpp>
#include <hugezero/sim/kernel.hpp>

#include "support/emulator_mode.hpp"
#include "support/recording_backend.hpp"

#ifdef HUGEZERO_TEST_WITH_EMULATOR
#include <hugezero/sysfs_backend.hpp>

#include "emulator/fuse_sysfs.hpp"
#include "support/temp_dir.hpp"
#endif

namespace hugezero::test {

#ifdef HUGEZERO_TEST_WITH_EMULATOR
/// A FUSE mount of a simulated kernel in a fresh temporary directory, and the real backend over
/// it. Members are destroyed in reverse: the backend (its root fd) first, then the mount, then
/// the directory.
struct emulated_sysfs {
    explicit emulated_sysfs(std::shared_ptr<sim::kernel> k) : mount(std::move(k), dir.path()), backend(dir.path()) {}
    temp_dir dir;
    fuse_sysfs mount;
    sysfs_backend backend;
};
#endif

/// A backend serving @p k: sim::backend, or through the emulator (through_emulator()) a
/// sysfs_backend over a FUSE mount of @p k that stays mounted as long as the backend (and so
/// any machine using it) lives.
inline std::shared_ptr<hugezero::backend> backend_for(std::shared_ptr<sim::kernel> k)
{
    if (!through_emulator())
        return std::make_shared<sim::backend>(std::move(k));
#ifdef HUGEZERO_TEST_WITH_EMULATOR
    auto mounted = std::make_shared<emulated_sysfs>(std::move(k));
    return {mounted, &mounted->backend}; // shares ownership of the whole mount
#else
    throw std::logic_error("this test executable was built without the FUSE emulator");
#endif
}

/// A FUSE mount of a simulated kernel for a program to read as its sysfs (`--sysfs-root`), run
/// through the emulator only. @throws std::logic_error in an executable built without it.
class mounted_kernel {
public:
    explicit mounted_kernel([[maybe_unused]] std::shared_ptr<sim::kernel> k)
    {
#ifdef HUGEZERO_TEST_WITH_EMULATOR
        mount_ = std::make_shared<emulated_sysfs>(std::move(k));
#else
        throw std::logic_error("this test executable was built without the FUSE emulator");
#endif
    }
    /// Where it is mounted.
    [[nodiscard]] std::string path() const
    {
#ifdef HUGEZERO_TEST_WITH_EMULATOR
        return mount_->dir.path().string();
#else
        return {};
#endif
    }
    /// The writes the kernel interrupted (FUSE_INTERRUPT) so far.
    [[nodiscard]] std::uint64_t interrupted_writes() const
    {
#ifdef HUGEZERO_TEST_WITH_EMULATOR
        return mount_->mount.counts().interrupted_writes;
#else
        return 0;
#endif
    }

private:
#ifdef HUGEZERO_TEST_WITH_EMULATOR
    std::shared_ptr<emulated_sysfs> mount_;
#endif
};

/// A machine over backend_for(@p k).
inline hugezero::machine machine_for(std::shared_ptr<sim::kernel> k) { return hugezero::machine(backend_for(std::move(k))); }

/// The usual fixture: a simulated kernel built by @p builder and a machine over it.
struct simulated_machine {
    explicit simulated_machine(sim::machine_builder builder) : kernel(builder.build()), machine(machine_for(kernel)) {}
    std::shared_ptr<sim::kernel> kernel;
    hugezero::machine machine;
};

/// The same with a recording_backend in between, to see every write (its thread, CPUs,
/// scheduling policy and request) and to put a competing writer right before one.
struct recorded_machine {
    explicit recorded_machine(sim::machine_builder builder)
        : kernel(builder.build()), recorder(std::make_shared<recording_backend>(backend_for(kernel))), machine(recorder)
    {
    }
    std::shared_ptr<sim::kernel> kernel;
    std::shared_ptr<recording_backend> recorder;
    hugezero::machine machine;

    /// The requests written so far, in order.
    [[nodiscard]] std::vector<std::string> requests() const
    {
        std::vector<std::string> out;
        for (const auto& w : recorder->writes())
            out.push_back(w.request);
        return out;
    }
};

} // namespace hugezero::test

#endif
