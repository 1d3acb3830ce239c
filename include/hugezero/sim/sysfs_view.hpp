/// @file
/// @brief hugezero::sim::sysfs_view, the simulated kernel seen as a sysfs tree.
#ifndef HUGEZERO_SIM_SYSFS_VIEW_HPP
#define HUGEZERO_SIM_SYSFS_VIEW_HPP

#include <cerrno>
#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <hugezero/backend.hpp>
#include <hugezero/cpu_set.hpp>
#include <hugezero/detail/parse.hpp>
#include <hugezero/detail/sysfs_paths.hpp>
#include <hugezero/sim/kernel.hpp>

namespace hugezero::sim {

/// The simulated kernel as a tree of directories and attributes laid out like `/sys`: node
/// masks, each node's `cpulist`, per-hstate counters with `zeroable_hugepages` where the
/// kernel has it, the global counters, and `devices/system/cpu/online`.
///
/// Results are errno values rather than exceptions, so the same view serves the in-process
/// sim::backend and the FUSE emulator. Planned faults (kernel::fail_next) apply here.
///
/// @par Thread safety
/// Every member function may be called from any thread.
class sysfs_view {
public:
    /// What a path names.
    enum class kind {
        missing,   ///< Nothing.
        directory, ///< A directory.
        attribute, ///< A file.
    };
    /// What stat() says about a path.
    struct entry {
        kind type = kind::missing; ///< What the path names.
        bool writable = false;     ///< For attributes: whether requests may be written.
    };
    /// A read's result: content, or an errno.
    struct read_result {
        int error = 0;       ///< 0, or why the read failed.
        std::string content; ///< The attribute's text.
    };
    /// A listing's result: names, or an errno.
    struct list_result {
        int error = 0;                  ///< 0, or why the listing failed.
        std::vector<std::string> names; ///< Sorted entry names.
    };

    /// A view of @p k.
    explicit sysfs_view(std::shared_ptr<kernel> k) : kernel_(std::move(k)) {}

    /// The kernel behind the view.
    [[nodiscard]] const std::shared_ptr<kernel>& simulated_kernel() const noexcept { return kernel_; }

    /// What @p path names.
    [[nodiscard]] entry stat(std::string_view path) const
    {
        const location at = resolve(path);
        if (at.what == place::missing)
            return {};
        if (is_directory(at.what))
            return {kind::directory, false};
        return {kind::attribute, at.what == place::hstate_attribute && at.name == detail::paths::zeroable_hugepages};
    }

    /// Lists directory @p path (`ENOENT` if absent, `ENOTDIR` if a file).
    [[nodiscard]] list_result list(std::string_view path) const
    {
        const location at = resolve(path);
        if (at.what == place::missing)
            return {ENOENT, {}};
        if (!is_directory(at.what))
            return {ENOTDIR, {}};
        return {0, names(at)};
    }

    /// Reads attribute @p path.
    [[nodiscard]] read_result read(std::string_view path) const
    {
        if (const auto fault = kernel_->take_fault(path, operation::read))
            return {*fault, {}};
        const location at = resolve(path);
        if (at.what == place::missing)
            return {ENOENT, {}};
        if (is_directory(at.what))
            return {EISDIR, {}};
        return {0, content(at)};
    }

    /// Checks that @p path may be opened for @p op (planned `open` faults apply here).
    [[nodiscard]] int check_open(std::string_view path, operation op) const
    {
        if (const auto fault = kernel_->take_fault(path, operation::open))
            return *fault;
        const entry e = stat(path);
        if (e.type == kind::missing)
            return ENOENT;
        if (e.type == kind::directory)
            return EISDIR;
        if (op == operation::write && !e.writable)
            return EACCES; // as kernfs answers an open for writing of a read-only attribute
        return 0;
    }

    /// Writes @p request to attribute @p path, asking @p interrupted between pages whether the
    /// writer has a signal pending.
    write_outcome write(std::string_view path, std::string_view request, const interrupt_probe& interrupted) const
    {
        if (const auto fault = kernel_->take_fault(path, operation::write))
            return {0, *fault};
        const location at = resolve(path);
        if (at.what == place::missing)
            return {0, ENOENT};
        if (at.what != place::hstate_attribute || at.name != detail::paths::zeroable_hugepages)
            return {0, EACCES};
        return kernel_->write_zeroable(at.h(), request, interrupted);
    }

    /// Registers @p notify for changes of the attribute at @p path. Only `zeroable_hugepages`
    /// ever notifies (as on a patched kernel); for other attributes the subscription is empty.
    [[nodiscard]] std::optional<kernel::subscription> subscribe(std::string_view path, std::function<void()> notify) const
    {
        const location at = resolve(path);
        if (at.what == place::missing)
            return std::nullopt;
        if (at.what == place::hstate_attribute && at.name == detail::paths::zeroable_hugepages)
            return kernel_->subscribe(at.h(), std::move(notify));
        return kernel::subscription();
    }

private:
    enum class place {
        missing,
        root,
        devices,
        system,
        cpu_dir,
        cpu_online,
        node_root,
        node_mask,
        node_dir,
        node_cpulist,
        node_hugepages,
        hstate_dir,
        hstate_attribute,
        kernel_dir,
        mm_dir,
        global_root,
        global_dir,
        global_attribute,
    };
    struct location {
        place what = place::missing;
        unsigned node = 0;
        std::uint64_t size_bytes = 0;
        std::string name;
        [[nodiscard]] hstate h() const { return {node_id(node), page_size(size_bytes)}; }
    };
    static location only(place what)
    {
        location at;
        at.what = what;
        return at;
    }

    static bool is_directory(place p)
    {
        switch (p) {
        case place::cpu_online:
        case place::node_mask:
        case place::node_cpulist:
        case place::hstate_attribute:
        case place::global_attribute:
        case place::missing:
            return false;
        default:
            return true;
        }
    }

    static std::vector<std::string_view> split(std::string_view path)
    {
        std::vector<std::string_view> parts;
        while (!path.empty()) {
            const std::size_t slash = path.find('/');
            const std::string_view part = path.substr(0, slash);
            if (!part.empty())
                parts.push_back(part);
            if (slash == std::string_view::npos)
                break;
            path.remove_prefix(slash + 1);
        }
        return parts;
    }

    static constexpr std::string_view node_masks[] = {"has_cpu", "has_memory", "has_normal_memory", "online", "possible"};
    static constexpr std::string_view hstate_counters[] = {detail::paths::free_hugepages, detail::paths::nr_hugepages,
                                                           detail::paths::surplus_hugepages};
    static constexpr std::string_view global_counters[] = {detail::paths::free_hugepages, detail::paths::nr_hugepages,
                                                           detail::paths::nr_overcommit_hugepages,
                                                           detail::paths::resv_hugepages, detail::paths::surplus_hugepages};

    template <class Names>
    static bool contains(const Names& names, std::string_view name)
    {
        for (const auto& n : names)
            if (n == name)
                return true;
        return false;
    }

    // node<N> with N canonical decimal, online.
    std::optional<unsigned> online_node(std::string_view name) const
    {
        if (name.size() < 5 || name.substr(0, 4) != "node" || (name[4] == '0' && name.size() > 5))
            return std::nullopt;
        const auto n = detail::parse_decimal(name.substr(4));
        if (!n || *n > detail::max_range_list_id)
            return std::nullopt;
        const node_id id(static_cast<unsigned>(*n));
        for (const node_id known : kernel_->nodes())
            if (known == id && kernel_->online(id))
                return id.value();
        return std::nullopt;
    }

    std::optional<std::uint64_t> size_named(std::string_view name, std::optional<unsigned> node) const
    {
        const auto parsed = detail::parse_hugepages_dir_name(name);
        if (!parsed || detail::paths::hstate_dir_name(parsed.value()) != name)
            return std::nullopt;
        if (node) {
            if (!kernel_->has({node_id(*node), parsed.value()}))
                return std::nullopt;
        } else {
            const auto sizes = kernel_->page_sizes();
            if (std::find(sizes.begin(), sizes.end(), parsed.value()) == sizes.end())
                return std::nullopt;
        }
        return parsed.value().bytes();
    }

    location resolve(std::string_view path) const
    {
        const auto parts = split(path);
        location at;
        const auto is = [&](std::size_t i, std::string_view name) { return parts.size() > i && parts[i] == name; };
        if (parts.empty())
            return only(place::root);
        if (is(0, "devices")) {
            if (parts.size() == 1)
                return only(place::devices);
            if (!is(1, "system"))
                return {};
            if (parts.size() == 2)
                return only(place::system);
            if (is(2, "cpu")) {
                if (parts.size() == 3)
                    return only(place::cpu_dir);
                if (parts.size() == 4 && is(3, "online"))
                    return only(place::cpu_online);
                return {};
            }
            if (!is(2, "node") || !kernel_->numa())
                return {};
            if (parts.size() == 3)
                return only(place::node_root);
            if (parts.size() == 4 && contains(node_masks, parts[3]))
                return {place::node_mask, 0, 0, std::string(parts[3])};
            const auto node = online_node(parts[3]);
            if (!node)
                return {};
            at.node = *node;
            if (parts.size() == 4)
                return at.what = place::node_dir, at;
            if (parts.size() == 5 && parts[4] == "cpulist")
                return at.what = place::node_cpulist, at;
            if (parts[4] != "hugepages" || !kernel_->node(node_id(*node)).has_memory)
                return {};
            if (parts.size() == 5)
                return at.what = place::node_hugepages, at;
            const auto size = size_named(parts[5], *node);
            if (!size)
                return {};
            at.size_bytes = *size;
            if (parts.size() == 6)
                return at.what = place::hstate_dir, at;
            if (parts.size() == 7
                && (contains(hstate_counters, parts[6])
                    || (parts[6] == detail::paths::zeroable_hugepages && kernel_->has_zeroable_interface(at.h())))) {
                at.name = std::string(parts[6]);
                return at.what = place::hstate_attribute, at;
            }
            return {};
        }
        if (is(0, "kernel")) {
            if (parts.size() == 1)
                return only(place::kernel_dir);
            if (!is(1, "mm"))
                return {};
            if (parts.size() == 2)
                return only(place::mm_dir);
            if (!is(2, "hugepages"))
                return {};
            if (parts.size() == 3)
                return only(place::global_root);
            const auto size = size_named(parts[3], std::nullopt);
            if (!size)
                return {};
            at.size_bytes = *size;
            if (parts.size() == 4)
                return at.what = place::global_dir, at;
            if (parts.size() == 5 && contains(global_counters, parts[4])) {
                at.name = std::string(parts[4]);
                return at.what = place::global_attribute, at;
            }
        }
        return {};
    }

    cpu_set online_nodes(bool need_memory, bool need_cpu) const
    {
        std::vector<id_range> ids;
        for (const node_id n : kernel_->nodes()) {
            const auto& cfg = kernel_->node(n);
            if (kernel_->online(n) && (!need_memory || cfg.has_memory) && (!need_cpu || !cfg.cpus.empty()))
                ids.push_back({n.value(), n.value()});
        }
        return cpu_set::from_ranges(std::move(ids));
    }

    cpu_set all_cpus() const
    {
        std::vector<id_range> ranges;
        for (const node_id n : kernel_->nodes())
            for (const auto& r : kernel_->node(n).cpus.ranges())
                ranges.push_back(r);
        return cpu_set::from_ranges(std::move(ranges));
    }

    std::vector<std::string> names(const location& at) const
    {
        switch (at.what) {
        case place::root:
            return {"devices", "kernel"};
        case place::devices:
            return {"system"};
        case place::system:
            return kernel_->numa() ? std::vector<std::string>{"cpu", "node"} : std::vector<std::string>{"cpu"};
        case place::cpu_dir:
            return {"online"};
        case place::node_root: {
            std::set<std::string> out(std::begin(node_masks), std::end(node_masks));
            for (const node_id n : kernel_->nodes())
                if (kernel_->online(n))
                    out.insert("node" + std::to_string(n.value()));
            return {out.begin(), out.end()};
        }
        case place::node_dir:
            return kernel_->node(node_id(at.node)).has_memory ? std::vector<std::string>{"cpulist", "hugepages"}
                                                              : std::vector<std::string>{"cpulist"};
        case place::node_hugepages: {
            std::vector<std::string> out;
            for (const auto& h : kernel_->hstates())
                if (h.node == node_id(at.node))
                    out.push_back(detail::paths::hstate_dir_name(h.size));
            std::sort(out.begin(), out.end());
            return out;
        }
        case place::hstate_dir: {
            std::vector<std::string> out(std::begin(hstate_counters), std::end(hstate_counters));
            if (kernel_->has_zeroable_interface(at.h()))
                out.emplace_back(detail::paths::zeroable_hugepages);
            std::sort(out.begin(), out.end());
            return out;
        }
        case place::kernel_dir:
            return {"mm"};
        case place::mm_dir:
            return {"hugepages"};
        case place::global_root: {
            std::vector<std::string> out;
            for (const page_size size : kernel_->page_sizes())
                out.push_back(detail::paths::hstate_dir_name(size));
            std::sort(out.begin(), out.end());
            return out;
        }
        case place::global_dir:
            return {global_counters[0].data(), global_counters[1].data(), global_counters[2].data(),
                    global_counters[3].data(), global_counters[4].data()};
        default:
            return {};
        }
    }

    std::string content(const location& at) const
    {
        const auto line = [](const auto& value) {
            std::string text = to_string_any(value);
            text += '\n';
            return text;
        };
        switch (at.what) {
        case place::cpu_online:
            return line(all_cpus());
        case place::node_mask:
            if (at.name == "possible")
                return line(possible_nodes());
            if (at.name == "online")
                return line(online_nodes(false, false));
            if (at.name == "has_cpu")
                return line(online_nodes(false, true));
            return line(online_nodes(true, false)); // has_memory, has_normal_memory
        case place::node_cpulist:
            return line(kernel_->node(node_id(at.node)).cpus);
        case place::hstate_attribute: {
            const page_counts c = kernel_->counts(at.h());
            if (at.name == detail::paths::nr_hugepages)
                return line(c.total());
            if (at.name == detail::paths::free_hugepages)
                return line(c.free());
            if (at.name == detail::paths::surplus_hugepages)
                return line(c.surplus);
            return line(c.dirty);
        }
        case place::global_attribute: {
            page_counts sum;
            const page_size size(at.size_bytes);
            for (const auto& h : kernel_->hstates())
                if (h.size == size && kernel_->online(h.node)) { // offline nodes' pages are gone
                    const page_counts c = kernel_->counts(h);
                    sum.dirty += c.dirty;
                    sum.zeroed += c.zeroed;
                    sum.zeroing += c.zeroing;
                    sum.in_use += c.in_use;
                    sum.surplus += c.surplus;
                }
            if (at.name == detail::paths::nr_hugepages)
                return line(sum.total());
            if (at.name == detail::paths::free_hugepages)
                return line(sum.free());
            if (at.name == detail::paths::surplus_hugepages)
                return line(sum.surplus);
            if (at.name == detail::paths::resv_hugepages)
                return line(kernel_->reserved(size));
            return line(kernel_->overcommit(size));
        }
        default:
            return {};
        }
    }

    cpu_set possible_nodes() const
    {
        std::vector<id_range> ids;
        for (const node_id n : kernel_->nodes())
            ids.push_back({n.value(), n.value()});
        return cpu_set::from_ranges(std::move(ids));
    }

    static std::string to_string_any(std::uint64_t value) { return std::to_string(value); }
    static std::string to_string_any(const cpu_set& set) { return to_string(set); }

    std::shared_ptr<kernel> kernel_;
};

} // namespace hugezero::sim

#endif
