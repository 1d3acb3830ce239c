/// @file
/// @brief hugezero::thread_settings: where a worker runs, how nicely, and who pays for its CPU time.
#ifndef HUGEZERO_THREAD_SETTINGS_HPP
#define HUGEZERO_THREAD_SETTINGS_HPP

#include <cerrno>
#include <filesystem>
#include <optional>
#include <ostream>
#include <string>
#include <system_error>
#include <vector>

#include <fcntl.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <hugezero/cpu_set.hpp>
#include <hugezero/node_id.hpp>
#include <hugezero/unique_fd.hpp>

namespace hugezero {

/// How a worker thread is placed and charged. Every field is optional; an empty one leaves the
/// thread as it was created (inheriting from the thread that started it).
///
/// Zeroing memory is pure CPU and memory bandwidth: where it runs decides whose latency it
/// hurts, and the cgroup decides who pays. The kernel zeroes `zeroable_hugepages` pages and
/// fallocated pool pages in the calling thread, so these settings are what makes pre-zeroing
/// "charged to whoever asked".
struct thread_settings {
    /// Pin to these CPUs (`sched_setaffinity`). Workers of a node default to the node's CPUs.
    std::optional<cpu_set> cpus;
    /// Nice level, -20 to 19 (`setpriority` on the thread). Lowering it needs `CAP_SYS_NICE`.
    std::optional<int> nice;
    /// Run under `SCHED_IDLE`: only when the CPU has nothing else to do.
    bool idle = false;
    /// A cgroup v2 directory to move the thread into (writing its TID to `cgroup.threads`), so
    /// its CPU time is charged there. The cgroup must be threaded (`cgroup.type`) or be the
    /// thread's own process's cgroup domain, as cgroup v2 requires.
    std::optional<std::filesystem::path> cgroup;
    /// Bind the thread's memory allocations to this node (`set_mempolicy(MPOL_BIND)`): the
    /// kernel then takes huge pages for a file the thread fallocates from that node only.
    std::optional<node_id> memory_node;
};

/// One setting that could not be applied.
struct setting_failure {
    std::string setting;    ///< Which one: `cpus`, `nice`, `idle`, `cgroup` or `memory_node`.
    std::error_code error;  ///< Why, as an errno.
    std::string message;    ///< A sentence for an operator: the setting, its value, the cause.

    /// Prints the message.
    friend std::ostream& operator<<(std::ostream& out, const setting_failure& f) { return out << f.message; }
};

/// The calling thread's kernel thread id.
inline pid_t current_thread_id() noexcept { return static_cast<pid_t>(::syscall(SYS_gettid)); }

/// The CPUs the calling thread may run on (`sched_getaffinity`).
/// @throws std::system_error if the kernel refuses to say.
inline cpu_set current_affinity()
{
    // Grow the mask until the kernel's fits (machines with more than CPU_SETSIZE CPUs exist).
    for (std::size_t cpus = CPU_SETSIZE;; cpus *= 2) {
        cpu_set_t* mask = CPU_ALLOC(cpus);
        if (mask == nullptr)
            throw std::system_error(ENOMEM, std::system_category(), "hugezero: sched_getaffinity");
        const std::size_t bytes = CPU_ALLOC_SIZE(cpus);
        if (::sched_getaffinity(0, bytes, mask) != 0) {
            const int error = errno;
            CPU_FREE(mask);
            if (error == EINVAL && cpus < (std::size_t{1} << 20))
                continue;
            throw std::system_error(error, std::system_category(), "hugezero: sched_getaffinity");
        }
        std::vector<id_range> ranges;
        for (unsigned cpu = 0; cpu < cpus; ++cpu)
            if (CPU_ISSET_S(cpu, bytes, mask))
                ranges.push_back({cpu, cpu});
        CPU_FREE(mask);
        return cpu_set::from_ranges(std::move(ranges));
    }
}

namespace detail {

inline setting_failure failure(std::string setting, int error, std::string what)
{
    std::error_code code(error, std::system_category());
    return {std::move(setting), code, "hugezero: " + what + ": " + code.message()};
}

inline std::optional<setting_failure> pin_current_thread(const cpu_set& cpus)
{
    if (cpus.empty())
        return failure("cpus", EINVAL, "pin worker to an empty CPU set");
    const unsigned highest = cpus.ranges().back().last;
    cpu_set_t* mask = CPU_ALLOC(highest + 1);
    if (mask == nullptr)
        return failure("cpus", ENOMEM, "pin worker to CPUs " + to_string(cpus));
    const std::size_t bytes = CPU_ALLOC_SIZE(highest + 1);
    CPU_ZERO_S(bytes, mask);
    for (const unsigned cpu : cpus.cpus())
        CPU_SET_S(cpu, bytes, mask);
    const int rc = ::sched_setaffinity(0, bytes, mask);
    const int error = errno;
    CPU_FREE(mask);
    if (rc != 0)
        return failure("cpus", error,
                       "pin worker to CPUs " + to_string(cpus)
                           + (error == EINVAL ? " (none of them is online and allowed for this process)" : ""));
    return std::nullopt;
}

inline std::optional<setting_failure> move_to_cgroup(const std::filesystem::path& cgroup)
{
    const std::filesystem::path threads = cgroup / "cgroup.threads";
    const unique_fd fd(::open(threads.c_str(), O_WRONLY | O_CLOEXEC));
    if (!fd)
        return failure("cgroup", errno, "move worker into cgroup: open " + threads.string());
    const std::string tid = std::to_string(current_thread_id());
    if (::write(fd.get(), tid.data(), tid.size()) < 0) {
        const int error = errno;
        return failure("cgroup", error,
                       "move worker into cgroup: write " + tid + " to " + threads.string()
                           + (error == EOPNOTSUPP ? " (the cgroup is not threaded: set its cgroup.type to threaded)" : ""));
    }
    return std::nullopt;
}

inline std::optional<setting_failure> bind_memory(node_id node)
{
    constexpr int mpol_bind = 2; // MPOL_BIND in <linux/mempolicy.h>; no libnuma needed
    constexpr unsigned long bits = 8 * sizeof(unsigned long);
    std::vector<unsigned long> mask(node.value() / bits + 1, 0);
    mask[node.value() / bits] |= 1UL << (node.value() % bits);
    // maxnode counts bits and the kernel ignores the last one: pass one more than we use.
    if (::syscall(SYS_set_mempolicy, mpol_bind, mask.data(), mask.size() * bits + 1) != 0)
        return failure("memory_node", errno, "bind worker memory to node " + std::to_string(node.value()));
    return std::nullopt;
}

} // namespace detail

/// Applies @p settings to the calling thread, each independently, and reports every one that
/// failed (an empty result means all applied). Nothing is silently ignored: a caller that
/// cannot accept a failure (say, no permission to join the cgroup) sees it here.
inline std::vector<setting_failure> apply_to_current_thread(const thread_settings& settings)
{
    std::vector<setting_failure> failures;
    const auto note = [&](std::optional<setting_failure> f) {
        if (f)
            failures.push_back(std::move(*f));
    };
    // The cgroup first: CPU time spent applying the rest is already charged there.
    if (settings.cgroup)
        note(detail::move_to_cgroup(*settings.cgroup));
    if (settings.cpus)
        note(detail::pin_current_thread(*settings.cpus));
    if (settings.memory_node)
        note(detail::bind_memory(*settings.memory_node));
    if (settings.idle) {
        const sched_param param{};
        if (::sched_setscheduler(0, SCHED_IDLE, &param) != 0)
            failures.push_back(detail::failure("idle", errno, "run worker under SCHED_IDLE"));
    }
    if (settings.nice) {
        if (*settings.nice < -20 || *settings.nice > 19)
            failures.push_back(detail::failure("nice", EINVAL, "set worker nice level " + std::to_string(*settings.nice)
                                                                   + " (it must be between -20 and 19)"));
        else if (::setpriority(PRIO_PROCESS, static_cast<id_t>(current_thread_id()), *settings.nice) != 0)
            failures.push_back(detail::failure("nice", errno, "set worker nice level " + std::to_string(*settings.nice)));
    }
    return failures;
}

} // namespace hugezero

#endif
