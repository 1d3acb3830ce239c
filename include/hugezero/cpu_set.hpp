/// @file
/// @brief hugezero::cpu_set, a set of CPU numbers parsed from and printed as a range list.
#ifndef HUGEZERO_CPU_SET_HPP
#define HUGEZERO_CPU_SET_HPP

#include <algorithm>
#include <cstddef>
#include <initializer_list>
#include <ostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <hugezero/detail/parse.hpp>
#include <hugezero/id_range.hpp>

namespace hugezero {

/// A set of CPU numbers, such as a node's `cpulist` (`0-7,16-23`).
///
/// Stored as sorted, merged ranges, so a set of thousands of CPUs stays small. Prints in the
/// kernel's range-list form; the empty set prints as nothing, as the kernel does.
class cpu_set {
public:
    /// The empty set.
    cpu_set() = default;

    /// The set of the listed CPUs.
    cpu_set(std::initializer_list<unsigned> cpus)
    {
        for (const unsigned cpu : cpus)
            ranges_.push_back({cpu, cpu});
        normalise();
    }

    /// Parses a range list such as `0-7,16-23` (no trailing newline; an empty string is the
    /// empty set). Order and overlaps are accepted and normalised.
    /// @throws std::invalid_argument naming @p list when it is malformed.
    static cpu_set parse(std::string_view list)
    {
        auto parsed = detail::parse_range_list(list, false);
        if (!parsed)
            throw std::invalid_argument("hugezero: invalid CPU list \"" + std::string(list) + "\": " + parsed.reason());
        return from_ranges(std::move(parsed).value());
    }

    /// The set made of already-parsed ranges.
    static cpu_set from_ranges(std::vector<id_range> ranges)
    {
        cpu_set set;
        set.ranges_ = std::move(ranges);
        set.normalise();
        return set;
    }

    /// Whether @p cpu is in the set.
    [[nodiscard]] bool contains(unsigned cpu) const noexcept
    {
        for (const auto& r : ranges_)
            if (cpu >= r.first && cpu <= r.last)
                return true;
        return false;
    }
    /// How many CPUs the set holds.
    [[nodiscard]] std::size_t count() const noexcept
    {
        std::size_t n = 0;
        for (const auto& r : ranges_)
            n += std::size_t{r.last} - r.first + 1;
        return n;
    }
    /// Whether the set is empty.
    [[nodiscard]] bool empty() const noexcept { return ranges_.empty(); }
    /// The CPUs in increasing order.
    [[nodiscard]] std::vector<unsigned> cpus() const
    {
        std::vector<unsigned> out;
        out.reserve(count());
        for (const auto& r : ranges_)
            for (unsigned cpu = r.first;; ++cpu) {
                out.push_back(cpu);
                if (cpu == r.last)
                    break;
            }
        return out;
    }
    /// The sorted, merged ranges.
    [[nodiscard]] const std::vector<id_range>& ranges() const noexcept { return ranges_; }

    /// The CPUs in both sets.
    [[nodiscard]] cpu_set operator&(const cpu_set& other) const
    {
        std::vector<id_range> out;
        for (const auto& a : ranges_)
            for (const auto& b : other.ranges_) {
                const unsigned first = std::max(a.first, b.first);
                const unsigned last = std::min(a.last, b.last);
                if (first <= last)
                    out.push_back({first, last});
            }
        return from_ranges(std::move(out));
    }

    /// Two sets are equal when they hold the same CPUs.
    friend bool operator==(const cpu_set&, const cpu_set&) = default;

    /// Prints the range list, e.g. `0-7,16-23`.
    friend std::ostream& operator<<(std::ostream& out, const cpu_set& set)
    {
        const char* separator = "";
        for (const auto& r : set.ranges_) {
            out << separator << r.first;
            if (r.last != r.first)
                out << '-' << r.last;
            separator = ",";
        }
        return out;
    }

private:
    void normalise() { ranges_ = detail::normalise_ranges(std::move(ranges_)); }

    std::vector<id_range> ranges_;
};

/// The set as a range list, e.g. `"0-7,16-23"`.
inline std::string to_string(const cpu_set& set)
{
    std::ostringstream out;
    out << set;
    return out.str();
}

} // namespace hugezero

#endif
