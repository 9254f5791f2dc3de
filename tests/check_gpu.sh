#!/usr/bin/env bash
# check_gpu.sh — every GPU check of triad, on a machine with a CUDA device.
#
#   make check-gpu LOG=dir           (or: bash tests/check_gpu.sh dir)
#   bash tests/check_gpu.sh --build-only     build the GPU test programs only
#
# Each section writes its own log under LOG (default build/gpu-logs) and adds
# one line to LOG/summary.txt; the script exits non-zero when any section
# fails. The kernel test is built from kernels/cpu/*.c and the nvcc object
# of kernels/cuda/*.cu, so it needs nvcc; with no nvcc on the GPU machine a
# prebuilt build/tests/gpu/test_kern_cuda newer than its sources is used.
set -uo pipefail
cd "$(dirname "$0")/.."

BUILD_ONLY=0
if [ "${1:-}" = "--build-only" ]; then BUILD_ONLY=1; shift; fi
LOG=${1:-build/gpu-logs}
[ -n "$LOG" ] || LOG=build/gpu-logs
mkdir -p "$LOG"
SUMMARY=$LOG/summary.txt
: >"$SUMMARY"
FAILED=0

# runtime libraries carried as .debs (tests/gpu/fetch_debs.sh) when the GPU
# machine has no package registry
if [ -d .debs ] && ls .debs/*.deb >/dev/null 2>&1; then
  if [ ! -d .debs/root ]; then for f in .debs/*.deb; do dpkg -x "$f" .debs/root; done; fi
  export LD_LIBRARY_PATH=$PWD/.debs/root/usr/lib/x86_64-linux-gnu:$PWD/.debs/root/usr/lib/x86_64-linux-gnu/openmpi/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  export PATH=$PWD/.debs/root/usr/bin:$PATH OPAL_PREFIX=$PWD/.debs/root/usr
fi

CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
export LD_LIBRARY_PATH=$CUDA_HOME/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

section() { echo; echo "==== $1 ===="; }
# record NAME STATUS: one summary line, FAILED set on a non-zero status
record() {
  local st=$([ "$2" = 0 ] && echo PASS || echo "FAIL (exit $2)")
  printf '%-28s %s\n' "$1" "$st" | tee -a "$SUMMARY"
  [ "$2" = 0 ] || FAILED=1
}

# ---- section: build ----------------------------------------------------------
section "build (GPU test programs)"
build_gpu_tests() {
  # the kernels alone: kernels/cpu/*.c + the nvcc object of kernels/cuda
  [ -x "$CUDA_HOME/bin/nvcc" ] || { echo "check_gpu: no nvcc at $CUDA_HOME/bin" >&2; return 1; }
  make -s build/kernels/cuda/kern_cuda.o || return 1
  mkdir -p build/tests/gpu
  cc -std=c11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -Werror -fopenmp -DTRIAD_HAVE_CUDA=1 -I"$CUDA_HOME/include" \
    -o build/tests/gpu/test_kern_cuda tests/gpu/test_kern_cuda.c kernels/cpu/*.c build/kernels/cuda/kern_cuda.o \
    -lopenblas -L"$CUDA_HOME/lib64" -Wl,-rpath,"$CUDA_HOME/lib64" -lcudart -lcublas -lcublasLt -lstdc++ -lm \
    || return 1
}
if [ -x build/tests/gpu/test_kern_cuda ] && [ build/tests/gpu/test_kern_cuda -nt tests/gpu/test_kern_cuda.c ] \
    && ! command -v nvcc >/dev/null \
   && [ ! -x "$CUDA_HOME/bin/nvcc" ]; then
  echo "check_gpu: no nvcc here; using the prebuilt build/tests/gpu/test_kern_cuda"
  record build 0
else
  build_gpu_tests >"$LOG/build.log" 2>&1
  st=$?; cat "$LOG/build.log"; record build $st
fi
if [ $BUILD_ONLY = 1 ]; then exit $FAILED; fi

# ---- section: kernels (CUDA kern_ops vs the CPU backend) -------------------------
section "kernels: CUDA ops vs CPU"
if [ -x build/tests/gpu/test_kern_cuda ]; then
  nvidia-smi -L >"$LOG/kernels.log" 2>&1 || true
  build/tests/gpu/test_kern_cuda >>"$LOG/kernels.log" 2>&1
  st=$?; cat "$LOG/kernels.log"; record kernels $st
else
  echo "check_gpu: build/tests/gpu/test_kern_cuda missing" | tee "$LOG/kernels.log"; record kernels 1
fi

# ---- section: comm (device buffers through the comm layer) -----------------------
# (added by the comm layer's owner)

# ---- section: training (GPU runs of triad train) ---------------------------------
# (added with the CUDA trainer)

section "summary"
cat "$SUMMARY"
exit $FAILED
