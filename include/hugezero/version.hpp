/// @file
/// @brief The library's version: the one place it is written (CMake reads it from here).
#ifndef HUGEZERO_VERSION_HPP
#define HUGEZERO_VERSION_HPP

/// Major version: changes when the API breaks.
#define HUGEZERO_VERSION_MAJOR 0
/// Minor version: changes when the API grows.
#define HUGEZERO_VERSION_MINOR 1
/// Patch version: fixes only.
#define HUGEZERO_VERSION_PATCH 0

namespace hugezero {
/// The version as text, "major.minor.patch".
inline constexpr const char* version_string = "0.1.0";
} // namespace hugezero

#endif
