/// @file
/// @brief hugezero::mapping, a move-only owner of one huge page memory mapping.
#ifndef HUGEZERO_MAPPING_HPP
#define HUGEZERO_MAPPING_HPP

#include <bit>
#include <cstddef>
#include <cstdint>
#include <ostream>
#include <span>
#include <string>
#include <utility>

#include <sys/mman.h>

#include <hugezero/detail/bytes_text.hpp>
#include <hugezero/error.hpp>
#include <hugezero/page_size.hpp>

namespace hugezero {

/// One memory mapping backed by huge pages, unmapped when the handle is closed or destroyed:
/// a leased file mapped as guest memory (map_shared()), or anonymous hugetlb memory
/// (map_anonymous(), what a VMM without a pool uses).
///
/// Mapping creates page tables for nothing: populate() (prefault.hpp) or the first access
/// does. Move-only; a closed or moved-from mapping throws hugezero::closed_handle_error from
/// its accessors.
///
/// @par Thread safety
/// Distinct mappings are independent. One mapping's const members may be called concurrently;
/// close() and assignment must not race other uses of the same handle.
class mapping {
public:
    /// An empty (closed) mapping.
    mapping() noexcept = default;

    /// Maps @p bytes of the hugetlb file @p fd, from offset 0, shared and read-write: writes go
    /// to the file's pages (a private mapping would copy each page on first write, into new,
    /// cold pages). The mapping keeps the file's pages alive after @p fd is closed.
    /// @throws std::invalid_argument if @p bytes is 0 or not a multiple of @p page.
    /// @throws std::system_error with mmap()'s errno (`ENOMEM`: no huge pages to reserve for
    /// pages the file does not have yet).
    static mapping map_shared(int fd, std::uint64_t bytes, page_size page)
    {
        check_length(bytes, page);
        void* address = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (address == MAP_FAILED)
            throw detail::errno_error("mmap " + std::to_string(bytes) + " bytes of fd " + std::to_string(fd) + " shared ("
                                      + to_string(page) + " pages)");
        return mapping(address, bytes, page);
    }

    /// Maps @p bytes of anonymous private memory of @p page pages (`MAP_HUGETLB`): the kernel
    /// reserves the pages now and allocates and zeroes each one on first touch.
    /// @throws std::invalid_argument if @p bytes is 0 or not a multiple of @p page.
    /// @throws std::system_error with mmap()'s errno (`ENOMEM`: not enough free huge pages).
    static mapping map_anonymous(std::uint64_t bytes, page_size page)
    {
        check_length(bytes, page);
        const int size_flag = std::countr_zero(page.bytes()) << MAP_HUGE_SHIFT;
        void* address = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | size_flag,
                               -1, 0);
        if (address == MAP_FAILED)
            throw detail::errno_error("mmap " + std::to_string(bytes) + " bytes of anonymous " + to_string(page)
                                      + " huge pages");
        return mapping(address, bytes, page);
    }

    mapping(const mapping&) = delete;
    mapping& operator=(const mapping&) = delete;
    /// Takes over @p other's mapping; @p other is left closed.
    mapping(mapping&& other) noexcept
        : address_(std::exchange(other.address_, nullptr)), bytes_(std::exchange(other.bytes_, 0)), page_(other.page_)
    {
    }
    /// Unmaps this mapping, then takes over @p other's.
    mapping& operator=(mapping&& other) noexcept
    {
        if (this != &other) {
            close();
            address_ = std::exchange(other.address_, nullptr);
            bytes_ = std::exchange(other.bytes_, 0);
            page_ = other.page_;
        }
        return *this;
    }
    /// Unmaps.
    ~mapping() { close(); }

    /// Whether the handle holds a mapping.
    explicit operator bool() const noexcept { return address_ != nullptr; }

    /// The first byte. @throws hugezero::closed_handle_error if closed.
    [[nodiscard]] std::byte* data() const { return static_cast<std::byte*>(checked("data()")); }
    /// The length in bytes. @throws hugezero::closed_handle_error if closed.
    [[nodiscard]] std::uint64_t size() const
    {
        (void)checked("size()");
        return bytes_;
    }
    /// The mapped memory. @throws hugezero::closed_handle_error if closed.
    [[nodiscard]] std::span<std::byte> bytes() const { return {data(), static_cast<std::size_t>(bytes_)}; }
    /// The page size backing it. @throws hugezero::closed_handle_error if closed.
    [[nodiscard]] hugezero::page_size page() const
    {
        (void)checked("page()");
        return page_;
    }

    /// Unmaps now (pages of a shared file stay in the file). Does nothing if already closed.
    void close() noexcept
    {
        if (address_ != nullptr)
            ::munmap(address_, bytes_);
        address_ = nullptr;
        bytes_ = 0;
    }

    /// Prints e.g. `mapping of 256MiB at 0x7f0000000000 (2MiB pages)` or `mapping (closed)`.
    friend std::ostream& operator<<(std::ostream& out, const mapping& m)
    {
        if (!m)
            return out << "mapping (closed)";
        return out << "mapping of " << detail::bytes_text(m.bytes_) << " at " << m.address_ << " (" << m.page_ << " pages)";
    }

private:
    mapping(void* address, std::uint64_t bytes, hugezero::page_size page) noexcept
        : address_(address), bytes_(bytes), page_(page)
    {
    }

    static void check_length(std::uint64_t bytes, hugezero::page_size page)
    {
        if (bytes == 0 || bytes % page.bytes() != 0)
            throw std::invalid_argument("hugezero: a mapping of " + to_string(page) + " pages must be a positive multiple of "
                                        + std::to_string(page.bytes()) + " bytes, got " + std::to_string(bytes));
    }

    void* checked(const char* what) const
    {
        if (address_ == nullptr)
            throw closed_handle_error(std::string("mapping::") + what + " on a closed mapping");
        return address_;
    }

    void* address_ = nullptr;
    std::uint64_t bytes_ = 0;
    hugezero::page_size page_ = page_2mib;
};

} // namespace hugezero

#endif
