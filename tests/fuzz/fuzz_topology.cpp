// topology::discover, and machine's counters, over a sysfs tree made from the input: one entry per
// line, "<path>" for a directory or "<path>: <content>" for an attribute, where "\n" in the
// content stands for a newline and "\\" for a backslash (see corpus/topology/). Discovery either
// gives a consistent topology whose counters read without surprise, or fails with the errors it
// documents: parse_error or system_error naming a file of the tree, or invalid_argument.
#include <algorithm>
#include <cerrno>
#include <map>
#include <memory>
#include <set>
#include <stdexcept>
#include <system_error>

#include <hugezero/machine.hpp>

#include "fuzz.hpp"

namespace {

constexpr std::string_view display_prefix = "fuzz:/sys/";

// A sysfs tree in memory; the backend interface, without writing or watching.
class tree_backend final : public hugezero::backend {
public:
    explicit tree_backend(std::string_view description)
    {
        directories_.insert("");
        for (std::size_t start = 0; start < description.size();) {
            const std::size_t end = std::min(description.find('\n', start), description.size());
            add(description.substr(start, end - start));
            start = end + 1;
        }
    }

    std::string read(std::string_view path) override
    {
        const auto it = files_.find(std::string(path));
        if (it == files_.end())
            throw hugezero::detail::system_error(directories_.count(std::string(path)) != 0 ? EISDIR : ENOENT,
                                                 "open " + display_path(path));
        return it->second;
    }
    std::optional<std::vector<std::string>> list(std::string_view path) override
    {
        const std::string dir(path);
        if (files_.count(dir) != 0)
            throw hugezero::detail::system_error(ENOTDIR, "open directory " + display_path(path));
        if (directories_.count(dir) == 0)
            return std::nullopt;
        std::set<std::string> names;
        const std::string prefix = dir.empty() ? dir : dir + "/";
        const auto collect = [&](const std::string& p) {
            if (p.size() > prefix.size() && p.compare(0, prefix.size(), prefix) == 0) {
                const std::string rest = p.substr(prefix.size());
                names.insert(rest.substr(0, rest.find('/')));
            }
        };
        for (const auto& d : directories_)
            collect(d);
        for (const auto& [f, content] : files_)
            collect(f);
        return std::vector<std::string>(names.begin(), names.end());
    }
    std::unique_ptr<hugezero::attribute_writer> open_writer(std::string_view path) override
    {
        throw hugezero::detail::system_error(EACCES, "open for writing " + display_path(path));
    }
    std::unique_ptr<hugezero::attribute_watch> open_watch(std::string_view path) override
    {
        throw hugezero::detail::system_error(EACCES, "open for watching " + display_path(path));
    }
    [[nodiscard]] std::string display_path(std::string_view path) const override
    {
        return std::string(display_prefix) + std::string(path);
    }

private:
    void add(std::string_view line)
    {
        const std::size_t colon = line.find(": ");
        std::string path(line.substr(0, colon));
        while (!path.empty() && path.back() == '/')
            path.pop_back();
        if (path.empty() || path.find("//") != std::string::npos || path.front() == '/')
            return;
        for (std::size_t slash = path.find('/'); slash != std::string::npos; slash = path.find('/', slash + 1))
            directories_.insert(path.substr(0, slash));
        if (colon == std::string_view::npos) {
            if (files_.count(path) == 0)
                directories_.insert(path);
            return;
        }
        if (directories_.count(path) != 0)
            return;
        std::string content;
        const std::string_view escaped = line.substr(colon + 2);
        for (std::size_t i = 0; i < escaped.size(); ++i) {
            if (escaped[i] == '\\' && i + 1 < escaped.size() && (escaped[i + 1] == 'n' || escaped[i + 1] == '\\')) {
                content += escaped[i + 1] == 'n' ? '\n' : '\\';
                ++i;
            } else {
                content += escaped[i];
            }
        }
        files_[path] = content;
    }

    std::set<std::string> directories_;
    std::map<std::string, std::string> files_;
};

bool names_a_file(std::string_view message) { return message.find(display_prefix) != std::string_view::npos; }

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    const std::string_view input = hugezero::fuzz::text(data, size);
    const std::string shown = hugezero::detail::quote_content(input);
    auto source = std::make_shared<tree_backend>(input);
    try {
        const hugezero::machine m(source);
        const auto& t = m.topology();
        const auto& sizes = t.page_sizes();
        HUGEZERO_FUZZ_CHECK(std::is_sorted(sizes.begin(), sizes.end()), shown);
        HUGEZERO_FUZZ_CHECK(std::adjacent_find(sizes.begin(), sizes.end()) == sizes.end(), shown);
        HUGEZERO_FUZZ_CHECK(t.numa() || t.nodes().size() == 1, shown);
        for (std::size_t i = 0; i < t.nodes().size(); ++i) {
            const auto& n = t.nodes()[i];
            HUGEZERO_FUZZ_CHECK(i == 0 || t.nodes()[i - 1].id < n.id, shown);
            HUGEZERO_FUZZ_CHECK(n.has_memory || n.hstates.empty(), shown);
            HUGEZERO_FUZZ_CHECK(&t.node(n.id) == &n, shown);
            for (std::size_t j = 0; j < n.hstates.size(); ++j) {
                const auto& h = n.hstates[j];
                HUGEZERO_FUZZ_CHECK(h.id.node == n.id, shown);
                HUGEZERO_FUZZ_CHECK(j == 0 || n.hstates[j - 1].id.size < h.id.size, shown);
                HUGEZERO_FUZZ_CHECK(source->list(h.directory).has_value(), shown);
                HUGEZERO_FUZZ_CHECK(&t.info(h.id) == &h, shown);
                try {
                    const auto c = m.counters(h.id);
                    HUGEZERO_FUZZ_CHECK(c.zeroable.has_value() == h.zeroable_supported, shown);
                } catch (const hugezero::parse_error& e) {
                    HUGEZERO_FUZZ_CHECK(names_a_file(e.what()), e.what());
                } catch (const std::system_error& e) {
                    HUGEZERO_FUZZ_CHECK(names_a_file(e.what()), e.what());
                }
            }
        }
    } catch (const hugezero::parse_error& e) {
        HUGEZERO_FUZZ_CHECK(names_a_file(e.what()), e.what());
    } catch (const std::system_error& e) {
        HUGEZERO_FUZZ_CHECK(names_a_file(e.what()), e.what());
    } catch (const std::invalid_argument&) {
        // e.g. a page size the kernel could not have; documented, nothing more to check
    }
    return 0;
}
