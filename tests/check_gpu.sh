#!/usr/bin/env bash
# check_gpu.sh — every GPU check of triad, on a machine with a CUDA device.
#
#   make check-gpu LOG=dir           (or: bash tests/check_gpu.sh dir)
#   bash tests/check_gpu.sh --build-only     build the GPU test programs only
#
# Each section writes its own log under LOG (default build/gpu-logs) and adds
# one line to LOG/summary.txt; the script exits non-zero when any section
# fails. The kernel test is built from kernels/cpu/*.c and kernels/cuda/*.cu
# directly (nvcc + cc + OpenBLAS headers); where that cannot build, a
# build/tests/gpu/test_kern_cuda newer than all its sources (built with
# --build-only on another machine and copied over) is used instead.
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
KERN_SRC=(tests/gpu/test_kern_cuda.c kernels/kernels.h kernels/cpu/*.c kernels/cuda/*.cu)
build_gpu_tests() {
  # the kernels alone (kernels/cpu/*.c + kernels/cuda/*.cu), not through make,
  # so a GPU machine without the planner's packages can build it
  [ -x "$CUDA_HOME/bin/nvcc" ] || { echo "check_gpu: no nvcc at $CUDA_HOME/bin" >&2; return 1; }
  mkdir -p build/tests/gpu
  local objs=() f o
  for f in kernels/cuda/*.cu; do
    o=build/tests/gpu/$(basename "$f" .cu).o
    "$CUDA_HOME/bin/nvcc" -O3 -std=c++17 -gencode=arch=compute_90,code=sm_90 -lineinfo -c "$f" -o "$o" || return 1
    objs+=("$o")
  done
  cc -std=c11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -Werror -fopenmp -DTRIAD_HAVE_CUDA=1 -I"$CUDA_HOME/include" \
    -o build/tests/gpu/test_kern_cuda.new tests/gpu/test_kern_cuda.c kernels/cpu/*.c "${objs[@]}" \
    -lopenblas -L"$CUDA_HOME/lib64" -Wl,-rpath,"$CUDA_HOME/lib64" -lcudart -lcublas -lcublasLt -lstdc++ -lm \
    || return 1
  mv build/tests/gpu/test_kern_cuda.new build/tests/gpu/test_kern_cuda
}
# a binary built elsewhere from these very sources (no file newer than it)
prebuilt_fresh() {
  [ -x build/tests/gpu/test_kern_cuda ] || return 1
  local f; for f in "${KERN_SRC[@]}"; do [ "$f" -nt build/tests/gpu/test_kern_cuda ] && return 1; done; return 0
}
build_gpu_tests >"$LOG/build.log" 2>&1
st=$?
if [ $st != 0 ] && [ $BUILD_ONLY = 0 ] && prebuilt_fresh; then
  echo "check_gpu: build failed here (log above); using build/tests/gpu/test_kern_cuda, newer than its sources" \
    >>"$LOG/build.log"
  st=0
fi
cat "$LOG/build.log"; record build $st
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
