# Run after each guest suite is built (tests/guest/CMakeLists.txt): lists its doctest cases on
# this machine (listing touches no kernel) and writes a ctest file with one case per doctest
# case and per switch combination, each run inside the booted guest by scripts/guest exec.
#   -D EXECUTABLE=... -D KERNEL=abi|stock -D GUEST=name -D SCRIPT=scripts/guest
#   -D COMBOS="einval,eintr;..." (empty for none) -D OUTPUT=file.cmake -D TIMEOUT=seconds
include(${CMAKE_CURRENT_LIST_DIR}/../list_doctest_cases.cmake)
doctest_list(cases "${EXECUTABLE}" --list-test-cases)
if(NOT COMBOS)
  set(COMBOS "-")
endif()
set(script "")
foreach(combo IN LISTS COMBOS)
  string(REPLACE "-" "" combo_text "${combo}")
  string(REPLACE "," "+" combo_name "${combo_text}")
  foreach(case IN LISTS cases)
    string(REPLACE "," "\\," filter "${case}")
    if(combo_name STREQUAL "")
      set(name "guest.${KERNEL}.${case}")
    else()
      set(name "guest.${KERNEL}.${combo_name}.${case}")
    endif()
    string(APPEND script "add_test([==[${name}]==] [==[${SCRIPT}]==] exec --name [==[${GUEST}]==] --skip-unless-required"
                         " --timeout ${TIMEOUT} --env [==[HUGEZERO_GUEST_SWITCHES=${combo_text}]==] --"
                         " [==[${EXECUTABLE}]==] [==[--test-case=${filter}]==])\n")
    string(APPEND script "set_tests_properties([==[${name}]==] PROPERTIES LABELS guest RUN_SERIAL TRUE"
                         " FIXTURES_REQUIRED guest_${KERNEL} TIMEOUT ${TIMEOUT}"
                         " SKIP_REGULAR_EXPRESSION HUGEZERO_SKIP: FAIL_REGULAR_EXPRESSION [==[test cases: +0 [|]]==])\n")
  endforeach()
endforeach()
file(WRITE "${OUTPUT}" "${script}")
