# Finding what hugezero's own programs and tests build with (never the library: it needs only the
# C++ standard library, libc and Linux headers). Every dependency is found through
# hugezero_find_dependency(), which reads scripts/packages, the one list of Debian packages that
# the scripts install from: a dependency that is missing names its package and the command that
# installs it, and a dependency missing from the list is an error of the build itself.

set(hugezero_packages_file ${PROJECT_SOURCE_DIR}/scripts/packages)

# hugezero_debian_package(<what> <out-package> <out-purposes>): the package on the line of
# scripts/packages whose last column is <what> (cmake:NAME, pkg-config:MODULE), and the purposes
# on that line (scripts/install-packages <purpose> installs it).
function(hugezero_debian_package what out_package out_purposes)
  file(STRINGS ${hugezero_packages_file} lines REGEX "^[^#].*[ \t]${what}[ \t]*$")
  list(LENGTH lines count)
  if(NOT count EQUAL 1)
    message(FATAL_ERROR "hugezero: ${hugezero_packages_file} must have exactly one line providing ${what} "
                        "(found ${count}): every dependency of the build is on that list")
  endif()
  string(REGEX REPLACE "[ \t]+" ";" fields "${lines}")
  list(POP_FRONT fields package)
  list(POP_BACK fields) # <what>
  set(${out_package} ${package} PARENT_SCOPE)
  set(${out_purposes} ${fields} PARENT_SCOPE)
endfunction()

# hugezero_find_dependency(<name> [VERSION <v>] [PKG_CONFIG <module>] FOR <what needs it>
#                          [OPTION <option that turns it off>])
# find_package(<name> <v>), or with PKG_CONFIG pkg_check_modules(<name> IMPORTED_TARGET
# <module>>=<v>) (target PkgConfig::<name>). If it is not found, configuration stops with the
# Debian package to install and the option that builds without it. A macro, as find_package()
# sets variables in its caller's scope (doctest's CMAKE_MODULE_PATH, for one).
macro(hugezero_find_dependency _hz_name)
  cmake_parse_arguments(_hz "" "VERSION;PKG_CONFIG;FOR;OPTION" "" ${ARGN})
  if(_hz_PKG_CONFIG)
    hugezero_debian_package(pkg-config:${_hz_PKG_CONFIG} _hz_package _hz_purpose) # on the list, found or not
    find_package(PkgConfig QUIET)
    if(NOT PkgConfig_FOUND)
      hugezero_dependency_missing(PkgConfig "" cmake:PkgConfig "${_hz_FOR}" "${_hz_OPTION}")
    endif()
    set(_hz_module ${_hz_PKG_CONFIG})
    if(_hz_VERSION)
      string(APPEND _hz_module ">=${_hz_VERSION}")
    endif()
    pkg_check_modules(${_hz_name} QUIET IMPORTED_TARGET GLOBAL ${_hz_module})
    if(NOT ${_hz_name}_FOUND)
      hugezero_dependency_missing(${_hz_PKG_CONFIG} "${_hz_VERSION}" pkg-config:${_hz_PKG_CONFIG} "${_hz_FOR}"
                                  "${_hz_OPTION}")
    endif()
  else()
    hugezero_debian_package(cmake:${_hz_name} _hz_package _hz_purpose)
    find_package(${_hz_name} ${_hz_VERSION} QUIET)
    if(NOT ${_hz_name}_FOUND)
      hugezero_dependency_missing(${_hz_name} "${_hz_VERSION}" cmake:${_hz_name} "${_hz_FOR}" "${_hz_OPTION}")
    endif()
  endif()
endmacro()

# Stops the configuration: <for> needs <name> (>= <version>), provided by the package of <what>.
function(hugezero_dependency_missing name version what for option)
  hugezero_debian_package(${what} package purposes)
  # The purpose of what the option builds, so that one install brings all it needs.
  set(purpose_of_HUGEZERO_BUILD_EXAMPLES demo)
  set(purpose_of_HUGEZERO_BUILD_TOOLS tools)
  set(purpose_of_HUGEZERO_BUILD_DOCS docs)
  list(GET purposes 0 purpose)
  if(DEFINED purpose_of_${option} AND purpose_of_${option} IN_LIST purposes)
    set(purpose ${purpose_of_${option}})
  elseif(tests IN_LIST purposes AND option MATCHES "TESTS|EMULATOR|BENCHMARKS")
    set(purpose tests)
  endif()
  set(text "hugezero: ${name}")
  if(NOT version STREQUAL "")
    string(APPEND text " >= ${version}")
  endif()
  string(APPEND text ", needed by ${for}, was not found. Install Debian's ${package}: as root, "
                     "scripts/install-packages ${purpose} (or apt-get install ${package})")
  if(NOT option STREQUAL "")
    string(APPEND text ", or configure with -D${option}=OFF to build without ${for}")
  endif()
  message(FATAL_ERROR "${text}.")
endfunction()
