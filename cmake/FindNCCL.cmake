# FindNCCL: locates NVIDIA's NCCL, header and library from one install.
#
# NCCL_HOME (CMake variable, else environment) is searched first and alone: a pip
# nvidia-nccl package works (<dir>/include/nccl.h, <dir>/lib/libnccl.so.2, no libnccl.so).
# NCCL_HOME set without an NCCL in it is a configure error, never a quiet fallback to
# another NCCL. Without NCCL_HOME the roots tried in order are the CUDA toolkit's
# (CUDAToolkit_LIBRARY_ROOT, set with the CUDA language, else the parent of
# CUDAToolkit_BIN_DIR), /usr/local/cuda, then the system paths; the first root that
# has both nccl.h and the library wins, so a header never pairs with another install's
# library.
#
# Defines NCCL_FOUND, NCCL_VERSION (from nccl.h), NCCL_INCLUDE_DIR, NCCL_LIBRARY, and the
# imported target NCCL::NCCL.

# libnccl.so.2 for pip's package, which ships no libnccl.so; NAMES_PER_DIR tries every
# name in a directory before the next directory.
set(_nccl_library_names NAMES nccl libnccl.so.2 NAMES_PER_DIR)
set(_nccl_library_suffixes PATH_SUFFIXES lib lib64 lib/x86_64-linux-gnu)

set(_nccl_home "${NCCL_HOME}")
if(_nccl_home STREQUAL "")
  set(_nccl_home "$ENV{NCCL_HOME}")
endif()

# A cached result belongs to the NCCL_HOME it was found for: a new NCCL_HOME searches again.
if(DEFINED _NCCL_SEARCHED_HOME AND NOT _NCCL_SEARCHED_HOME STREQUAL _nccl_home)
  unset(NCCL_INCLUDE_DIR CACHE)
  unset(NCCL_LIBRARY CACHE)
endif()
set(_NCCL_SEARCHED_HOME "${_nccl_home}" CACHE INTERNAL "NCCL_HOME of the cached NCCL_INCLUDE_DIR and NCCL_LIBRARY")

# _nccl_find_in(<root>): header and library from <root> only; both or neither.
macro(_nccl_find_in root)
  find_path(NCCL_INCLUDE_DIR nccl.h PATHS "${root}" PATH_SUFFIXES include NO_DEFAULT_PATH)
  find_library(NCCL_LIBRARY ${_nccl_library_names} PATHS "${root}" ${_nccl_library_suffixes} NO_DEFAULT_PATH)
  if(NOT NCCL_INCLUDE_DIR OR NOT NCCL_LIBRARY)
    set(_nccl_partial "nccl.h: ${NCCL_INCLUDE_DIR}, library: ${NCCL_LIBRARY}")
    unset(NCCL_INCLUDE_DIR CACHE)
    unset(NCCL_LIBRARY CACHE)
  endif()
endmacro()

if(NCCL_INCLUDE_DIR AND NCCL_LIBRARY)
  # Found before for this NCCL_HOME, or given by the user.
elseif(NOT _nccl_home STREQUAL "")
  _nccl_find_in("${_nccl_home}")
  if(NOT NCCL_LIBRARY)
    message(FATAL_ERROR
      "NCCL_HOME=${_nccl_home} holds no NCCL: it needs include/nccl.h and lib/libnccl.so.2 (or "
      "libnccl.so, in lib or lib64) (${_nccl_partial}). Point NCCL_HOME at an NCCL install "
      "(pip's: the directory of the nvidia.nccl package), or unset it to search the CUDA "
      "toolkit and the system.")
  endif()
else()
  set(_nccl_toolkit_root "")
  if(CUDAToolkit_BIN_DIR)
    get_filename_component(_nccl_toolkit_root "${CUDAToolkit_BIN_DIR}" DIRECTORY)
  endif()
  foreach(_nccl_root IN ITEMS "${CUDAToolkit_LIBRARY_ROOT}" "${_nccl_toolkit_root}" /usr/local/cuda)
    if(NOT _nccl_root STREQUAL "" AND NOT NCCL_LIBRARY)
      _nccl_find_in("${_nccl_root}")
    endif()
  endforeach()
  if(NOT NCCL_LIBRARY)
    find_path(NCCL_INCLUDE_DIR nccl.h)
    find_library(NCCL_LIBRARY ${_nccl_library_names})
  endif()
endif()

unset(NCCL_VERSION)
if(NCCL_INCLUDE_DIR AND EXISTS "${NCCL_INCLUDE_DIR}/nccl.h")
  file(STRINGS "${NCCL_INCLUDE_DIR}/nccl.h" _nccl_version_lines REGEX "^#define NCCL_(MAJOR|MINOR|PATCH) +[0-9]+")
  set(NCCL_VERSION "")
  foreach(_part MAJOR MINOR PATCH)
    if(_nccl_version_lines MATCHES "#define NCCL_${_part} +([0-9]+)")
      list(APPEND NCCL_VERSION "${CMAKE_MATCH_1}")
    endif()
  endforeach()
  string(REPLACE ";" "." NCCL_VERSION "${NCCL_VERSION}")
endif()

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(NCCL REQUIRED_VARS NCCL_LIBRARY NCCL_INCLUDE_DIR VERSION_VAR NCCL_VERSION)

if(NCCL_FOUND AND NOT TARGET NCCL::NCCL)
  add_library(NCCL::NCCL UNKNOWN IMPORTED)
  set_target_properties(NCCL::NCCL PROPERTIES
    IMPORTED_LOCATION "${NCCL_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${NCCL_INCLUDE_DIR}")
endif()
mark_as_advanced(NCCL_INCLUDE_DIR NCCL_LIBRARY)
