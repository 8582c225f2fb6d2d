#!/usr/bin/env bash
# Downloads the Debian 12 packages that scripts/gpu-check.sh needs on a GPU machine without apt or
# network, into build-gpu-deps/debs (ignored by git; carry it with the tree). Run it here, where
# apt works. The list is the build dependencies plus their shared-library closure, except glibc
# (the GPU machine's own is used; gpu-check.sh checks it is new enough).
set -euo pipefail
cd "$(dirname "$0")/.."
DEST="${SY_GPU_DEPS_DIR:-build-gpu-deps}/debs"

PACKAGES=(
  # headers, CMake configs and link-time .so names
  libabsl-dev libyaml-cpp-dev libprotobuf-dev protobuf-compiler libgtest-dev libgmock-dev
  libopenblas-dev libopenblas-pthread-dev libopenmpi-dev nlohmann-json3-dev libicu-dev
  # the shared libraries they name
  libabsl20220623 libyaml-cpp0.7 libprotobuf32 libprotobuf-lite32 libprotoc32 libicu72
  libopenblas0-pthread libgfortran5 libquadmath0 libopenmpi3
  # what libopenmpi3 and libprotoc32 load (from ldd over their files)
  libhwloc15 libevent-core-2.1-7 libevent-pthreads-2.1-7 libpmix2 libmunge2 libfabric1 libucx0
  libibverbs1 ibverbs-providers librdmacm1 libnl-3-200 libnl-route-3-200 libnuma1 libpsm2-2
  libpsm-infinipath1 libudev1 libuuid1 libatomic1 zlib1g
  # newer than many hosts' copies and backward compatible, so safe first on the library path
  libstdc++6 libgcc-s1
)

mkdir -p "$DEST"
cd "$DEST"
missing=()
for package in "${PACKAGES[@]}"; do
  if ! compgen -G "${package}_*.deb" > /dev/null; then missing+=("$package"); fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "pack-gpu-deps: downloading ${#missing[@]} packages"
  apt-get download -q "${missing[@]}"
fi
ls -1 ./*.deb | sed 's|^\./||' > MANIFEST
echo "pack-gpu-deps: $(wc -l < MANIFEST) packages, $(du -sh . | cut -f1) in $PWD"
