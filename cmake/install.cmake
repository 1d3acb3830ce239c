# Installs the headers, a relocatable CMake package (hugezero::hugezero) and hugezero.pc.
include(CMakePackageConfigHelpers)

install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/hugezero DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS hugezero EXPORT hugezeroTargets)

# Header-only and architecture independent: config and .pc go under the data directory.
set(hugezero_cmake_dir ${CMAKE_INSTALL_DATADIR}/cmake/hugezero)
install(EXPORT hugezeroTargets NAMESPACE hugezero:: DESTINATION ${hugezero_cmake_dir})
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/hugezeroConfig.cmake.in
  ${PROJECT_BINARY_DIR}/hugezeroConfig.cmake INSTALL_DESTINATION ${hugezero_cmake_dir})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/hugezeroConfigVersion.cmake
  COMPATIBILITY SameMajorVersion ARCH_INDEPENDENT)
install(FILES ${PROJECT_BINARY_DIR}/hugezeroConfig.cmake ${PROJECT_BINARY_DIR}/hugezeroConfigVersion.cmake
  DESTINATION ${hugezero_cmake_dir})

# The .pc computes its prefix from its own location, so the install can be moved.
file(RELATIVE_PATH hugezero_pc_to_prefix
  ${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_DATADIR}/pkgconfig ${CMAKE_INSTALL_PREFIX})
string(REGEX REPLACE "/$" "" hugezero_pc_to_prefix "${hugezero_pc_to_prefix}")
configure_file(${PROJECT_SOURCE_DIR}/hugezero.pc.in ${PROJECT_BINARY_DIR}/hugezero.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/hugezero.pc DESTINATION ${CMAKE_INSTALL_DATADIR}/pkgconfig)
