// Counting a process's open file descriptors and threads, so that error paths can be checked
// for leaks: take a snapshot before, do the failing thing, and compare after.
#ifndef HUGEZERO_TESTS_SUPPORT_RESOURCES_HPP
#define HUGEZERO_TESTS_SUPPORT_RESOURCES_HPP

#include <cstddef>
#include <filesystem>
#include <fstream>
#include <ostream>
#include <sstream>
#include <string>
#include <thread>

namespace hugezero::test {

// Threads named this way are not counted: the FUSE emulator's workers, which libfuse starts and
// ends on demand (tests/emulator/fuse_sysfs.hpp names them).
inline constexpr const char* uncounted_thread_name = "hz-fuse";

struct resource_counts {
    std::size_t fds = 0;
    std::size_t threads = 0;
    std::size_t children = 0; // child processes, reaped or not (a helper the pool forgot)
    friend bool operator==(const resource_counts&, const resource_counts&) = default;
    friend std::ostream& operator<<(std::ostream& out, const resource_counts& r)
    {
        return out << r.fds << " fds, " << r.threads << " threads, " << r.children << " children";
    }
};

// Whether the thread listed at `task` (a /proc/self/task entry) has begun to exit. A thread that
// was joined a moment ago may still be listed: the kernel wakes the joiner when it clears the
// thread's id, before the thread leaves the list. It set PF_EXITING before that, and shows it in
// the flags field of its stat file (the 9th; the 7th after the name, which may hold spaces).
inline bool thread_exiting(const std::filesystem::path& task)
{
    constexpr unsigned long pf_exiting = 0x4;
    std::ifstream stat(task / "stat");
    std::string line;
    if (!std::getline(stat, line))
        return true; // gone while it was read
    const auto name_end = line.rfind(')');
    if (name_end == std::string::npos)
        return false;
    std::istringstream fields(line.substr(name_end + 1));
    std::string field;
    for (int i = 0; i < 7 && fields >> field; ++i) {
    }
    return (std::stoul(field) & pf_exiting) != 0;
}

// The open descriptors of this process (the one used to list them included, both times) and its
// threads, except the emulator's and those exiting, and its child processes.
inline resource_counts count_resources()
{
    // A thread started and joined first, so that a runtime that starts a helper thread with the
    // first thread (ThreadSanitizer's background thread) has done so before threads are counted.
    std::thread([] {}).join();
    resource_counts r;
    for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
        (void)entry;
        ++r.fds;
    }
    for (const auto& entry : std::filesystem::directory_iterator("/proc/self/task")) {
        std::ifstream comm(entry.path() / "comm");
        std::string name;
        std::getline(comm, name);
        if (name != uncounted_thread_name && !thread_exiting(entry.path()))
            ++r.threads;
        std::ifstream children(entry.path() / "children"); // CONFIG_PROC_CHILDREN
        for (std::string pid; children >> pid;)
            ++r.children;
    }
    return r;
}

} // namespace hugezero::test

#endif
