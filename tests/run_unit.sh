#!/usr/bin/env bash
# Runs the cmocka unit binaries given as arguments; "N passed, N failed".
set -u
pass=0; fail=0
for bin in "$@"; do "$bin" && pass=$((pass+1)) || { fail=$((fail+1)); echo "FAILED: $bin"; }; done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
