#!/usr/bin/env bash
# Build the libFuzzer harnesses (ASan + UBSan) and run each for N executions
# (default 1,000,000) from the committed seeds:
#   fuzz_spec      model / cluster / layout spec parsers     seeds/spec/
#   fuzz_planfile  plan files (planfile_read, write + read)   seeds/planfile/
#   fuzz_parsers   every user-facing parser, first byte picks seeds/*
#   fuzz_ckpt      checkpoint MANIFEST parser alone          seeds/ckpt/
# Usage: tests/fuzz/run.sh [N] [harness...]. A crash leaves a crash-* file in
# build/fuzz/ and the script fails; each crash becomes a regression case in
# the unit tests.
set -eu
cd "$(dirname "$0")/../.."
N=${1:-1000000}
shift || true
WHICH=${*:-fuzz_spec fuzz_planfile fuzz_parsers fuzz_ckpt}
command -v clang >/dev/null && dpkg -s libclang-rt-14-dev >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq clang libclang-rt-14-dev >/dev/null; }
CC="clang -g -O1 -std=c11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined"
mkdir -p build/fuzz
status=0
for h in $WHICH; do
  case $h in
    fuzz_spec)     srcs="common/spec.c"; seeds=tests/fuzz/seeds/spec ;;
    fuzz_planfile) srcs="common/spec.c common/planfile.c"; seeds=tests/fuzz/seeds/planfile ;;
    fuzz_parsers)  srcs="common/spec.c common/planfile.c costmodel/profile.c executor/data.c executor/ckpt_manifest.c"; seeds=tests/fuzz/seeds ;;
    fuzz_ckpt)     srcs="executor/ckpt_manifest.c"; seeds=tests/fuzz/seeds/ckpt ;;
    *) echo "run.sh: unknown harness '$h'" >&2; exit 2 ;;
  esac
  $CC -o build/fuzz/$h tests/fuzz/$h.c $srcs -linih -lcsv -lm
  rm -rf build/fuzz/corpus_$h; mkdir -p build/fuzz/corpus_$h
  find "$seeds" -maxdepth 1 -type f -exec cp {} build/fuzz/corpus_$h/ \;
  echo "== $h: $N runs"
  start=$(date +%s)
  if (cd build/fuzz && ./$h -runs="$N" -max_len=4096 -print_final_stats=1 corpus_$h) >build/fuzz/$h.log 2>&1; then
    echo "$h: ok, $(grep -E '^Done' build/fuzz/$h.log), $(grep number_of_executed_units build/fuzz/$h.log | awk '{print $2}') executions, $(grep new_units_added build/fuzz/$h.log | awk '{print $2}') new units, $(( $(date +%s) - start )) s"
  else
    echo "$h: FAILED (see build/fuzz/$h.log)"; grep -E 'ERROR|SUMMARY|crash-' build/fuzz/$h.log | head -5; status=1
  fi
done
exit $status
