// hugezerod's configuration file (docs/daemon.md, "Configuration"): INI-style sections
//
//   [daemon]     socket, socket_mode, socket_group, metrics, allow_users, allow_groups, ready, max_clients,
//                max_leases_per_client, prezero
//   [pool]       workers_per_node, refill_rate, batch, quiet_after_lease, retry_period
//   [reservoir]  node, page, target, chunk, floor_pages, cgroup, directory (one section each)
//
// This header: what a configuration holds. config_file.hpp reads one (every error names the
// file, the line and the key: "hugezerod.conf:12: target: ..."); config_keys.hpp has the keys.
#ifndef HUGEZERO_TOOLS_HUGEZEROD_CONFIG_HPP
#define HUGEZERO_TOOLS_HUGEZEROD_CONFIG_HPP

#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <sys/types.h>

#include <hugezero/pool_options.hpp>

#include "protocol/requests.hpp"

namespace hugezerod {

/// A configuration that cannot be used; the message names the file, line and key.
class config_error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// One [reservoir] section.
struct reservoir_config {
    hugezero::reservoir_options options{};
    int line = 0; ///< Where its section starts, for errors found later.
};

/// When the daemon tells systemd it is ready.
enum class ready_when {
    filled,    ///< Once every reservoir holds its target or its refill is held (no pages, floor).
    listening, ///< As soon as the socket is served.
};

/// The whole configuration, with its defaults.
struct config {
    std::string file = "(defaults)";                           ///< Where it came from.
    std::string socket = protocol::default_socket;               ///< Unless socket-activated.
    unsigned socket_mode = 0660;                                 ///< Permissions of the socket file.
    std::optional<gid_t> socket_group;                           ///< Its group (empty: the daemon's).
    std::string metrics;                                         ///< unix:PATH, tcp:127.0.0.1:PORT or empty (off).
    std::vector<uid_t> allow_users{0};                           ///< Peers allowed by uid.
    std::vector<gid_t> allow_groups;                             ///< Peers allowed by gid.
    ready_when ready = ready_when::filled;
    unsigned max_clients = 256;                                  ///< Connections at once.
    unsigned max_leases_per_client = 64;                         ///< Leases one connection may hold.
    bool prezero = true;                                         ///< Run the kernel's pre-zeroing where it has it.
    hugezero::pool_options pool{};                               ///< Reservoirs come from the sections.
    std::vector<reservoir_config> reservoirs;
};

} // namespace hugezerod

#endif
