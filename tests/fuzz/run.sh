#!/usr/bin/env bash
# Build the parser fuzzer (libFuzzer + ASan + UBSan) and run it for N
# executions (default 1,000,000) from the committed seeds. Crashes are
# written as crash-* files; each becomes a regression case in the unit tests.
set -eu
cd "$(dirname "$0")/../.."
N=${1:-1000000}
command -v clang >/dev/null && dpkg -s libclang-rt-14-dev >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq clang libclang-rt-14-dev >/dev/null; }
mkdir -p build/fuzz build/fuzz/corpus
clang -g -O1 -std=c11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -I/usr/include -o build/fuzz/fuzz_parsers tests/fuzz/fuzz_parsers.c common/spec.c common/planfile.c \
  costmodel/profile.c executor/data.c -linih -lcsv -lm
cp tests/fuzz/seeds/* build/fuzz/corpus/
build/fuzz/fuzz_parsers -runs="$N" -max_len=4096 -print_final_stats=1 build/fuzz/corpus 2>&1 | tail -12
