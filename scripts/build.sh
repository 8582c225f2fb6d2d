#!/usr/bin/env bash
# Configures and builds Switchyard into build/ (2 jobs; ccache when present).
# Extra arguments go to CMake, e.g. scripts/build.sh -DSY_CUDA=OFF.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR="${SY_BUILD_DIR:-build}"
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release "$@"
cmake --build "$BUILD_DIR" -j "${SY_BUILD_JOBS:-2}"
