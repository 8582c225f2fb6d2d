# Finds every dependency; a missing one stops configuration with one line naming the
# Debian package to install (scripts/install-deps.sh installs them all).

function(sy_require found package)
  if(NOT ${found})
    message(FATAL_ERROR "Switchyard: missing dependency, install the Debian package '${package}' (or run scripts/install-deps.sh)")
  endif()
endfunction()

find_package(Threads REQUIRED)

find_package(MPI QUIET COMPONENTS CXX)
sy_require(MPI_CXX_FOUND "libopenmpi-dev")

find_package(Protobuf QUIET)
sy_require(Protobuf_FOUND "libprotobuf-dev protobuf-compiler")

find_package(yaml-cpp QUIET)
sy_require(yaml-cpp_FOUND "libyaml-cpp-dev")

find_package(absl QUIET)
sy_require(absl_FOUND "libabsl-dev")

find_package(GTest QUIET)
sy_require(GTest_FOUND "libgtest-dev libgmock-dev")

find_package(nlohmann_json QUIET)
sy_require(nlohmann_json_FOUND "nlohmann-json3-dev")

# ICU: Unicode character classes for the tokenizer's pre-tokenizer.
find_package(ICU QUIET COMPONENTS uc)
sy_require(ICU_FOUND "libicu-dev")

find_package(OpenMP QUIET COMPONENTS CXX)
sy_require(OpenMP_CXX_FOUND "libomp-dev")

# OpenBLAS: the cblas interface from Debian's libopenblas-dev, run by its OpenMP build when
# libopenblas0-openmp is installed. Debian's default libopenblas.so.0 is the pthread build,
# whose own thread pool competes with our OpenMP threads: a quickstart training step took
# 2.4x as long with it on two cores (`switchyard bench train-step`).
option(SY_OPENBLAS_OPENMP "run OpenBLAS's OpenMP build when it is installed" ON)
find_path(OPENBLAS_INCLUDE_DIR cblas.h PATH_SUFFIXES openblas openblas-openmp openblas-pthread)
find_library(OPENBLAS_LIBRARY NAMES openblas)
if(OPENBLAS_INCLUDE_DIR AND OPENBLAS_LIBRARY)
  set(OPENBLAS_FOUND TRUE)
endif()
sy_require(OPENBLAS_FOUND "libopenblas-dev")
add_library(OpenBLAS::OpenBLAS INTERFACE IMPORTED)
set_target_properties(OpenBLAS::OpenBLAS PROPERTIES
  INTERFACE_INCLUDE_DIRECTORIES "${OPENBLAS_INCLUDE_DIR}"
  INTERFACE_LINK_LIBRARIES "${OPENBLAS_LIBRARY}")
if(SY_OPENBLAS_OPENMP)
  find_file(OPENBLAS_OPENMP_LIBRARY libopenblas.so.0
    PATHS "/usr/lib/${CMAKE_LIBRARY_ARCHITECTURE}/openblas-openmp" NO_DEFAULT_PATH)
  if(OPENBLAS_OPENMP_LIBRARY)
    # Same soname as the default build: the run path makes the loader pick this one.
    get_filename_component(OPENBLAS_OPENMP_DIR "${OPENBLAS_OPENMP_LIBRARY}" DIRECTORY)
    set_target_properties(OpenBLAS::OpenBLAS PROPERTIES
      INTERFACE_LINK_LIBRARIES "${OPENBLAS_OPENMP_LIBRARY}"
      INTERFACE_LINK_OPTIONS "LINKER:-rpath,${OPENBLAS_OPENMP_DIR}")
  endif()
endif()

# CUDA: the toolkit under /usr/local/cuda (nvcc, cuBLAS/cuBLASLt, cuDNN, NCCL).
set(SY_WITH_CUDA OFF)
set(SY_CUDA_LIBRARIES "")
if(NOT SY_CUDA STREQUAL "OFF")
  if(NOT CMAKE_CUDA_COMPILER AND EXISTS /usr/local/cuda/bin/nvcc)
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
  endif()
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    set(SY_WITH_CUDA ON)
  elseif(SY_CUDA STREQUAL "ON")
    message(FATAL_ERROR "Switchyard: SY_CUDA=ON but nvcc was not found, install the CUDA Toolkit under /usr/local/cuda")
  endif()
endif()
if(SY_WITH_CUDA)
  enable_language(CUDA)
  # CMake 3.25 knows nvcc's flag for C++17 but not the one for C++20 (nvcc 12+ has it).
  if(NOT DEFINED CMAKE_CUDA20_STANDARD_COMPILE_OPTION)
    set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
    set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
  endif()
  set(CMAKE_CUDA_STANDARD 20)
  find_package(CUDAToolkit REQUIRED)
  find_library(CUDNN_LIBRARY cudnn HINTS ${CUDAToolkit_LIBRARY_DIR})
  sy_require(CUDNN_LIBRARY "cudnn (in the CUDA toolkit under /usr/local/cuda)")
  find_library(NCCL_LIBRARY nccl HINTS ${CUDAToolkit_LIBRARY_DIR})
  sy_require(NCCL_LIBRARY "libnccl-dev (or NCCL in the CUDA toolkit)")
  set(SY_CUDA_LIBRARIES CUDA::cudart CUDA::cublas CUDA::cublasLt ${CUDNN_LIBRARY} ${NCCL_LIBRARY})
  message(STATUS "Switchyard: building the CUDA backend (sm_80, sm_90)")
else()
  message(STATUS "Switchyard: CUDA backend not built")
endif()
