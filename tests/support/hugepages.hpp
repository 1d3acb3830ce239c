// Reserving real huge pages for a test and giving them back: every counter a test changes is
// restored when the reservation ends, as the kernel's own selftests do with nr_hugepages.
#ifndef HUGEZERO_TESTS_SUPPORT_HUGEPAGES_HPP
#define HUGEZERO_TESTS_SUPPORT_HUGEPAGES_HPP

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <optional>
#include <string>

#include <hugezero/page_size.hpp>

namespace hugezero::test {

inline std::string global_nr_hugepages_path(page_size size)
{
    return "/sys/kernel/mm/hugepages/hugepages-" + std::to_string(size.kib()) + "kB/nr_hugepages";
}

inline std::optional<std::uint64_t> read_sysfs_counter(const std::string& path)
{
    std::ifstream in(path);
    std::uint64_t value = 0;
    if (!(in >> value))
        return std::nullopt;
    return value;
}

inline bool write_sysfs_counter(const std::string& path, std::uint64_t value)
{
    std::ofstream out(path);
    out << value << '\n';
    out.flush();
    return static_cast<bool>(out);
}

// Makes at least `extra` more free huge pages of `size` available than there were, by raising
// the global nr_hugepages; restores the original value on destruction. The kernel may grant
// fewer pages than asked (fragmentation): check ok() and skip with reason() if not.
class hugepage_reservation {
public:
    hugepage_reservation(page_size size, std::uint64_t extra) : path_(global_nr_hugepages_path(size))
    {
        const auto before = read_sysfs_counter(path_);
        const auto free_before = read_sysfs_counter(
            "/sys/kernel/mm/hugepages/hugepages-" + std::to_string(size.kib()) + "kB/free_hugepages");
        if (!before || !free_before) {
            reason_ = "cannot read " + path_ + " (no " + to_string(size) + " huge pages on this kernel?)";
            return;
        }
        original_ = *before;
        if (*free_before >= extra) {
            granted_ = true;
            return;
        }
        const std::uint64_t wanted = *before + (extra - *free_before);
        written_ = true; // from here on the counter may have changed: restore it
        if (!write_sysfs_counter(path_, wanted)) {
            reason_ = "cannot write " + path_ + " (needs root)";
            return;
        }
        const auto after = read_sysfs_counter(path_).value_or(0);
        if (after < wanted) {
            reason_ = "the kernel granted only " + std::to_string(after - std::min(after, *before)) + " of "
                      + std::to_string(wanted - *before) + " more " + to_string(size) + " huge pages";
            return;
        }
        granted_ = true;
    }
    hugepage_reservation(const hugepage_reservation&) = delete;
    hugepage_reservation& operator=(const hugepage_reservation&) = delete;
    // Restores the counter only if this reservation changed it: an overlapping reservation's
    // raised value must not be taken for the original.
    ~hugepage_reservation()
    {
        if (written_ && original_)
            write_sysfs_counter(path_, *original_);
    }
    [[nodiscard]] bool ok() const noexcept { return granted_; }
    [[nodiscard]] const std::string& reason() const noexcept { return reason_; }
    [[nodiscard]] std::optional<std::uint64_t> original() const noexcept { return original_; }

private:
    std::string path_;
    std::optional<std::uint64_t> original_;
    bool written_ = false;
    bool granted_ = false;
    std::string reason_;
};

} // namespace hugezero::test

#endif
