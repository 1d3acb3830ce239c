// hugezerod's configuration file (hugezerod.conf(5): docs/man/hugezerod.conf.5.scd): INI-style sections
//
//   [daemon]     socket, socket_mode, socket_group, metrics, allow_users, allow_groups, trusted_users,
//                ready, max_clients, max_clients_per_user, max_leases_per_client, max_leases_per_user,
//                max_cold_acquires_per_user, max_bytes_per_user, idle_timeout, prezero, admin_users,
//                place_directories
//   [pool]       workers_per_node, refill_rate, batch, quiet_after_lease, retry_period
//   [reservoir]  node, page, target, chunk, floor_pages, cgroup, directory, recycle (one section each)
//
// This header: what a configuration holds. config_file.hpp reads one (every error names the
// file, the line and the key: "hugezerod.conf:12: target: ..."); config_keys.hpp has the keys.
#ifndef HUGEZERO_TOOLS_HUGEZEROD_CONFIG_HPP
#define HUGEZERO_TOOLS_HUGEZEROD_CONFIG_HPP

#include <chrono>
#include <cstdint>
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
    std::vector<uid_t> trusted_users;                            ///< Whose leases a `recycle = trusted-peers` reservoir recycles.
    std::vector<uid_t> admin_users{0};                           ///< Who may detach, give away and place leases.
    std::vector<std::string> place_directories;                  ///< Where a lease may be placed (empty: nowhere).
    ready_when ready = ready_when::filled;
    unsigned max_clients = 256;                                  ///< Connections at once.
    unsigned max_clients_per_user = 64;                          ///< Connections of one uid at once.
    unsigned max_leases_per_client = 64;                         ///< Leases one connection may hold.
    unsigned max_leases_per_user = 256;                          ///< Leases all connections of one uid may hold.
    unsigned max_cold_acquires_per_user = 1;                     ///< Cold acquires of one uid in progress at once.
    std::uint64_t max_bytes_per_user = 0;                        ///< Bytes of leases one uid may hold (0: no limit).
    std::chrono::milliseconds idle_timeout{60000};               ///< A connection with no lease and no request closes after it (0: never).
    bool prezero = true;                                         ///< Run the kernel's pre-zeroing where it has it.
    hugezero::pool_options pool{};                               ///< Reservoirs come from the sections.
    std::vector<reservoir_config> reservoirs;
};

} // namespace hugezerod

#endif
