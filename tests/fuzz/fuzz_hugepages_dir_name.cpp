// detail::parse_hugepages_dir_name: "hugepages-<n>kB" directory names. A name it accepts is
// exactly the name the kernel prints for that size (no leading zero, no other spelling), and
// the size is a valid page size.
#include <bit>

#include <hugezero/detail/parse.hpp>
#include <hugezero/detail/sysfs_paths.hpp>

#include "fuzz.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    const std::string_view input = hugezero::fuzz::text(data, size);
    const auto parsed = hugezero::detail::parse_hugepages_dir_name(input);
    const std::string shown = hugezero::detail::quote_content(input);
    if (!parsed) {
        HUGEZERO_FUZZ_CHECK(!parsed.reason().empty(), shown);
        return 0;
    }
    const hugezero::page_size page = parsed.value();
    HUGEZERO_FUZZ_CHECK(page.bytes() >= 4096 && std::has_single_bit(page.bytes()), shown);
    HUGEZERO_FUZZ_CHECK(hugezero::detail::paths::hstate_dir_name(page) == input, shown);
    return 0;
}
