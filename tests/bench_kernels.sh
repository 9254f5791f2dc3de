#!/usr/bin/env bash
# bench_kernels.sh — kernel speed at GPT-2 124M shapes: matmul GFLOP/s
# (forward, backward) for the four layer shapes, the llm.c plain-loop matmul
# as baseline, causal attention forward/backward time, the cross-entropy
# forward over a 50257 vocabulary (one pass, three pieces); medians of REPS runs.
#
#   bash tests/bench_kernels.sh [cpu|cuda] [N=B*T] [T] [REPS]
#   defaults: cpu 1024 1024 5 (cuda: 8192 1024 20)
set -euo pipefail
cd "$(dirname "$0")/.."
BACKEND=${1:-cpu}
if [ "$BACKEND" = cuda ]; then N=${2:-8192}; T=${3:-1024}; REPS=${4:-20}; else N=${2:-1024}; T=${3:-1024}; REPS=${4:-5}; fi
# the kernels alone (not the whole executor archive): kernels/cpu/*.c, and the
# CUDA object when the toolkit is present
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
CUDA_OBJ=()
if [ -x "$CUDA_HOME/bin/nvcc" ] && make -s build/kernels/cuda/kern_cuda.o >/dev/null; then
  CUDA_OBJ=(build/kernels/cuda/kern_cuda.o)
  CUDA_FLAGS=(-DTRIAD_HAVE_CUDA=1 -I"$CUDA_HOME/include")
  CUDA_LIBS=(-L"$CUDA_HOME/lib64" -Wl,-rpath,"$CUDA_HOME/lib64" -lcudart -lcublas -lcublasLt -lstdc++)
else
  CUDA_FLAGS=(-DTRIAD_HAVE_CUDA=0); CUDA_LIBS=()
fi
mkdir -p build/tests
cc -std=c11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -fopenmp "${CUDA_FLAGS[@]}" -o build/tests/bench_kernels \
  tests/bench_kernels.c kernels/cpu/*.c "${CUDA_OBJ[@]}" -lopenblas "${CUDA_LIBS[@]}" -lm
echo "== kernels ($(nproc) cores) =="
build/tests/bench_kernels "$BACKEND" "$N" "$T" "$REPS"
