// A small JSON reader for tests that check a program's JSON output: strict enough to reject
// what is not JSON, small enough to read. Numbers are kept as double and as their text.
#ifndef HUGEZERO_TESTS_SUPPORT_JSON_HPP
#define HUGEZERO_TESTS_SUPPORT_JSON_HPP

#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace hugezero::test::json {

struct value;
using object = std::map<std::string, value>;
using array = std::vector<value>;

struct value {
    std::variant<std::nullptr_t, bool, double, std::string, array, object> data;
    std::string number_text;

    [[nodiscard]] bool is_null() const { return std::holds_alternative<std::nullptr_t>(data); }
    [[nodiscard]] const object& as_object() const { return std::get<object>(data); }
    [[nodiscard]] const array& as_array() const { return std::get<array>(data); }
    [[nodiscard]] const std::string& as_string() const { return std::get<std::string>(data); }
    [[nodiscard]] double as_number() const { return std::get<double>(data); }
    [[nodiscard]] std::uint64_t as_u64() const
    {
        if (number_text.find_first_not_of("0123456789") != std::string::npos || number_text.empty())
            throw std::runtime_error("not an unsigned integer: " + number_text);
        return std::stoull(number_text);
    }
    [[nodiscard]] const value& operator[](const std::string& key) const
    {
        const auto& o = as_object();
        const auto it = o.find(key);
        if (it == o.end())
            throw std::runtime_error("no key \"" + key + "\" in JSON object");
        return it->second;
    }
    [[nodiscard]] bool has(const std::string& key) const { return as_object().count(key) != 0; }
};

class parser {
public:
    explicit parser(std::string_view text) : text_(text) {}

    value parse_document()
    {
        value v = parse_value();
        skip_space();
        if (pos_ != text_.size())
            fail("trailing characters after the JSON value");
        return v;
    }

private:
    [[noreturn]] void fail(const std::string& what) const
    {
        throw std::runtime_error("invalid JSON at offset " + std::to_string(pos_) + ": " + what);
    }
    void skip_space()
    {
        while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\n' || text_[pos_] == '\t' || text_[pos_] == '\r'))
            ++pos_;
    }
    bool take(std::string_view word)
    {
        if (text_.substr(pos_, word.size()) != word)
            return false;
        pos_ += word.size();
        return true;
    }
    value parse_value()
    {
        skip_space();
        if (pos_ >= text_.size())
            fail("unexpected end");
        const char c = text_[pos_];
        value v;
        if (c == '{') {
            ++pos_;
            object o;
            skip_space();
            if (!take("}")) {
                for (;;) {
                    skip_space();
                    std::string key = parse_string();
                    skip_space();
                    if (!take(":"))
                        fail("expected ':'");
                    if (!o.emplace(key, parse_value()).second)
                        fail("duplicate key " + key);
                    skip_space();
                    if (take("}"))
                        break;
                    if (!take(","))
                        fail("expected ',' or '}'");
                }
            }
            v.data = std::move(o);
        } else if (c == '[') {
            ++pos_;
            array a;
            skip_space();
            if (!take("]")) {
                for (;;) {
                    a.push_back(parse_value());
                    skip_space();
                    if (take("]"))
                        break;
                    if (!take(","))
                        fail("expected ',' or ']'");
                }
            }
            v.data = std::move(a);
        } else if (c == '"') {
            v.data = parse_string();
        } else if (take("null")) {
            v.data = nullptr;
        } else if (take("true")) {
            v.data = true;
        } else if (take("false")) {
            v.data = false;
        } else {
            const std::size_t start = pos_;
            if (text_[pos_] == '-')
                ++pos_;
            while (pos_ < text_.size() && std::string_view("0123456789.eE+-").find(text_[pos_]) != std::string_view::npos)
                ++pos_;
            if (pos_ == start)
                fail("unexpected character");
            v.number_text = std::string(text_.substr(start, pos_ - start));
            v.data = std::stod(v.number_text);
        }
        return v;
    }
    std::string parse_string()
    {
        if (!take("\""))
            fail("expected a string");
        std::string out;
        while (pos_ < text_.size() && text_[pos_] != '"') {
            char c = text_[pos_++];
            if (static_cast<unsigned char>(c) < 0x20)
                fail("control character in string");
            if (c == '\\') {
                if (pos_ >= text_.size())
                    fail("unterminated escape");
                const char e = text_[pos_++];
                switch (e) {
                case 'n': c = '\n'; break;
                case 't': c = '\t'; break;
                case 'r': c = '\r'; break;
                case '"': c = '"'; break;
                case '\\': c = '\\'; break;
                case '/': c = '/'; break;
                case 'u': {
                    const auto code = std::stoul(std::string(text_.substr(pos_, 4)), nullptr, 16);
                    pos_ += 4;
                    c = code < 0x80 ? static_cast<char>(code) : '?';
                    break;
                }
                default: fail("bad escape");
                }
            }
            out += c;
        }
        if (!take("\""))
            fail("unterminated string");
        return out;
    }

    std::string_view text_;
    std::size_t pos_ = 0;
};

inline value parse(std::string_view text) { return parser(text).parse_document(); }

} // namespace hugezero::test::json

#endif
