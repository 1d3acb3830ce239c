// Catching an expected exception so its details (errno, path, content, message) can be checked,
// not just its type; and what a value prints, for the messages and operator<< contracts.
#ifndef HUGEZERO_TESTS_SUPPORT_EXPECT_HPP
#define HUGEZERO_TESTS_SUPPORT_EXPECT_HPP

#include <exception>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <typeinfo>

namespace hugezero::test {

// Runs @p body and returns the @p Exception it throws. If it throws nothing, or something else,
// throws std::runtime_error saying so, which fails the test case with that text.
template <class Exception, class Body>
Exception thrown_by(Body&& body)
{
    try {
        body();
    } catch (const Exception& e) {
        return e;
    } catch (const std::exception& other) {
        throw std::runtime_error(std::string("expected ") + typeid(Exception).name() + ", got "
                                 + typeid(other).name() + ": " + other.what());
    }
    throw std::runtime_error(std::string("expected ") + typeid(Exception).name() + ", nothing was thrown");
}

// Whether @p text contains @p part (for messages where only a piece is the contract).
inline bool contains(std::string_view text, std::string_view part) { return text.find(part) != std::string_view::npos; }

// What `out << value` prints.
template <class T>
std::string printed(const T& value)
{
    std::ostringstream out;
    out << value;
    return out.str();
}

} // namespace hugezero::test

#endif
