# Run after each build of a test executable that also runs through the FUSE emulator
# (hugezero_discover_emulator_tests): lists its cases as run with --through-emulator (listing
# mounts nothing) and writes a ctest file with one case per doctest case, emulator/<case>.
#   -D EXECUTABLE=... -D LABELS="emulator;..." -D OUTPUT=file.cmake
execute_process(COMMAND "${EXECUTABLE}" --through-emulator --list-test-cases OUTPUT_VARIABLE output RESULT_VARIABLE result)
if(NOT result EQUAL 0)
  message(FATAL_ERROR "cannot list the test cases of ${EXECUTABLE}: ${output}")
endif()
string(REPLACE ";" "\\;" output "${output}")
string(REPLACE "\n" ";" lines "${output}")
set(script "")
foreach(line IN LISTS lines)
  if(line STREQUAL "" OR line MATCHES "^=+$" OR line MATCHES [==[^\[doctest\] ]==])
    continue()
  endif()
  string(REPLACE "," "\\," filter "${line}")
  set(name "emulator/${line}")
  string(APPEND script "add_test([==[${name}]==] [==[${EXECUTABLE}]==] --through-emulator [==[--test-case=${filter}]==])\n")
  string(APPEND script "set_tests_properties([==[${name}]==] PROPERTIES LABELS [==[${LABELS}]==] RUN_SERIAL TRUE"
                       " SKIP_REGULAR_EXPRESSION HUGEZERO_SKIP: FAIL_REGULAR_EXPRESSION [==[test cases: +0 [|]]==])\n")
endforeach()
file(WRITE "${OUTPUT}" "${script}")
