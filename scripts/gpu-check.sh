#!/usr/bin/env bash
# The GPU check, for a machine with a GPU, nvcc, CMake, ninja (and PyTorch) but no apt and no
# network: unpacks the Debian packages that scripts/pack-gpu-deps.sh put in build-gpu-deps/debs
# into a prefix (never into /), builds with -DSY_CUDA=ON against it, runs the CUDA tests, then
# every core test (the op harness compares CUDA with the CPU), and times a bf16 matmul.
#   scripts/gpu-check.sh [--build-only]
# Environment: SY_GPU_DEPS_DIR (build-gpu-deps), SY_BUILD_DIR (build-gpu), SY_BUILD_JOBS (nproc).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEPS="$(realpath -m "${SY_GPU_DEPS_DIR:-$ROOT/build-gpu-deps}")"
PREFIX="$DEPS/prefix"
BUILD="$(realpath -m "${SY_BUILD_DIR:-$ROOT/build-gpu}")"
JOBS="${SY_BUILD_JOBS:-$(nproc)}"
BUILD_ONLY=0
[ "${1:-}" = "--build-only" ] && BUILD_ONLY=1

say() { echo "gpu-check: $*"; }
die() { echo "gpu-check: $*" >&2; exit 1; }

# ---- tools ----
export PATH="$PATH:/usr/local/cuda/bin"
for tool in nvcc cmake ninja; do
  command -v "$tool" > /dev/null || die "'$tool' not found on PATH"
done
compgen -G "$DEPS/debs/*.deb" > /dev/null ||
  die "no packages in $DEPS/debs: run scripts/pack-gpu-deps.sh where apt works and carry build-gpu-deps/debs"
# The packages are Debian 12's, linked against glibc 2.36.
glibc="$(getconf GNU_LIBC_VERSION | awk '{print $2}')"
if [ "$(printf '%s\n' 2.36 "$glibc" | sort -V | head -1)" != 2.36 ]; then
  say "warning: glibc $glibc is older than the packages' 2.36; their libraries may fail to load"
fi

# ---- unpack (dpkg -x, or ar + tar where dpkg is missing) ----
STAMP="$PREFIX/.unpacked"
if [ ! -f "$STAMP" ] || [ "$DEPS/debs/MANIFEST" -nt "$STAMP" ]; then
  say "unpacking $(ls "$DEPS"/debs/*.deb | wc -l) packages into $PREFIX"
  rm -rf "$PREFIX"
  mkdir -p "$PREFIX"
  for deb in "$DEPS"/debs/*.deb; do
    if command -v dpkg-deb > /dev/null; then
      dpkg -x "$deb" "$PREFIX"
    else
      member="$(ar t "$deb" | grep '^data\.tar')"
      case "$member" in
        *.xz) filter=-J ;; *.zst) filter=--zstd ;; *.gz) filter=-z ;; *) filter= ;;
      esac
      ar p "$deb" "$member" | tar -x $filter -f - -C "$PREFIX"
    fi
  done
  touch "$STAMP"
fi

ARCH="$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)"
LIB="$PREFIX/usr/lib/$ARCH"
# Debian points libmpi.so and libopenblas.so through /etc/alternatives, which dpkg -x does
# not create: name the real files instead.
OPENBLAS_DIR="$LIB/openblas-pthread"
MPI_DIR="$LIB/openmpi"
[ -f "$OPENBLAS_DIR/libopenblas.so.0" ] || die "OpenBLAS missing from $OPENBLAS_DIR"
[ -f "$MPI_DIR/include/mpi.h" ] || die "Open MPI headers missing from $MPI_DIR/include"
LIBRARY_DIRS="$LIB:$PREFIX/lib/$ARCH:$OPENBLAS_DIR:$MPI_DIR/lib"
export LD_LIBRARY_PATH="$LIBRARY_DIRS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export OPAL_PREFIX="$PREFIX/usr"  # Open MPI finds its plugins and help files under the prefix

# cuDNN and NCCL: the toolkit's, else the ones PyTorch's pip wheels bring.
cuda_library_args=()
nvcc_dir="$(dirname "$(readlink -f "$(command -v nvcc)")")"
for name in cudnn nccl; do
  if ! compgen -G "$nvcc_dir/../lib64/lib$name.so*" > /dev/null; then
    found="$(python3 - "$name" 2>/dev/null <<'PY' || true
import glob, importlib, os, sys
try:
    module = importlib.import_module("nvidia." + sys.argv[1])
    paths = [p for base in module.__path__ for p in glob.glob(os.path.join(base, "lib", "lib%s.so*" % sys.argv[1]))]
    print(sorted(paths)[0] if paths else "")
except Exception:
    print("")
PY
)"
    if [ -n "$found" ]; then
      upper="$(echo "$name" | tr a-z A-Z)"
      cuda_library_args+=("-D${upper}_LIBRARY=$found")
      export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$(dirname "$found")"
    fi
  fi
done

# ---- configure and build ----
say "configuring $BUILD against $PREFIX"
# An empty pkg-config path: Open MPI's .pc files name /usr, and the host's must not be used.
mkdir -p "$PREFIX/.no-pkgconfig"
PKG_CONFIG_LIBDIR="$PREFIX/.no-pkgconfig" PKG_CONFIG_PATH= cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSY_CUDA=ON \
  -DCMAKE_PREFIX_PATH="$PREFIX/usr" \
  -DCMAKE_BUILD_RPATH="${LIBRARY_DIRS//:/;}" \
  -DOPENBLAS_INCLUDE_DIR="$PREFIX/usr/include/$ARCH/openblas-pthread" \
  -DOPENBLAS_LIBRARY="$OPENBLAS_DIR/libopenblas.so" \
  -DMPI_SKIP_COMPILER_WRAPPER=ON -DMPI_CXX_HEADER_DIR="$MPI_DIR/include" \
  -DMPI_CXX_LIB_NAMES="mpi_cxx;mpi" -DMPI_mpi_LIBRARY="$MPI_DIR/lib/libmpi.so" \
  -DMPI_mpi_cxx_LIBRARY="$LIB/libmpi_cxx.so" \
  -DProtobuf_PROTOC_EXECUTABLE="$PREFIX/usr/bin/protoc" \
  "${cuda_library_args[@]}"
say "building the core tests ($JOBS jobs)"
cmake --build "$BUILD" -j "$JOBS" --target sy_core_tests
if [ "$BUILD_ONLY" = 1 ]; then
  say "built $BUILD/tests/sy_core_tests (--build-only: no tests run)"
  exit 0
fi

# ---- tests and timing ----
if command -v nvidia-smi > /dev/null; then nvidia-smi --query-gpu=name,memory.total --format=csv,noheader; fi
CORE_TESTS="$BUILD/tests/sy_core_tests"
say "CUDA tests"
"$CORE_TESTS" --gtest_filter='Cuda*:*Cuda*' --gtest_brief=1
say "every core test (CUDA cases of the op harness included)"
"$CORE_TESTS" --gtest_brief=1
say "bf16 matmul timing"
SY_CUDA_BENCH=1 "$CORE_TESTS" --gtest_filter='CudaOps.TimesA4096SquareBF16Matmul' | grep -E 'matmul|OK|FAILED'
say "building everything else"
cmake --build "$BUILD" -j "$JOBS"
say "done"
