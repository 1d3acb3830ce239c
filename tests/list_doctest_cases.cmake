# doctest_list(<out> <executable> <arguments>...): the lines `<executable> <arguments>` prints
# (a doctest listing: --list-test-cases, --list-test-suites), its banners and blank lines left
# out, as a list in <out>; a fatal error if it fails. Included by the scripts that add doctest
# cases to ctest after a build (add_doctest_cases.cmake, guest/add_guest_tests.cmake).
function(doctest_list out executable)
  execute_process(COMMAND "${executable}" ${ARGN} OUTPUT_VARIABLE output RESULT_VARIABLE result)
  if(NOT result EQUAL 0)
    message(FATAL_ERROR "cannot list the test cases of ${executable} (${ARGN}): ${output}")
  endif()
  string(REPLACE ";" "\\;" output "${output}")
  string(REPLACE "\n" ";" lines "${output}")
  set(kept "")
  foreach(line IN LISTS lines)
    if(line STREQUAL "" OR line MATCHES "^=+$" OR line MATCHES [==[^\[doctest\] ]==])
      continue()
    endif()
    list(APPEND kept "${line}")
  endforeach()
  set(${out} "${kept}" PARENT_SCOPE)
endfunction()
