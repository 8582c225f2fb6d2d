#!/usr/bin/env bash
# Installs exactly the Debian packages Switchyard needs, skipping what is present.
# Idempotent: a second run installs nothing and touches no apt state.
set -euo pipefail

PACKAGES=(
  # build tools
  build-essential cmake ninja-build ccache pkg-config git
  # libraries
  libopenmpi-dev openmpi-bin
  libprotobuf-dev protobuf-compiler
  libyaml-cpp-dev libabsl-dev nlohmann-json3-dev
  libgtest-dev libgmock-dev
  libopenblas-dev libopenblas0-openmp libomp-dev
  libicu-dev
  # PyTorch reference tests and the peer in benchmarks (tuned: OpenBLAS + tcmalloc)
  python3-torch python3-numpy libtcmalloc-minimal4
  # the independent TensorBoard event-file reader in the tests
  python3-protobuf
  # scaling-law fits and plots of `switchyard sweep report` (scripts/sweep/fit.py)
  python3-scipy python3-matplotlib
)

missing=()
for package in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
