// What the suites that run inside a guest (scripts/guest) use of the kernel under test: the
// reference zeroable_hugepages kernel's switches and ground truth in debugfs
// (tests/kernel/patches), consumers (VMs faulting huge pages in on a node), the node of every
// page of a mapping, and the guest's huge page counters before and after a test.
#ifndef HUGEZERO_TESTS_GUEST_GUEST_KERNEL_HPP
#define HUGEZERO_TESTS_GUEST_GUEST_KERNEL_HPP

#include <doctest/doctest.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <hugezero/hugezero.hpp>

#include "support/skip.hpp"

namespace hugezero::test::guest {

inline const std::string prezero_debugfs = "/sys/kernel/debug/hugetlb_prezero/";

inline std::string read_text(const std::string& path)
{
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}

inline bool write_text(const std::string& path, const std::string& value)
{
    std::ofstream out(path);
    out << value;
    out.flush();
    return static_cast<bool>(out);
}

/// Whether this is the reference kernel (its debugfs directory is there).
inline bool reference_kernel() { return ::access((prezero_debugfs + "stats").c_str(), R_OK) == 0; }

/// One line of hugetlb_prezero/stats: the kernel's own count for one node and page size.
struct prezero_stats {
    std::map<std::string, std::uint64_t> values;
    [[nodiscard]] std::uint64_t operator[](const std::string& key) const
    {
        const auto it = values.find(key);
        REQUIRE_MESSAGE(it != values.end(), "hugetlb_prezero/stats has no " << key);
        return it->second;
    }
};

inline prezero_stats stats(const hstate& h)
{
    std::istringstream lines(read_text(prezero_debugfs + "stats"));
    for (std::string line; std::getline(lines, line);) {
        prezero_stats s;
        std::istringstream words(line);
        for (std::string word; words >> word;) {
            const auto equals = word.find('=');
            s.values[word.substr(0, equals)] = std::stoull(word.substr(equals + 1));
        }
        if (s.values["node"] == h.node.value() && s.values["kb"] == h.size.kib())
            return s;
    }
    FAIL("hugetlb_prezero/stats has no line for " << h);
    return {};
}

/// The switches of this run of a suite: HUGEZERO_GUEST_SWITCHES ("einval,eintr", set by the
/// ctest case), applied for the life of the object; notifications are not rate-limited.
class switches {
public:
    switches()
    {
        const char* text = std::getenv("HUGEZERO_GUEST_SWITCHES");
        const std::string value = text != nullptr ? text : "einval,eintr";
        const auto comma = value.find(',');
        out_of_range = value.substr(0, comma);
        on_signal = comma == std::string::npos ? "eintr" : value.substr(comma + 1);
        REQUIRE_MESSAGE(write_text(prezero_debugfs + "out_of_range", out_of_range), "cannot set out_of_range " << out_of_range);
        REQUIRE_MESSAGE(write_text(prezero_debugfs + "on_signal", on_signal), "cannot set on_signal " << on_signal);
        REQUIRE(write_text(prezero_debugfs + "notify_period_ms", "0"));
        REQUIRE(write_text(prezero_debugfs + "inject", "5 0"));
    }
    switches(const switches&) = delete;
    switches& operator=(const switches&) = delete;
    ~switches()
    {
        write_text(prezero_debugfs + "notify_period_ms", "0");
        write_text(prezero_debugfs + "inject", "5 0");
    }

    /// The next @p times writes to any zeroable_hugepages fail with @p error.
    static void inject(int error, unsigned times)
    {
        REQUIRE(write_text(prezero_debugfs + "inject", std::to_string(error) + " " + std::to_string(times)));
    }
    /// Notifications within @p ms of the previous one are dropped.
    static void notify_period(unsigned ms) { REQUIRE(write_text(prezero_debugfs + "notify_period_ms", std::to_string(ms))); }

    std::string out_of_range; ///< einval or clamp
    std::string on_signal;    ///< eintr, restart or partial
};

/// @p pages pages of @p h that a VM holds: an anonymous huge page mapping bound to the node,
/// faulted in; unmapping it gives them back (dirty).
class consumer {
public:
    consumer(const hstate& h, std::uint64_t pages) : bytes_(pages * h.size.bytes()), memory_(map(h, bytes_))
    {
        REQUIRE_MESSAGE(memory_ != MAP_FAILED, "mmap of " << pages << " pages of " << h << ": " << std::strerror(errno));
        const int error = bind_and_fault(memory_, bytes_, h.node);
        REQUIRE_MESSAGE(error == 0, "binding to " << h.node << " and faulting in: " << std::strerror(error));
    }
    consumer(const consumer&) = delete;
    consumer& operator=(const consumer&) = delete;
    ~consumer() { release(); }

    /// Whether a VM could take @p pages pages of @p h (it gives them back at once). Asserts
    /// nothing: for threads that race each other for pages.
    static bool try_once(const hstate& h, std::uint64_t pages) noexcept
    {
        const std::uint64_t bytes = pages * h.size.bytes();
        void* memory = map(h, bytes);
        if (memory == MAP_FAILED)
            return false;
        const bool ok = bind_and_fault(memory, bytes, h.node) == 0;
        ::munmap(memory, bytes);
        return ok;
    }

    /// Gives the pages back now.
    void release()
    {
        if (memory_ != MAP_FAILED)
            ::munmap(memory_, bytes_);
        memory_ = MAP_FAILED;
    }
    [[nodiscard]] std::byte* data() const { return static_cast<std::byte*>(memory_); }

private:
    static void* map(const hstate& h, std::uint64_t bytes) noexcept
    {
        const int huge_shift = __builtin_ctzll(h.size.bytes());
        return ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | (huge_shift << MAP_HUGE_SHIFT),
                      -1, 0);
    }
    // 0 or the errno of mbind(MPOL_BIND) or MADV_POPULATE_WRITE.
    static int bind_and_fault(void* memory, std::uint64_t bytes, node_id node) noexcept
    {
        std::vector<unsigned long> mask(node.value() / 64 + 1, 0);
        mask[node.value() / 64] |= 1UL << (node.value() % 64);
        constexpr int mpol_bind = 2;
        constexpr int madv_populate_write = 23;
        if (::syscall(SYS_mbind, memory, bytes, mpol_bind, mask.data(), mask.size() * 64 + 1, 0) != 0)
            return errno;
        return ::madvise(memory, bytes, madv_populate_write) == 0 ? 0 : errno;
    }

    std::uint64_t bytes_;
    void* memory_;
};

/// The node of every page of [@p start, @p start + @p bytes), as move_pages(2) reports it,
/// after faulting the range in (writing nothing: `MADV_POPULATE_WRITE`), since a page not mapped
/// yet has no node to report (-ENOENT).
inline std::vector<int> page_nodes(const void* start, std::uint64_t bytes, page_size page)
{
    constexpr int madv_populate_write = 23;
    REQUIRE_MESSAGE(::madvise(const_cast<void*>(start), bytes, madv_populate_write) == 0, "populate: " << std::strerror(errno));
    const std::uint64_t pages = bytes / page.bytes();
    std::vector<void*> addresses(pages);
    for (std::uint64_t i = 0; i < pages; ++i)
        addresses[i] = const_cast<std::byte*>(static_cast<const std::byte*>(start) + i * page.bytes());
    std::vector<int> status(pages, -1);
    REQUIRE_MESSAGE(::syscall(SYS_move_pages, 0, pages, addresses.data(), nullptr, status.data(), 0) == 0,
                    "move_pages: " << std::strerror(errno));
    return status;
}

/// The guest's free and total huge pages of every hstate now; check_restored() compares.
class counters_guard {
public:
    explicit counters_guard(const machine& m) : machine_(m)
    {
        for (const hstate& h : m.topology().hstates())
            before_.emplace(h, m.counters(h));
    }
    /// Every hstate has the pages it had (this test runs alone in its guest).
    void check_restored() const
    {
        for (const auto& [h, c] : before_) {
            INFO(h);
            const hstate_counters now = machine_.counters(h);
            CHECK(now.nr == c.nr);
            CHECK(now.free == c.free);
        }
    }

private:
    machine machine_;
    std::map<hstate, hstate_counters> before_;
};

} // namespace hugezero::test::guest

/// Node lists print as such in failed checks.
template <>
struct doctest::StringMaker<std::vector<int>> {
    static doctest::String convert(const std::vector<int>& values)
    {
        std::ostringstream out;
        out << '{';
        for (std::size_t i = 0; i < values.size(); ++i)
            out << (i == 0 ? "" : ", ") << values[i];
        out << '}';
        return out.str().c_str();
    }
};

#define HUGEZERO_REQUIRE_GUEST(reference)                                                                    \
    HUGEZERO_SKIP_UNLESS_REQUIRED("guest", !::hugezero::test::guest::reference_kernel() && (reference),        \
                                  "not in a guest on the reference zeroable_hugepages kernel (scripts/guest)")

#endif
