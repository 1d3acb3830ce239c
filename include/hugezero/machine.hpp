/// @file
/// @brief hugezero::machine, the handle users hold: a backend, its topology, live counters.
#ifndef HUGEZERO_MACHINE_HPP
#define HUGEZERO_MACHINE_HPP

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <ostream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

#include <hugezero/backend.hpp>
#include <hugezero/detail/parse.hpp>
#include <hugezero/detail/sysfs_paths.hpp>
#include <hugezero/detail/zeroing/ledger.hpp>
#include <hugezero/error.hpp>
#include <hugezero/hstate.hpp>
#include <hugezero/sysfs_backend.hpp>
#include <hugezero/topology.hpp>

namespace hugezero {

class machine;

namespace detail {

/// Parses @p content, read from @p path of @p source, as a counter.
/// @throws hugezero::parse_error naming the file and showing the content.
inline std::uint64_t counter_from(const backend& source, std::string_view path, const std::string& content)
{
    const auto value = parse_counter(content);
    if (!value)
        throw parse_error(source.display_path(path), content, value.reason());
    return value.value();
}

/// Reads and parses the counter at @p path.
inline std::uint64_t read_counter(backend& source, std::string_view path)
{
    return counter_from(source, path, source.read(path));
}

/// Reaches what hugezero's engines need of a machine and users do not.
struct machine_internals {
    /// The claim ledger every hugezero writer of @p h on @p m shares (detail/ledger.hpp).
    static hstate_ledger& ledger(const machine& m, const hstate& h);
};

} // namespace detail

/// A machine: where its hugetlb state comes from (the real sysfs, a tree standing for it, or
/// the simulated kernel), its topology, and its live counters.
///
/// A machine is a cheap handle to shared state: copies refer to the same machine, and the
/// requests, watchers and services made from it keep it alive. Use one per process and
/// source, so that everything zeroing through it coordinates.
///
/// @par Thread safety
/// Every member function may be called concurrently.
class machine {
public:
    /// The real machine: sysfs at `$HUGEZERO_SYSFS_ROOT`, or `/sys`.
    /// @throws std::system_error, hugezero::parse_error as topology::discover does.
    static machine open() { return machine(std::make_shared<sysfs_backend>()); }

    /// The machine whose sysfs is the directory @p sysfs_root (standing for `/sys`).
    static machine open(const std::filesystem::path& sysfs_root)
    {
        return machine(std::make_shared<sysfs_backend>(sysfs_root));
    }

    /// The machine behind @p source (for example a hugezero::sim::backend).
    /// @throws std::invalid_argument if @p source is null.
    explicit machine(std::shared_ptr<hugezero::backend> source) : state_(std::make_shared<shared>())
    {
        if (!source)
            throw std::invalid_argument("hugezero: machine needs a backend, got a null pointer");
        state_->topology = hugezero::topology::discover(*source);
        state_->files = source->files();
        state_->source = std::move(source);
        for (const hstate& h : state_->topology.hstates())
            state_->ledgers.emplace(h, std::make_unique<detail::hstate_ledger>());
    }

    /// Where the state comes from.
    [[nodiscard]] hugezero::backend& backend() const noexcept { return *state_->source; }
    /// The same, shared.
    [[nodiscard]] const std::shared_ptr<hugezero::backend>& backend_ptr() const noexcept { return state_->source; }
    /// The hugetlb file operations whose pages this machine's counters count (the pool's).
    [[nodiscard]] hugetlb_files& files() const noexcept { return *state_->files; }
    /// The nodes, CPUs and hstates, as discovered when the machine was opened.
    [[nodiscard]] const hugezero::topology& topology() const noexcept { return state_->topology; }

    /// Whether @p h can be pre-zeroed (the kernel has `zeroable_hugepages` for it).
    /// @throws std::invalid_argument if the machine has no such hstate.
    [[nodiscard]] bool supports_zeroing(const hstate& h) const { return topology().info(h).zeroable_supported; }

    /// The current counters of @p h.
    /// @throws std::invalid_argument for an unknown hstate; std::system_error or
    /// hugezero::parse_error naming the file when a counter cannot be read.
    [[nodiscard]] hstate_counters counters(const hstate& h) const
    {
        const hstate_info& info = topology().info(h);
        const auto read = [&](std::string_view name) {
            return detail::read_counter(backend(), detail::paths::join(info.directory, name));
        };
        hstate_counters c;
        c.nr = read(detail::paths::nr_hugepages);
        c.free = read(detail::paths::free_hugepages);
        c.surplus = read(detail::paths::surplus_hugepages);
        if (info.zeroable_supported)
            c.zeroable = read(detail::paths::zeroable_hugepages);
        return c;
    }

    /// How many free pages of @p h an allocation could take now: the node's `free_hugepages`,
    /// but no more than the global `free_hugepages` minus `resv_hugepages` (pages promised to
    /// mappings; reservations are global). Reads exactly those three attributes.
    /// @throws as counters().
    [[nodiscard]] std::uint64_t available(const hstate& h) const
    {
        const hstate_info& info = topology().info(h);
        const std::string global = detail::paths::global_hstate_dir(h.size);
        const std::uint64_t node_free
            = detail::read_counter(backend(), detail::paths::join(info.directory, detail::paths::free_hugepages));
        const std::uint64_t free = detail::read_counter(backend(), detail::paths::join(global, detail::paths::free_hugepages));
        const std::uint64_t reserved
            = detail::read_counter(backend(), detail::paths::join(global, detail::paths::resv_hugepages));
        return std::min(node_free, free > reserved ? free - reserved : 0);
    }

    /// The global counters of @p size.
    /// @throws std::invalid_argument if the kernel has no such page size; as counters() otherwise.
    [[nodiscard]] global_counters global(page_size size) const
    {
        const auto& sizes = topology().page_sizes();
        if (std::find(sizes.begin(), sizes.end(), size) == sizes.end())
            throw std::invalid_argument("hugezero: the kernel has no " + to_string(size) + " huge pages");
        const std::string dir = detail::paths::global_hstate_dir(size);
        const auto read = [&](std::string_view name) {
            return detail::read_counter(backend(), detail::paths::join(dir, name));
        };
        return {read(detail::paths::nr_hugepages), read(detail::paths::free_hugepages),
                read(detail::paths::resv_hugepages), read(detail::paths::surplus_hugepages),
                read(detail::paths::nr_overcommit_hugepages)};
    }

    /// The path of @p h's `zeroable_hugepages`, relative to the sysfs root.
    /// @throws hugezero::zeroing_unsupported if the kernel lacks it; std::invalid_argument for an
    /// unknown hstate.
    [[nodiscard]] std::string zeroable_path(const hstate& h) const
    {
        const hstate_info& info = topology().info(h);
        std::string path = detail::paths::join(info.directory, detail::paths::zeroable_hugepages);
        if (!info.zeroable_supported)
            throw zeroing_unsupported(h, backend().display_path(path));
        return path;
    }

    /// How many pages of @p h can be pre-zeroed now.
    /// @throws hugezero::zeroing_unsupported if the kernel lacks the interface; as counters().
    [[nodiscard]] std::uint64_t zeroable(const hstate& h) const
    {
        return detail::read_counter(backend(), zeroable_path(h));
    }

    /// Prints the topology with every hstate's current counters.
    friend std::ostream& operator<<(std::ostream& out, const machine& m)
    {
        for (const auto& n : m.topology().nodes()) {
            out << n.id << " cpus " << (n.cpus.empty() ? std::string("none") : to_string(n.cpus));
            if (!n.has_memory)
                out << " (memoryless)";
            out << '\n';
            for (const auto& h : n.hstates)
                out << "  " << h.id << ' ' << m.counters(h.id) << '\n';
        }
        return out;
    }

private:
    friend struct detail::machine_internals;

    struct shared {
        std::shared_ptr<hugezero::backend> source;
        std::shared_ptr<hugetlb_files> files;
        hugezero::topology topology;
        std::map<hstate, std::unique_ptr<detail::hstate_ledger>> ledgers; // fixed after construction
    };
    std::shared_ptr<shared> state_;
};

inline detail::hstate_ledger& detail::machine_internals::ledger(const machine& m, const hstate& h)
{
    const auto it = m.state_->ledgers.find(h);
    if (it == m.state_->ledgers.end())
        (void)m.topology().info(h); // throws the explanatory std::invalid_argument
    return *it->second;
}

} // namespace hugezero

#endif
