# Run after each build of a test executable (hugezero_add_test with SUITE_LABELS or EMULATOR):
# lists its doctest cases and writes a ctest file with one test per case, named <PREFIX><case>,
# run as `EXECUTABLE ARGS --test-case=<case>`, labelled LABELS and, with SUITE_LABELS, the
# case's TEST_SUITE too (doctest_discover_tests labels a whole executable alike, and its own
# per-suite labels break on case names with commas). SERIAL runs each case alone.
#   -D EXECUTABLE=... -D OUTPUT=file.cmake [-D PREFIX=emulator/] [-D ARGS=--through-emulator]
#   [-D LABELS="a;b"] [-D SUITE_LABELS=ON] [-D SERIAL=ON]

include(${CMAKE_CURRENT_LIST_DIR}/list_doctest_cases.cmake)

# Appends to `script` the test of case @p case, labelled @p labels.
macro(add_case case labels)
  string(REPLACE "," "\\," filter "${case}")
  set(name "${PREFIX}${case}")
  string(APPEND script "add_test([==[${name}]==] [==[${EXECUTABLE}]==] ${ARGS} [==[--test-case=${filter}]==])\n")
  string(APPEND script "set_tests_properties([==[${name}]==] PROPERTIES LABELS [==[${labels}]==]${serial}"
                       " SKIP_REGULAR_EXPRESSION HUGEZERO_SKIP: FAIL_REGULAR_EXPRESSION [==[test cases: +0 [|]]==])\n")
endmacro()

set(script "")
set(serial "")
if(SERIAL)
  set(serial " RUN_SERIAL TRUE")
endif()
if(SUITE_LABELS)
  doctest_list(suites "${EXECUTABLE}" ${ARGS} --list-test-suites)
  foreach(suite IN LISTS suites)
    string(REPLACE "," "\\," suite_filter "${suite}")
    doctest_list(cases "${EXECUTABLE}" ${ARGS} "--test-suite=${suite_filter}" --list-test-cases)
    foreach(case IN LISTS cases)
      set(labels ${LABELS})
      list(APPEND labels "${suite}")
      add_case("${case}" "${labels}")
    endforeach()
  endforeach()
else()
  doctest_list(cases "${EXECUTABLE}" ${ARGS} --list-test-cases)
  foreach(case IN LISTS cases)
    add_case("${case}" "${LABELS}")
  endforeach()
endif()
file(WRITE "${OUTPUT}" "${script}")
