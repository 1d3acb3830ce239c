# One consumer test: builds consumer.cpp against hugezero the way a project using it would, with
# the compiler and generator of the build that runs the test, then runs it and checks its output.
#
#   cmake -DSTEP=<step> -DSOURCE_DIR=<hugezero source> -DWORK_DIR=<scratch dir>
#         -DVERSION=<project version> -DCXX_COMPILER=<c++> -DGENERATOR=<generator>
#         [-DMAKE_PROGRAM=<ninja/make>] [-DPKG_CONFIG=<pkg-config>] -P consume.cmake
#
# Steps (tests/CMakeLists.txt registers one ctest case per step):
#   install           configure hugezero afresh (tests, examples, benchmarks, docs OFF), build
#                     and install it into WORK_DIR/prefix; the fixture of the next two
#   find_package      find_package(hugezero CONFIG) from that prefix, link hugezero::hugezero
#   add_subdirectory  add_subdirectory(<hugezero source>) from a consumer project
#   pkg_config        pkg-config --cflags from that prefix; then from a second install that has
#                     been moved elsewhere after installing (the .pc is relocatable)
cmake_minimum_required(VERSION 3.21)

foreach(var IN ITEMS STEP SOURCE_DIR WORK_DIR VERSION CXX_COMPILER GENERATOR)
  if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
    message(FATAL_ERROR "consume.cmake: -D${var}=... is required")
  endif()
endforeach()

set(consumer_dir ${CMAKE_CURRENT_LIST_DIR})
set(hugezero_build ${WORK_DIR}/hugezero-build)
set(prefix ${WORK_DIR}/prefix)
set(toolchain -G ${GENERATOR} -DCMAKE_CXX_COMPILER=${CXX_COMPILER})
if(MAKE_PROGRAM)
  list(APPEND toolchain -DCMAKE_MAKE_PROGRAM=${MAKE_PROGRAM})
endif()
string(REPLACE "." "\\." version_regex "${VERSION}")

# run(<what> <command>...): runs the command; on failure shows its output and stops the test.
# The output is left in run_output.
function(run what)
  list(JOIN ARGN " " shown)
  message(STATUS "${what}: ${shown}")
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "consumer test ${STEP}: could not ${what} (exit status ${rc}):\n${out}")
  endif()
  set(run_output "${out}" PARENT_SCOPE)
endfunction()

function(fresh_directory dir)
  file(REMOVE_RECURSE ${dir})
  file(MAKE_DIRECTORY ${dir})
endfunction()

# check_consumer(<program>): runs a built consumer and checks it printed what consumer.cpp prints.
function(check_consumer program)
  run("run the consumer" ${program})
  if(NOT run_output MATCHES "^hugezero ${version_regex}: node1/2MiB nr 512 ")
    message(FATAL_ERROR "consumer test ${STEP}: ${program} printed\n  ${run_output}"
                        "expected a line starting with\n  hugezero ${VERSION}: node1/2MiB nr 512")
  endif()
  message(STATUS "the consumer printed: ${run_output}")
endfunction()

# build_consumer(<project dir> <build dir> <cache args>...): configures, builds and checks it.
function(build_consumer project_dir build_dir)
  fresh_directory(${build_dir})
  run("configure the consumer project" ${CMAKE_COMMAND} -S ${project_dir} -B ${build_dir} ${toolchain}
      -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF -DCMAKE_FIND_USE_SYSTEM_PACKAGE_REGISTRY=OFF ${ARGN})
  run("build the consumer" ${CMAKE_COMMAND} --build ${build_dir})
  check_consumer(${build_dir}/consumer)
endfunction()

# pkg_config_consumer(<prefix> <output>): compiles consumer.cpp with the flags hugezero.pc gives
# when found under <prefix>, checking they point into <prefix>, and runs it.
function(pkg_config_consumer install_prefix output)
  set(ENV{PKG_CONFIG_PATH} ${install_prefix}/share/pkgconfig)
  run("get the version from pkg-config" ${PKG_CONFIG} --modversion hugezero)
  string(STRIP "${run_output}" modversion)
  if(NOT modversion STREQUAL VERSION)
    message(FATAL_ERROR "consumer test ${STEP}: pkg-config --modversion hugezero says '${modversion}', "
                        "the project version is '${VERSION}'")
  endif()
  run("get the flags from pkg-config" ${PKG_CONFIG} --cflags --libs hugezero)
  string(STRIP "${run_output}" flags)
  separate_arguments(flag_list UNIX_COMMAND "${flags}")
  set(include_dirs)
  foreach(flag IN LISTS flag_list)
    if(flag MATCHES "^-I(.+)")
      file(REAL_PATH "${CMAKE_MATCH_1}" dir)
      list(APPEND include_dirs ${dir})
    endif()
  endforeach()
  file(REAL_PATH "${install_prefix}/include" expected_dir)
  if(NOT include_dirs STREQUAL expected_dir)
    message(FATAL_ERROR "consumer test ${STEP}: pkg-config --cflags hugezero gave '${flags}', "
                        "expected the one include directory ${expected_dir}")
  endif()
  run("compile the consumer with the pkg-config flags"
      ${CXX_COMPILER} -std=c++20 ${flag_list} ${consumer_dir}/consumer.cpp -o ${output})
  check_consumer(${output})
endfunction()

if(STEP STREQUAL "install")
  fresh_directory(${hugezero_build})
  file(REMOVE_RECURSE ${prefix})
  run("configure hugezero" ${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${hugezero_build} ${toolchain}
      -DCMAKE_INSTALL_PREFIX=${prefix} -DHUGEZERO_BUILD_TESTS=OFF -DHUGEZERO_BUILD_EXAMPLES=OFF
      -DHUGEZERO_BUILD_TOOLS=OFF -DHUGEZERO_BUILD_BENCHMARKS=OFF -DHUGEZERO_BUILD_DOCS=OFF)
  run("build hugezero" ${CMAKE_COMMAND} --build ${hugezero_build})
  run("install hugezero" ${CMAKE_COMMAND} --install ${hugezero_build})
  foreach(file IN ITEMS include/hugezero/hugezero.hpp include/hugezero/version.hpp
                        share/cmake/hugezero/hugezeroConfig.cmake share/cmake/hugezero/hugezeroConfigVersion.cmake
                        share/cmake/hugezero/hugezeroTargets.cmake share/pkgconfig/hugezero.pc)
    if(NOT EXISTS ${prefix}/${file})
      message(FATAL_ERROR "consumer test ${STEP}: the install has no ${file} (prefix ${prefix})")
    endif()
  endforeach()
elseif(STEP STREQUAL "find_package")
  build_consumer(${consumer_dir}/find_package ${WORK_DIR}/find_package
    -DCMAKE_PREFIX_PATH=${prefix} -DHUGEZERO_EXPECTED_VERSION=${VERSION} -DHUGEZERO_EXPECTED_PREFIX=${prefix})
elseif(STEP STREQUAL "add_subdirectory")
  build_consumer(${consumer_dir}/add_subdirectory ${WORK_DIR}/add_subdirectory -DHUGEZERO_SOURCE_DIR=${SOURCE_DIR})
elseif(STEP STREQUAL "pkg_config")
  if(NOT PKG_CONFIG)
    # ctest reports the test as skipped (SKIP_REGULAR_EXPRESSION), not as passed.
    message("HUGEZERO_SKIP: pkg-config not found: install the Debian package pkg-config")
    return()
  endif()
  set(work ${WORK_DIR}/pkg_config)
  fresh_directory(${work})
  pkg_config_consumer(${prefix} ${work}/consumer)
  # Relocation: install again, move the whole prefix, and use it from where it now is.
  run("install hugezero into a second prefix" ${CMAKE_COMMAND} --install ${hugezero_build} --prefix ${work}/before-move)
  file(RENAME ${work}/before-move ${work}/after-move)
  pkg_config_consumer(${work}/after-move ${work}/consumer-moved)
else()
  message(FATAL_ERROR "consume.cmake: unknown STEP '${STEP}'")
endif()
