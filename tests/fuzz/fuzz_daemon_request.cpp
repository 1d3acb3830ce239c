// hugezerod::protocol::parse_request: what a peer sends the daemon. Any input is either a
// request or a parse_error with one of the protocol's errnos and a sentence (never a throw);
// a request prints (format) to a text that parses to the same request.
#include <string>

#include "fuzz.hpp"
#include "protocol/replies.hpp"
#include "protocol/requests.hpp"

namespace protocol = hugezerod::protocol;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    const std::string_view input = hugezero::fuzz::text(data, size);
    const auto parsed = protocol::parse_request(input);
    if (const auto* e = std::get_if<protocol::parse_error>(&parsed)) {
        HUGEZERO_FUZZ_CHECK(e->code == EINVAL || e->code == EPROTO || e->code == EBADMSG || e->code == EMSGSIZE, e->message);
        HUGEZERO_FUZZ_CHECK(!e->message.empty() && e->message.size() < 400, e->message);
        return 0;
    }
    const auto& request = std::get<protocol::request>(parsed);
    const std::string printed = protocol::format(request);
    const auto again = protocol::parse_request(printed);
    HUGEZERO_FUZZ_CHECK(std::holds_alternative<protocol::request>(again), printed);
    const auto& second = std::get<protocol::request>(again);
    HUGEZERO_FUZZ_CHECK(second.index() == request.index(), printed);
    if (const auto* a = std::get_if<protocol::acquire_request>(&request)) {
        const auto& b = std::get<protocol::acquire_request>(second);
        HUGEZERO_FUZZ_CHECK(a->node == b.node && a->page == b.page && a->bytes == b.bytes && a->name == b.name
                                && a->max_cold_pages == b.max_cold_pages && a->bytes > 0 && protocol::valid_name(a->name) == !a->name.empty()
                                && a->detach == b.detach && a->owner == b.owner && a->mode == b.mode && a->place == b.place
                                && (a->place.empty() || (protocol::valid_place(a->place) && !a->name.empty())),
                            printed);
    }
    if (const auto* r = std::get_if<protocol::release_request>(&request))
        HUGEZERO_FUZZ_CHECK(r->lease == std::get<protocol::release_request>(second).lease
                                && r->tag == std::get<protocol::release_request>(second).tag,
                            printed);
    return 0;
}
