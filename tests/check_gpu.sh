#!/usr/bin/env bash
# check_gpu.sh — every GPU check of triad, on a machine with a CUDA device.
#
#   make check-gpu LOG=dir           (or: bash tests/check_gpu.sh dir)
#   bash tests/check_gpu.sh --build-only     build the GPU test programs only
#   SECTIONS="kernels comm" bash tests/check_gpu.sh dir    some sections only
#   BUDGET_S=480 bash tests/check_gpu.sh dir     everything that fits in 480 s
#
# Sections (all by default, in this order): build kernels comm training bench
# loop. Each section writes its own log under LOG (default build/gpu-logs)
# and adds one line to LOG/summary.txt; the script exits non-zero when any
# section fails or was skipped. With BUDGET_S every section runs under a
# deadline: one that would start with less time left than it needs (NEED_S
# below, an estimate) is skipped and says so, one still running at the
# deadline is killed and fails, so a short lease of a GPU machine comes back
# with every log written instead of nothing.
# The kernel test is built from kernels/cpu/*.c and kernels/cuda/*.cu
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
SECTIONS=${SECTIONS:-build kernels comm training bench loop}
want() { [[ " $SECTIONS " == *" $1 "* ]]; }
TR=${TRIAD:-build/triad}

# runtime libraries carried as .debs (tests/gpu/fetch_debs.sh) when the GPU
# machine has no package registry
# (not with --build-only: the development machine has its own, and the
# unpacked tree would push what travels to the GPU machine over its limit)
if [ $BUILD_ONLY = 0 ] && [ -d .debs ] && ls .debs/*.deb >/dev/null 2>&1; then
  if [ ! -d .debs/root ]; then for f in .debs/*.deb; do dpkg -x "$f" .debs/root; done; fi
  export LD_LIBRARY_PATH=$PWD/.debs/root/usr/lib/x86_64-linux-gnu:$PWD/.debs/root/usr/lib/x86_64-linux-gnu/openmpi/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  export PATH=$PWD/.debs/root/usr/bin:$PATH OPAL_PREFIX=$PWD/.debs/root/usr
fi

CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export LD_LIBRARY_PATH=$CUDA_HOME/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

section() { echo; echo "==== $1 ===="; }
T0=$(date +%s)
BUDGET_S=${BUDGET_S:-0}
# seconds left before the deadline (a day when there is no budget)
left() { if [ "$BUDGET_S" -gt 0 ]; then echo $((T0 + BUDGET_S - $(date +%s))); else echo 86400; fi; }
# the seconds a section needs at least on one GPU: estimates (no full run has
# been timed yet), generous, so that a section never starts to be killed
declare -A NEED_S=([build]=150 [kernels]=20 [comm]=25 [training]=100 [bench]=200 [loop]=150)
# runs NAME FUNCTION: the section's function in its own shell under the
# deadline, output to LOG/NAME.log (and here), one summary line
run_section() {
  local name=$1 fn=$2 l; l=$(left)
  if [ "$l" -lt "${NEED_S[$name]}" ]; then
    echo "skipped: ${l} s left of BUDGET_S=$BUDGET_S, the section needs ~${NEED_S[$name]} s" | tee "$LOG/$name.log"
    printf '%-28s %s\n' "$name" "SKIPPED (time)" | tee -a "$SUMMARY"; FAILED=1; return
  fi
  local t=$(date +%s)
  timeout -k 10 "$l" bash -c "$fn" >"$LOG/$name.log" 2>&1
  local st=$?
  [ $st = 124 ] || [ $st = 137 ] && echo "killed at the deadline (BUDGET_S=$BUDGET_S)" >>"$LOG/$name.log"
  echo "($(( $(date +%s) - t )) s)" >>"$LOG/$name.log"
  cat "$LOG/$name.log"; record "$name" $st
}
export LOG TR SUMMARY CUDA_HOME
# record NAME STATUS: one summary line, FAILED set on a non-zero status
record() {
  local st=$([ "$2" = 0 ] && echo PASS || echo "FAIL (exit $2)")
  printf '%-28s %s\n' "$1" "$st" | tee -a "$SUMMARY"
  [ "$2" = 0 ] || FAILED=1
}

# ---- section: build ----------------------------------------------------------
KERN_SRC=(tests/gpu/test_kern_cuda.c kernels/kernels.h kernels/cpu/*.c kernels/cuda/*.cu kernels/cuda/*.cuh)
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
  local f; for f in ${KERN_SRC_LIST:-${KERN_SRC[*]}}; do [ "$f" -nt build/tests/gpu/test_kern_cuda ] && return 1; done; return 0
}
# build: a kernel test built on the development machine from these very
# sources (--build-only) is used as it is, nvcc on the GPU machine costs
# minutes of its lease; otherwise it is built here
build_section() {
  if prebuilt_fresh; then echo "check_gpu: build/tests/gpu/test_kern_cuda is newer than all its sources: used as built"; return 0; fi
  build_gpu_tests
}
if [ $BUILD_ONLY = 1 ]; then
  section "build (GPU test programs)"
  build_gpu_tests >"$LOG/build.log" 2>&1; st=$?; cat "$LOG/build.log"; record build $st
elif want build || want kernels; then
  section "build (GPU test programs)"
  export -f build_section build_gpu_tests prebuilt_fresh; export KERN_SRC_LIST="${KERN_SRC[*]}"
  run_section build build_section
fi

# the comm layer's device test needs mpicc and the triad libraries: built
# where they are (the development machine, --build-only) and carried over
# with build/
if [ $BUILD_ONLY = 1 ]; then
  if command -v mpicc >/dev/null && [ -f build/libtriad_exec.a ]; then
    mkdir -p build/tests/mpi
    mpicc -std=c11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -Werror -fopenmp -DTRIAD_HAVE_CUDA=1 -I"$CUDA_HOME/include" \
      -o build/tests/mpi/test_comm_device tests/mpi/test_comm_device.c build/libtriad_exec.a build/libtriad_plan.a \
      -lopenblas -L"$CUDA_HOME/lib64" -Wl,-rpath,"$CUDA_HOME/lib64" -lcudart -lcublas -lcublasLt -lnccl -lstdc++ \
      -lglpk -linih -lcsv -lm >"$LOG/build_comm.log" 2>&1
    st=$?; cat "$LOG/build_comm.log"; record "build (comm device test)" $st
  fi
  exit $FAILED
fi

# ---- section: kernels (CUDA kern_ops vs the CPU backend) -------------------------
kernels_section() {
  [ -x build/tests/gpu/test_kern_cuda ] || { echo "check_gpu: build/tests/gpu/test_kern_cuda missing"; return 1; }
  nvidia-smi -L || true
  build/tests/gpu/test_kern_cuda
}
if want kernels; then
  section "kernels: CUDA ops vs CPU"
  export -f kernels_section; run_section kernels kernels_section
fi

# ---- section: comm (device buffers through the comm layer) -----------------------
# every collective and p2p call on cudaMalloc'd buffers, exact inputs:
# MPI staging through the host with 2 and 4 ranks on the one GPU, and NCCL
# at world size 1 (NCCL refuses two ranks on one GPU)
comm_section() {
  local CB=build/tests/mpi/test_comm_device st=0
  [ -x $CB ] || { echo "check_gpu: $CB missing (tests/check_gpu.sh --build-only on the development machine)"; return 1; }
  for np in 2 4; do mpirun --oversubscribe -np $np $CB || { echo "FAIL MPI staging at -np $np"; st=1; }; done
  mpirun -np 1 $CB --nccl || { echo "FAIL NCCL at world size 1"; st=1; }
  return $st
}
if want comm; then
  section "comm: device buffers (MPI staging, NCCL)"
  export -f comm_section; run_section comm comm_section
fi

# ---- section: training (GPU runs of triad train) ---------------------------------
# `triad train --device cuda` (built here by make, carried as build/triad):
#  1. one rank on the GPU against the CPU backend, 20 steps of `tiny`: loss
#     within 1e-4 relative at every step (cuBLAS and OpenBLAS round apart);
#  2. parallel layouts, every rank on the one GPU, collectives staged
#     through the host by the MPI comm (NCCL refuses two ranks on one GPU):
#     dp2*tp2 ZeRO-1 sp, tp2*pp2 1F1B, dp2*pp2 GPipe, pp2 interleaved v2
#     against the single GPU rank, loss within 1e-4 at every step;
#  3. measured device memory against triad's prediction (within 2%);
#  4. bf16 storage (bf16 activations and GEMM operands, fp32 accumulation,
#     fp32 master weights, gradients and state): one GPU rank and dp2*pp2
#     ZeRO-3 against the CPU's bf16 reference (--device emu) within 2e-4
#     at every step, memory as predicted; tiny to the Markov source's
#     entropy rate + 0.05;
#  5. with two GPUs or more: dp2, pp2 1F1B and pp2 interleaved on NCCL against
#     the single GPU rank, and pp2 1F1B with 16 MB activations on NCCL against
#     the MPI comm (no hang: the grouped exchange).
train_check() {
  [ -x "$TR" ] || { echo "check_gpu: $TR missing (make it here, carry build/)"; return 1; }
  local D="--model tiny --global-batch 8 --data markov:vocab=64,order=1,seed=7 --steps 20 --lr 3e-4 --warmup 5 --quiet"
  local t=$LOG/train; mkdir -p "$t"; local st=0
  $TR train $D --layout mbs=2,precision=fp32 --device cpu --metrics "$t/cpu.csv" || return 1
  $TR train $D --layout mbs=2,precision=fp32 --device cuda --metrics "$t/gpu.csv" || return 1
  python3 tests/gpu/loss_match.py "$t/cpu.csv" "$t/gpu.csv" 1e-4 "one GPU rank vs CPU" || st=1
  # fused attention in fp32 (the exact row kernels) against the CPU's
  $TR train $D --layout mbs=2,precision=fp32,attn=flash --device cpu --metrics "$t/cpu_flash.csv" || return 1
  $TR train $D --layout mbs=2,precision=fp32,attn=flash --device cuda --metrics "$t/gpu_flash.csv" || return 1
  python3 tests/gpu/loss_match.py "$t/cpu_flash.csv" "$t/gpu_flash.csv" 1e-4 "attn=flash, one GPU rank vs CPU" || st=1
  $TR train $D --layout mbs=1,precision=fp32 --device cuda --metrics "$t/gpu1.csv" || return 1
  for spec in "4 dp=2,tp=2,zero=1,sp=1" "4 tp=2,pp=2,schedule=1f1b" "4 dp=2,pp=2,schedule=gpipe" \
              "2 pp=2,schedule=interleaved,v=2" "4 dp=2,pp=2,zero=2,schedule=1f1b" "4 dp=2,pp=2,zero=3,schedule=1f1b"; do
    set -- $spec
    mpirun --oversubscribe -np $1 $TR train $D --layout "$2,mbs=1,precision=fp32" --device cuda \
      --metrics "$t/$2.csv" || { echo "FAIL $2 on the GPU"; st=1; continue; }
    python3 tests/gpu/loss_match.py "$t/gpu1.csv" "$t/$2.csv" 1e-4 "$2 (MPI comm, one GPU) vs one GPU rank" --mem || st=1
  done
  # bf16 storage against the CPU kernels' bf16 reference (the emulated
  # device: the same bf16 operands widened, each output rounded once)
  for attn in explicit flash; do
    $TR train $D --layout mbs=2,attn=$attn --device emu --metrics "$t/ref_bf16_$attn.csv" || return 1
    $TR train $D --layout mbs=2,attn=$attn --device cuda --metrics "$t/gpu_bf16_$attn.csv" || return 1
    python3 tests/gpu/loss_match.py "$t/ref_bf16_$attn.csv" "$t/gpu_bf16_$attn.csv" 2e-4 \
      "bf16 storage, attn=$attn, one GPU rank vs the CPU's bf16 reference" --mem || st=1
  done
  mpirun --oversubscribe -np 4 $TR train $D --layout dp=2,pp=2,zero=3,mbs=1 --device emu --metrics "$t/ref_bf16_z3.csv" \
    >/dev/null || return 1
  mpirun --oversubscribe -np 4 $TR train $D --layout dp=2,pp=2,zero=3,mbs=1 --device cuda --comm mpi \
    --metrics "$t/gpu_bf16_z3.csv" || { echo "FAIL dp=2,pp=2,zero=3 in bf16 on the GPU"; st=1; }
  python3 tests/gpu/loss_match.py "$t/ref_bf16_z3.csv" "$t/gpu_bf16_z3.csv" 2e-4 \
    "bf16 storage, dp=2,pp=2,zero=3 (MPI comm, one GPU) vs the CPU's bf16 reference" --mem || st=1
  # bf16 (the default precision): tiny on the Markov source to its
  # entropy rate + 0.05 (mean of the last 50 of 700 steps), with the
  # explicit attention and with the tensor-core flash kernels
  H=$($TR data --describe markov:vocab=64,order=1,seed=7 | sed -n 's/^entropy_rate_nats=//p')
  for attn in explicit flash; do
  $TR train --model tiny --layout mbs=16,attn=$attn --global-batch 32 --data markov:vocab=64,order=1,seed=7 --steps 700 \
    --lr 2e-2 --warmup 20 --device cuda --quiet --metrics "$t/bf16_$attn.csv" || return 1
  python3 - "$t/bf16_$attn.csv" "$H" "$attn" <<'PYEOF' || st=1
import sys
r = [l.split(",") for l in open(sys.argv[1]) if l[0].isdigit()]
last = [float(x[1]) for x in r[-50:]]
gap = sum(last) / max(len(last), 1) - float(sys.argv[2])
ok = len(r) == 700 and -0.02 < gap <= 0.05  # below the entropy rate is a broken loss, not a good model
print("%s bf16 storage, attn=%s (fp32 master weights, gradients and state): tiny ends %.4f nats above the entropy rate %s (limit 0.05)"
      % ("ok  " if ok else "FAIL", sys.argv[3], gap, sys.argv[2]))
sys.exit(0 if ok else 1)
PYEOF
  done
  # NCCL under the trainer where the machine has a GPU per rank
  if [ "$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')" -ge 2 ]; then
    mpirun -np 2 $TR train $D --layout dp=2,mbs=1,precision=fp32 --device cuda --comm nccl \
      --metrics "$t/nccl_dp2.csv" || { echo "FAIL dp=2 on NCCL"; return 1; }
    python3 tests/gpu/loss_match.py "$t/gpu1.csv" "$t/nccl_dp2.csv" 1e-4 "dp=2 on NCCL (two GPUs) vs one GPU rank" || st=1
    # pipelines on NCCL: the grouped exchange (executor/pipeline.h)
    for lay in "pp=2,schedule=1f1b" "pp=2,schedule=interleaved,v=2"; do
      timeout 300 mpirun -np 2 $TR train $D --layout "$lay,mbs=1,precision=fp32" --device cuda --comm nccl \
        --metrics "$t/nccl_$lay.csv" || { echo "FAIL $lay on NCCL"; st=1; continue; }
      python3 tests/gpu/loss_match.py "$t/gpu1.csv" "$t/nccl_$lay.csv" 1e-4 "$lay on NCCL (two GPUs) vs one GPU rank" || st=1
    done
    # activations of 16 MB, beyond NCCL's buffers, where an ungrouped
    # send-then-receive order could hang: NCCL against the MPI comm
    local B="--model tiny,hidden=1024,heads=8,ffn=4096,seq=1024 --global-batch 16 --data markov:vocab=64,order=1,seed=7 --steps 4 --quiet"
    for comm in nccl mpi; do
      timeout 300 mpirun -np 2 $TR train $B --layout pp=2,mbs=4,schedule=1f1b,precision=fp32 --device cuda --comm $comm \
        --metrics "$t/big_pp2_$comm.csv" || { echo "FAIL pp=2 with 16 MB activations on $comm (exit $?; 124: hung)"; st=1; }
    done
    python3 tests/gpu/loss_match.py "$t/big_pp2_mpi.csv" "$t/big_pp2_nccl.csv" 1e-4 \
      "pp=2 1F1B, 16 MB activations: NCCL vs the MPI comm (two GPUs)" || st=1
  else
    echo "note: one GPU: NCCL under the trainer needs a GPU per rank (NCCL itself is checked at world size 1 in comm)"
  fi
  return $st
}
if want training; then
  section "training: triad train --device cuda"
  export -f train_check; run_section training train_check
fi

# ---- section: bench (the GPU benchmark) --------------------------------------
# gpt2-124m, -350m and -1558m on one GPU rank, sequence 1024, bf16 math (and
# 124m in fp32 math too), the largest micro-batch of 64, 32, 16, 8, 4, 2, 1 that
# fits (a try that runs out of memory moves to the next), global batch =
# micro-batch: median tokens/s of steps 3-12, MFU = model FLOPs (triad's
# cost model, no recomputation counted; the metrics header) / step time /
# the GPU's dense bf16 peak (989 TFLOP/s for an H100 or H200 SXM, 756 for an
# H100 PCIe, 312 for an A100; PEAK_TFLOPS overrides). LOG/bench.csv.
bench_check() {
  [ -x "$TR" ] || { echo "check_gpu: $TR missing (make it here, carry build/)"; return 1; }
  local b=$LOG/bench; mkdir -p "$b"; local st=0
  local gpu; gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
  local peak=${PEAK_TFLOPS:-}
  if [ -z "$peak" ]; then
    case "$gpu" in *H100*PCIe*) peak=756 ;; *H100*|*H200*|*GH200*) peak=989 ;; *A100*) peak=312 ;;
      *) echo "check_gpu: dense bf16 peak of '$gpu' unknown: set PEAK_TFLOPS"; return 1 ;; esac
  fi
  echo "GPU: $gpu, dense bf16 peak $peak TFLOP/s (MFU's denominator)"
  echo "model,precision,attn,mbs,seq,median_step_s,tokens_per_s,model_tflops,mfu_pct,mem_peak_gb" >"$LOG/bench.csv"
  for run in "gpt2-124m bf16 flash" "gpt2-124m bf16 explicit" "gpt2-124m fp32 explicit" "gpt2-350m bf16 flash" \
             "gpt2-1558m bf16 flash"; do
    set -- $run; local ok=0 tag=$1_$2_$3
    for mbs in 64 32 16 8 4 2 1; do
      if $TR train --model $1 --layout mbs=$mbs,precision=$2,attn=$3 --global-batch $mbs \
           --data markov:vocab=4096,order=1,seed=1 --steps 12 --device cuda --quiet \
           --metrics "$b/$tag.csv" 2>"$b/$tag.err"; then ok=1; break; fi
      echo "note: $1 $2 attn=$3 mbs $mbs did not run: $(grep -m1 'triad' "$b/$tag.err")"
    done
    [ $ok = 1 ] || { echo "FAIL $1 $2 attn=$3: no micro-batch ran"; st=1; continue; }
    python3 - "$b/$tag.csv" $1 $2 $mbs $peak $3 >>"$LOG/bench.csv" <<'PYEOF' || st=1
import sys, statistics
p, model, prec, mbs, peak, attn = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]), sys.argv[6]
flops = [float(l.split()[2]) for l in open(p) if l.startswith("# model_flops_per_step")][0]
r = [l.split(",") for l in open(p) if l[0].isdigit()][2:]
dt = statistics.median(float(x[4]) for x in r)
tps = statistics.median(float(x[5]) for x in r)
mem = max(int(x[6]) for x in r)
print("%s,%s,%s,%d,%d,%.4f,%.0f,%.1f,%.1f,%.2f" % (model, prec, attn, mbs, round(tps * dt / mbs), dt, tps, flops / dt / 1e12,
      100 * flops / dt / (peak * 1e12), mem / 2**30))
PYEOF
  done
  column -s, -t "$LOG/bench.csv" 2>/dev/null || cat "$LOG/bench.csv"
  # where gpt2-124m's step goes: its kernels timed at the bench's micro-batch
  # in bf16 (triad profile, one pass), each row's calls in a step (the
  # executor's call order, as the cost model sums them), and triad's
  # prediction of the step from that profile beside the measured one
  local pm; pm=$(awk -F, '$1=="gpt2-124m" && $2=="bf16" && $3=="flash" {print $4}' "$LOG/bench.csv")
  if [ -n "$pm" ]; then
    $TR profile --device cuda --model gpt2-124m --mbs "$pm" --tp 1 --kernels-only --precision bf16 --passes 1 \
      --samples 3 --out "$b/profile_124m.csv" --force || st=1
    python3 - "$b/profile_124m.csv" 12 50304 <<'PYEOF' || st=1
import sys
L, V = int(sys.argv[2]), int(sys.argv[3])
rows = [l.rstrip("\n").split(",") for l in open(sys.argv[1]) if l.startswith(("gemm,", "kernel,"))]
per_layer = {"attention_fwd": 1, "attention_bwd": 1, "attention_flash_fwd": 1, "attention_flash_bwd": 1,
             "gelu_fwd": 1, "gelu_bwd": 1, "bias_residual": 2, "matmul_gelu_fwd": 1, "matmul_gelu_bwd": 1}
names = {r[1] for r in rows}
fused = "matmul_gelu_fwd" in names  # the MLP's GEMM + GELU and its backward timed as the executor runs them
F = max(int(r[4]) for r in rows if r[0] == "gemm" and int(r[4]) != V)  # the MLP width: the widest block GEMM
out, total = [], 0.0
for r in rows:
    kind, name, m, n, k, t = r[0], r[1] or "matmul_fwd", int(r[3]), int(r[4]), int(r[5]), float(r[9])
    if name in ("attention_fwd", "attention_bwd", "scale"):
        continue  # the bench trains attn=flash on one rank (no data-parallel mean)
    if fused and (name in ("gelu_fwd", "gelu_bwd") or (name == "matmul_fwd" and n == F) or
                  (name == "matmul_bwd" and k == F)):
        continue  # inside matmul_gelu_fwd / _bwd
    if name in ("matmul_fwd", "matmul_bwd"):
        calls = 1 if n == V else L
    elif name.startswith("layernorm"):
        calls = 2 * L + 1
    else:
        calls = L * per_layer[name] if name in per_layer else 1
    fl = 2.0 * m * n * k * (1 if name.endswith("_fwd") else 2) if name.startswith("matmul") else 0
    out.append((t * calls, name, m, n, k, t, calls, fl / t / 1e12 if fl else 0))
    total += t * calls
print("gpt2-124m, bf16, one step's kernels on one GPU (%.2f ms in all, no communication):" % (1e3 * total))
print("%-20s %7s %7s %6s %10s %5s %9s %6s %8s" % ("kernel", "m", "n", "k", "ms/call", "calls", "ms/step", "share", "TFLOP/s"))
for s, name, m, n, k, t, c, tf in sorted(out, reverse=True):
    print("%-20s %7d %7d %6d %10.4f %5d %9.3f %5.1f%% %8s" % (name, m, n, k, 1e3 * t, c, 1e3 * s, 100 * s / total,
          "%.1f" % tf if tf else ""))
PYEOF
    $TR simulate --model gpt2-124m --cluster dgx-h100-80gb --layout "mbs=$pm,attn=flash" --global-batch "$pm" \
      --profile "$b/profile_124m.csv" | head -8 || st=1
  fi
  return $st
}
if want bench; then
  section "bench: tokens/s and MFU on one GPU"
  export -f bench_check; run_section bench bench_check
fi

# ---- section: the closed loop on the GPU (issue: profile, plan, run, compare) ----
# triad profile --device cuda with 2 ranks on the one GPU (collectives through
# the MPI comm, staged), then triad report --device cuda over every feasible
# layout of a small GPT on 2 ranks: comparison.csv and its summary
loop_check() {
  local L=$LOG/loop; rm -rf "$L"; mkdir -p "$L"
  mpirun --oversubscribe -np 2 $TR profile --device cuda --model tiny --out "$L/profile.csv" --force || return 1
  $TR report --device cuda --model tiny --gpus 2 --global-batch 16 --profile "$L/profile.csv" --out "$L/report" \
    --steps 20 --warmup-steps 5 --force || return 1
  head -12 "$L/report/comparison.csv"
  # the same loop in bf16 math, predicted from the profile's bf16 rows (both maths by default on cuda)
  $TR report --device cuda --precision bf16 --attn explicit,flash --model tiny --gpus 2 --global-batch 16 \
    --mbs 2,4 --confirm 0 --profile "$L/profile.csv" --out "$L/report-bf16" --steps 20 --warmup-steps 5 --force || return 1
  $TR plan --model tiny --cluster cpu,gpus_per_node=2 --gpus 2 --global-batch 16 --profile "$L/profile.csv" --top 5 \
    > "$L/plan.txt" || return 1
  sed -n '5,10p' "$L/plan.txt"
}
if want loop; then
  section "loop: profile + report --device cuda"
  export -f loop_check; run_section loop loop_check
fi

section "summary"
cat "$SUMMARY"
exit $FAILED
