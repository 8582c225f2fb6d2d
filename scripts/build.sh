#!/usr/bin/env bash
# Configures and builds Switchyard into build/ (2 jobs; ccache when present).
# Extra arguments go to CMake, e.g. scripts/build.sh -DSY_CUDA=OFF; SY_BUILD_TARGETS limits
# what is built (e.g. "switchyard": the quickstart needs no tests).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR="${SY_BUILD_DIR:-build}"
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release "$@"
# shellcheck disable=SC2086 # a list of targets
cmake --build "$BUILD_DIR" -j "${SY_BUILD_JOBS:-2}" ${SY_BUILD_TARGETS:+--target $SY_BUILD_TARGETS}
