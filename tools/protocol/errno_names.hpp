// The errno names protocol hugezero/1 carries in its error replies (`hugezero/1 error ENOSPC ...`),
// both ways.
#ifndef HUGEZERO_TOOLS_PROTOCOL_ERRNO_NAMES_HPP
#define HUGEZERO_TOOLS_PROTOCOL_ERRNO_NAMES_HPP

#include <cerrno>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/units.hpp"

namespace hugezerod::protocol {

/// errno names the protocol uses (and their numbers both ways).
inline const std::vector<std::pair<int, std::string_view>>& errno_names()
{
    static const std::vector<std::pair<int, std::string_view>> names = {
        {EINVAL, "EINVAL"},   {EPROTO, "EPROTO"}, {EMSGSIZE, "EMSGSIZE"}, {EBADMSG, "EBADMSG"},
        {EACCES, "EACCES"},   {ENOSPC, "ENOSPC"}, {EAGAIN, "EAGAIN"},     {ENODEV, "ENODEV"},
        {ENOENT, "ENOENT"},   {EEXIST, "EEXIST"}, {ENOMEM, "ENOMEM"},     {ECANCELED, "ECANCELED"},
        {EMFILE, "EMFILE"},   {EBUSY, "EBUSY"},   {EIO, "EIO"},           {EPERM, "EPERM"},
        {ESHUTDOWN, "ESHUTDOWN"}, {EINTR, "EINTR"}, {ENOTSUP, "ENOTSUP"}, {EDQUOT, "EDQUOT"}};
    return names;
}
inline std::string errno_name(int code)
{
    for (const auto& [number, name] : errno_names())
        if (number == code)
            return std::string(name);
    return "E" + std::to_string(code);
}
inline int errno_number(std::string_view name)
{
    for (const auto& [number, known] : errno_names())
        if (known == name)
            return number;
    if (name.size() > 1 && name[0] == 'E')
        if (const auto n = hugezero_tools::parse_number(name.substr(1)); n && *n < 4096)
            return static_cast<int>(*n);
    return EIO;
}

} // namespace hugezerod::protocol

#endif
