#!/usr/bin/env bash
# Usage: failure_injection.sh TEST_BINARY MODE EXPECTED_TEXT
# Runs FailureInjection under mpirun -np 2 with rank 1 failing as MODE; passes when the job
# exits non-zero within 30 s and its output contains EXPECTED_TEXT (the rank and the reason).
set -u
binary=$1 mode=$2 expected=$3
start=$(date +%s)
output=$(SY_INJECT_FAILURE=$mode timeout 60 mpirun --oversubscribe -np 2 "$binary" \
  --gtest_filter=FailureInjection.* --gtest_catch_exceptions=0 2>&1)
status=$?
elapsed=$(( $(date +%s) - start ))
echo "$output" | tail -20
echo "mode=$mode exit=$status elapsed=${elapsed}s"
if [[ $status -eq 0 ]]; then echo "FAIL: the job exited 0"; exit 1; fi
if [[ $status -eq 124 ]]; then echo "FAIL: the job hung (killed by timeout 60)"; exit 1; fi
if (( elapsed > 30 )); then echo "FAIL: took ${elapsed}s, more than 30s"; exit 1; fi
if ! grep -qF -- "$expected" <<<"$output"; then echo "FAIL: no '$expected' in the output"; exit 1; fi
echo PASS
