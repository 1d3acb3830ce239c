// Golden sysfs trees (tests/data/sysfs/<name>, each standing for /sys) and the tools tests use
// around them: reading a file as the truth, copying a tree to break it at run time, pointing
// HUGEZERO_SYSFS_ROOT somewhere for one test, and losing root's right to read any file.
#ifndef HUGEZERO_TESTS_SUPPORT_SYSFS_TREE_HPP
#define HUGEZERO_TESTS_SUPPORT_SYSFS_TREE_HPP

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include <linux/capability.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace hugezero::test {

// The golden tree called @p name (a directory under tests/data/sysfs).
inline std::filesystem::path golden_tree(std::string_view name)
{
    return std::filesystem::path(HUGEZERO_TEST_DATA) / "sysfs" / name;
}

// The whole content of @p path, read with std::ifstream: the "truth" a backend is compared with.
// Throws std::runtime_error naming the file if it cannot be opened.
inline std::string read_text(const std::filesystem::path& path)
{
    std::ifstream in(path, std::ios::binary);
    if (!in)
        throw std::runtime_error("cannot open " + path.string());
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Copies the tree at @p from into the new directory @p to, so a test can damage the copy.
inline void copy_tree(const std::filesystem::path& from, const std::filesystem::path& to)
{
    std::filesystem::copy(from, to, std::filesystem::copy_options::recursive);
}

// Sets (or, with std::nullopt, unsets) an environment variable for one scope and restores the
// previous state afterwards. Tests run one at a time in a process, so nothing races with it.
class scoped_env {
public:
    scoped_env(std::string name, const std::optional<std::string>& value) : name_(std::move(name))
    {
        if (const char* old = std::getenv(name_.c_str()))
            old_ = old;
        apply(value);
    }
    scoped_env(const scoped_env&) = delete;
    scoped_env& operator=(const scoped_env&) = delete;
    ~scoped_env() { apply(old_); }

private:
    void apply(const std::optional<std::string>& value) const
    {
        if (value)
            ::setenv(name_.c_str(), value->c_str(), 1);
        else
            ::unsetenv(name_.c_str());
    }
    std::string name_;
    std::optional<std::string> old_;
};

// Removes CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the calling thread's effective set, so
// that file permissions apply to it even when it runs as root. capset(2) with pid 0 changes only
// the calling thread on Linux (libcap's process-wide wrappers would change them all), so run
// this in a thread of its own. Returns 0 or the errno of capget/capset.
inline int drop_file_read_override_in_this_thread()
{
    __user_cap_header_struct header{};
    header.version = _LINUX_CAPABILITY_VERSION_3;
    header.pid = 0;
    __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
    if (::syscall(SYS_capget, &header, data) != 0)
        return errno;
    for (const int cap : {CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH})
        data[CAP_TO_INDEX(cap)].effective &= ~CAP_TO_MASK(cap);
    if (::syscall(SYS_capset, &header, data) != 0)
        return errno;
    return 0;
}

} // namespace hugezero::test

#endif
