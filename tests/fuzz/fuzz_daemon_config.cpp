// hugezerod::parse_config: a configuration file's text. Any input parses or throws
// config_error naming the file and a line within it; nothing else escapes.
#include <string>

#include "fuzz.hpp"
#include "hugezerod/config_file.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    const std::string_view input = hugezero::fuzz::text(data, size);
    try {
        const auto c = hugezerod::parse_config(input, "fuzz.conf");
        HUGEZERO_FUZZ_CHECK(c.pool.reservoirs.size() == c.reservoirs.size(), std::string(input));
        HUGEZERO_FUZZ_CHECK(c.socket.front() == '/' && c.socket_mode <= 0777 && c.max_clients >= 1, std::string(input));
    } catch (const hugezerod::config_error& e) {
        const std::string what = e.what();
        HUGEZERO_FUZZ_CHECK(what.rfind("fuzz.conf:", 0) == 0, what);
        const auto line = std::stoul(what.substr(10));
        std::size_t lines = 1;
        for (const char c : input)
            lines += c == '\n' ? 1 : 0;
        HUGEZERO_FUZZ_CHECK(line >= 1 && line <= lines, what);
    }
    return 0;
}
