#!/usr/bin/env bash
# The main job: installs dependencies, builds, and runs switchyard on the bundled default.
# (Until the Training issue lands, it prints the command-line help.)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
./build/switchyard version
./build/switchyard --help
