# ctest case layout.include-rules (cmake -DSOURCE_DIR=... -P): the rules of docs/design.md,
# "What may include what", checked over every #include of the tree. Each rule names the files
# it governs (a regex on their path) and the includes they may not have (a regex on the
# included name); a violation names the file, the line and the rule.
cmake_minimum_required(VERSION 3.21)

# rule: <name> :: <files regex> :: <forbidden include regex>
set(rules
  "detail/pool/ is the pool's: only it, pool.hpp and lease.hpp include it :: ^include/hugezero/(detail/(zeroing/)?[^/]+|sim/[^/]+|[^/]+)\\.hpp$ :: ^<hugezero/detail/pool/"
  "detail/zeroing/ is the zeroing engine's: only it, zeroing.hpp, service.hpp and machine.hpp include it :: ^include/hugezero/(detail/(pool/)?[^/]+|sim/[^/]+|[^/]+)\\.hpp$ :: ^<hugezero/detail/zeroing/"
  "the public headers include no tool, test or example :: ^include/ :: ^\""
  "tools and examples use the public headers only :: ^(tools|examples)/ :: ^<hugezero/detail/"
  "the protocol and tools/common are shared: they include nothing of the daemon or the launcher :: ^tools/(protocol|common)/ :: ^\"(hugezerod|hugezero-run)/"
  "tools/common includes nothing of the tools :: ^tools/common/ :: ^\"(protocol|hugezerod|hugezero-run)/"
  "hugezero-run speaks the protocol: it includes nothing of the daemon :: ^tools/hugezero-run/ :: ^\"hugezerod/"
  "the examples take nothing from the tools but their units :: ^examples/ :: ^\"(protocol|hugezerod|hugezero-run)/")
set(exceptions # <file> :: <include>: the public facades of the subsystems
  "include/hugezero/pool.hpp :: <hugezero/detail/pool/"
  "include/hugezero/lease.hpp :: <hugezero/detail/pool/"
  "include/hugezero/zeroing.hpp :: <hugezero/detail/zeroing/"
  "include/hugezero/service.hpp :: <hugezero/detail/zeroing/"
  "include/hugezero/machine.hpp :: <hugezero/detail/zeroing/")

file(GLOB_RECURSE files RELATIVE ${SOURCE_DIR} ${SOURCE_DIR}/include/*.hpp ${SOURCE_DIR}/tools/*.hpp ${SOURCE_DIR}/tools/*.cpp
     ${SOURCE_DIR}/examples/*.hpp ${SOURCE_DIR}/examples/*.cpp)
set(problems "")
set(count 0)
foreach(file IN LISTS files)
  file(STRINGS ${SOURCE_DIR}/${file} lines REGEX "^#include ")
  foreach(line IN LISTS lines)
    math(EXPR count "${count} + 1")
    string(REGEX REPLACE "^#include[ \t]+" "" included "${line}")
    foreach(rule IN LISTS rules)
      string(REPLACE " :: " ";" parts "${rule}")
      list(GET parts 0 name)
      list(GET parts 1 governed)
      list(GET parts 2 forbidden)
      if(NOT file MATCHES "${governed}" OR NOT included MATCHES "${forbidden}")
        continue()
      endif()
      set(excepted FALSE)
      foreach(exception IN LISTS exceptions)
        string(REPLACE " :: " ";" e "${exception}")
        list(GET e 0 e_file)
        list(GET e 1 e_include)
        string(FIND "${included}" "${e_include}" at)
        if(file STREQUAL e_file AND at EQUAL 0)
          set(excepted TRUE)
        endif()
      endforeach()
      if(NOT excepted)
        list(APPEND problems "${file}: #include ${included}: ${name}")
      endif()
    endforeach()
  endforeach()
endforeach()

if(problems)
  list(JOIN problems "\n  " text)
  message(FATAL_ERROR "includes that break the layout's rules (docs/design.md, \"What may include what\"):\n  ${text}")
endif()
list(LENGTH files n)
message(STATUS "${count} includes of ${n} files follow the layout's rules")
