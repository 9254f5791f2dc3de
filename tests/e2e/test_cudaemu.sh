#!/usr/bin/env bash
# test_cudaemu.sh — the GPU path of triad without a GPU: triad built with
# CUDA=emu (make test builds $BUILD/cudaemu/triad), so `--device cuda` runs
# kernels/cuda/kern_cuda.cu — its kernels, cuBLAS calls and launches — on
# this machine's CPU through tests/cudaemu, and the comm layer stages the
# "GPU" buffers through the host with cudaMemcpy as it does on a GPU.
# A rehearsal of make check-gpu's comm and training sections, shortened:
#  1. one rank, fp32 math, 12 steps of tiny: the loss within 1e-4 of the
#     CPU backend's at every step, explicit and fused attention;
#  2. a parallel layout through the MPI comm (every rank its own emulated
#     GPU): dp2·tp2 ZeRO-1 with sp against the single emulated rank, loss
#     within 1e-4, device memory = triad's prediction;
#  3. bf16 storage (bf16 activations and GEMM operands, cuBLAS GemmEx with
#     fp32 accumulation, the tensor-core flash kernels): 12 steps within
#     2e-4 of the emulated device of kern_ops_emu.c, whose CPU kernels
#     widen the same bf16 operands and round each output once (sums in
#     another order; the explicit attention's scores rounded before its
#     softmax; the flash kernels' probabilities against each tile's running
#     max: 3.4e-5 and 2.4e-5 apart when this was written), one rank and
#     dp2·pp2 ZeRO-3 through the MPI comm, device memory = the prediction;
#  4. the comm layer on device buffers (tests/mpi/test_comm_device.c): MPI
#     staging at 2 ranks, NCCL at world size 1;
#  5. NCCL with a GPU a rank (TRIAD_EMU_GPUS: each rank's process emulates
#     its own GPU, and tests/cudaemu/nccl_emu.cc carries NCCL's calls over
#     MPI, each left in flight until its stream or an event after it is
#     synchronised, its output poisoned meanwhile and its buffers checked
#     untouched at the end): comm_nccl.c under every comm.h call at 2 and 4
#     ranks, exact (test_comm_device --nccl), and training through it —
#     dp2·tp2 ZeRO-1 with sp (sp's gathers and reduce-scatters; four
#     gradient buckets reduce-scattered under backward), dp2·pp2 ZeRO-1
#     (the blocks' buckets under backward beside the pipeline's exchanges,
#     the embedding's after its tied sum), dp4 with
#     five gradient buckets all-reduced under backward, tp2·pp2 1F1B both
#     with grouped exchanges and with sends in flight on their own stream,
#     dp2·pp2 ZeRO-3 in bf16 (grouped reduces and broadcasts of uneven
#     slices) — equal to one emulated rank or the MPI comm, memory =
#     prediction. NCCL's own kernels and transport are not what runs here.
# What it cannot show: speed, streams running concurrently, the GPU's own
# arithmetic — make check-gpu on a GPU does.
set -u
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
TR=$BUILD/cudaemu/triad
CPU=${TRIAD:-$BUILD/triad}
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
[ -x "$TR" ] || { echo "test_cudaemu: $TR missing (make test builds it: make cudaemu)"; exit 1; }
t=$(mktemp -d); trap 'rm -rf "$t"' EXIT
# under AddressSanitizer (make asan) the emulator runs ~10x slower, and what
# that build adds is its checks of every access (device memory is exactly
# the bytes asked for): 4 steps there
STEPS=12
ldd "$TR" 2>/dev/null | grep -q libasan && STEPS=4
D="--model tiny --global-batch 8 --data markov:vocab=64,order=1,seed=7 --steps $STEPS --lr 3e-4 --warmup 2 --quiet"
LM() { python3 tests/gpu/loss_match.py "$@" --steps $STEPS; }
st=0

# 1. one emulated GPU rank against the CPU
for attn in explicit flash; do
  $CPU train $D --layout mbs=4,precision=fp32,attn=$attn --device cpu --metrics "$t/cpu_$attn.csv" || exit 1
  $TR train $D --layout mbs=4,precision=fp32,attn=$attn --device cuda --metrics "$t/gpu_$attn.csv" || { echo "FAIL cuda $attn"; exit 1; }
  LM "$t/cpu_$attn.csv" "$t/gpu_$attn.csv" 1e-4 "attn=$attn, one emulated GPU rank vs CPU" --mem || st=1
done

# 2. layouts on emulated GPUs through the MPI comm against one emulated rank
# (the same global batch in micro-batches of 4 there: a sum in another order)
for spec in "4 dp=2,tp=2,zero=1,sp=1"; do
  set -- $spec
  mpirun --oversubscribe -np $1 $TR train $D --layout "$2,mbs=2,precision=fp32" --device cuda --comm mpi \
    --metrics "$t/$2.csv" || { echo "FAIL $2 on emulated GPUs"; st=1; continue; }
  LM "$t/gpu_explicit.csv" "$t/$2.csv" 1e-4 "$2 (MPI comm, emulated GPUs) vs one emulated rank" --mem || st=1
done

# 3. bf16 storage against the emulated device's (the CPU kernels' bf16 reference)
for attn in explicit flash; do
  $CPU train $D --layout mbs=4,attn=$attn --device emu --metrics "$t/emu_bf16_$attn.csv" || exit 1
  $TR train $D --layout mbs=4,attn=$attn --device cuda --metrics "$t/gpu_bf16_$attn.csv" || { echo "FAIL bf16 $attn"; exit 1; }
  LM "$t/emu_bf16_$attn.csv" "$t/gpu_bf16_$attn.csv" 2e-4 "bf16 storage, attn=$attn: emulated GPU vs emulated device" \
    --mem || st=1
done
lay="dp=2,pp=2,zero=3,mbs=2"
mpirun --oversubscribe -np 4 $CPU train $D --layout $lay --device emu --metrics "$t/emu_bf16_z3.csv" >/dev/null || exit 1
mpirun --oversubscribe -np 4 $TR train $D --layout $lay --device cuda --comm mpi --metrics "$t/gpu_bf16_z3.csv" \
  >/dev/null || { echo "FAIL bf16 $lay on emulated GPUs"; exit 1; }
LM "$t/emu_bf16_z3.csv" "$t/gpu_bf16_z3.csv" 2e-4 "bf16 storage, $lay: emulated GPUs vs emulated devices" --mem || st=1

# 4. the comm layer on device buffers: MPI staging and NCCL at world size 1
CB=$BUILD/cudaemu/tests/mpi/test_comm_device
mkdir -p "$(dirname "$CB")"
mpicc -std=c11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -Werror -fopenmp -DTRIAD_HAVE_CUDA=1 -Itests/cudaemu/include \
  -o "$CB" tests/mpi/test_comm_device.c "$BUILD/cudaemu/libtriad_exec.a" "$BUILD/cudaemu/libtriad_plan.a" \
  -lopenblas -lstdc++ -lglpk -linih -lcsv -lm ${EXTRA_LDFLAGS:-} || exit 1
mpirun --oversubscribe -np 2 "$CB" >"$t/comm2.log" 2>&1 || { cat "$t/comm2.log"; echo "FAIL comm: MPI staging at -np 2"; st=1; }
tail -1 "$t/comm2.log"
mpirun -np 1 "$CB" --nccl >"$t/comm_nccl.log" 2>&1 || { cat "$t/comm_nccl.log"; echo "FAIL comm: NCCL at world size 1"; st=1; }
tail -1 "$t/comm_nccl.log"

# 5. NCCL with a GPU a rank, emulated over MPI
for np in 2 4; do
  TRIAD_EMU_GPUS=$np mpirun --oversubscribe -np $np "$CB" --nccl >"$t/comm_nccl$np.log" 2>&1 ||
    { cat "$t/comm_nccl$np.log"; echo "FAIL comm: NCCL at $np ranks (emulated, a GPU a rank)"; st=1; }
  tail -1 "$t/comm_nccl$np.log"
done
run_nccl() { # layout, reference, tolerance, what [, more train options [, a line the log must hold]]
  TRIAD_EMU_GPUS=4 mpirun --oversubscribe -np 4 $TR train ${D/ --quiet/} --layout "$1" --device cuda --comm nccl \
    --metrics "$t/nccl_$1.csv" ${5:-} >"$t/nccl.log" 2>&1 || { cat "$t/nccl.log"; echo "FAIL $1 over NCCL"; st=1; return; }
  grep -q "collectives on NCCL" "$t/nccl.log" || { echo "FAIL $1: did not run on NCCL"; cat "$t/nccl.log"; st=1; return; }
  [ -z "${6:-}" ] || grep -q "$6" "$t/nccl.log" || { echo "FAIL $1: no line '$6'"; cat "$t/nccl.log"; st=1; return; }
  LM "$2" "$t/nccl_$1.csv" "$3" "$4" --mem || st=1
}
run_nccl "dp=2,tp=2,zero=1,sp=1,mbs=2,precision=fp32" "$t/dp=2,tp=2,zero=1,sp=1.csv" 1e-6 \
  "dp2·tp2 ZeRO-1 sp, 4 buckets reduce-scattered under backward: NCCL (emulated, a GPU a rank) vs the MPI comm" \
  "--bucket-mb 0.02" "in 4 buckets (--bucket-mb 0.02), 4 of them reduce-scattered to their ZeRO-1 slices"
run_nccl "dp=2,pp=2,zero=1,schedule=1f1b,mbs=2,precision=fp32" "$t/gpu_explicit.csv" 1e-4 \
  "dp2·pp2 ZeRO-1 1F1B, the blocks' 2 buckets reduce-scattered under backward: NCCL (emulated, a GPU a rank) vs one emulated rank" \
  "--bucket-mb 0.02" "in 3 buckets (--bucket-mb 0.02), 2 of them reduce-scattered to their ZeRO-1 slices"
run_nccl "dp=4,mbs=1,precision=fp32" "$t/gpu_explicit.csv" 1e-4 \
  "dp4, 5 buckets all-reduced under backward: NCCL (emulated, a GPU a rank) vs one emulated rank" "--bucket-mb 0.02" \
  "in 5 buckets (--bucket-mb 0.02), 5 of them all-reduced"
run_nccl "tp=2,pp=2,schedule=1f1b,mbs=2,precision=fp32" "$t/gpu_explicit.csv" 1e-4 \
  "tp2·pp2 1F1B, grouped exchanges: NCCL (emulated, a GPU a rank) vs one emulated rank"
TRIAD_PP_GROUPED=0 run_nccl "tp=2,pp=2,schedule=1f1b,mbs=1,precision=fp32" "$t/gpu_explicit.csv" 1e-4 \
  "tp2·pp2 1F1B, sends in flight: NCCL (emulated, a GPU a rank) vs one emulated rank"
run_nccl "$lay" "$t/gpu_bf16_z3.csv" 1e-6 "bf16 $lay: NCCL (emulated, a GPU a rank) vs the MPI comm"

[ $st = 0 ] && echo "test_cudaemu: ok" || echo "test_cudaemu: FAILED"
exit $st
