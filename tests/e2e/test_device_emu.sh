#!/usr/bin/env bash
# test_device_emu.sh — the trainer's device code path, without a GPU.
#
# `--device emu` runs the CPU kernels on buffers the host cannot touch
# outside a kernel (kernels/cpu/kern_ops_emu.c): every parameter, gradient,
# activation, optimizer moment and pipeline message lives in "device"
# memory, the comm layer stages them through the host as it does for a GPU,
# and a host read of a device buffer anywhere in the trainer stops the run
# with SIGSEGV. Each layout below must train to the same loss and gradient
# norm, to the bit, as on the host CPU backend (the same kernels run), and
# write the same final weights; a checkpoint written on the emulated device
# must resume on the host on another layout like one written there, and
# the profile -> report loop runs on it.
# Where the build has CUDA but the machine no GPU, --device cuda must be
# refused with one line.
set -u
cd "$(dirname "$0")/../.."
T=${TRIAD:-${BUILD:-build}/triad}
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
D="--model tiny --global-batch 8 --data markov:vocab=64,order=1,seed=7 --steps 6 --lr 3e-4 --warmup 2 --quiet"
fail=0

run() { # np layout device tag [extra...]
  local np=$1 lay=$2 dev=$3 tag=$4; shift 4
  if [ "$np" = 1 ]; then
    $T train $D --layout "$lay,precision=fp32" --device "$dev" --metrics "$tmp/$tag.csv" \
      --dump-final "$tmp/$tag" "$@" 2>"$tmp/$tag.err"
  else
    mpirun --oversubscribe -np "$np" $T train $D --layout "$lay,precision=fp32" --device "$dev" \
      --metrics "$tmp/$tag.csv" --dump-final "$tmp/$tag" "$@" >/dev/null 2>"$tmp/$tag.err"
  fi
}

for spec in "1 mbs=2" "2 tp=2,sp=1,mbs=2" "4 dp=2,tp=2,zero=1,sp=1,mbs=1" "4 tp=2,pp=2,schedule=1f1b,mbs=1" \
            "4 dp=2,pp=2,schedule=gpipe,mbs=1" "2 pp=2,schedule=interleaved,v=2,mbs=1" "2 dp=2,recompute=full,mbs=2" \
            "4 dp=2,tp=2,sp=1,attn=flash,mbs=1" "4 dp=2,pp=2,zero=2,schedule=1f1b,mbs=1" \
            "4 dp=2,pp=2,zero=3,schedule=1f1b,mbs=1"; do
  set -- $spec; np=$1; lay=$2; tag=$(echo "$lay" | tr ',=' '__')
  if ! run "$np" "$lay" cpu "c_$tag"; then echo "FAIL $lay on cpu"; grep -m3 triad: "$tmp/c_$tag.err"; fail=1; continue; fi
  if ! run "$np" "$lay" emu "e_$tag"; then
    echo "FAIL $lay on the emulated device (exit $?)"; grep -m3 triad: "$tmp/e_$tag.err"; fail=1; continue
  fi
  # step, loss, lr, grad_norm: identical text
  if cmp -s <(grep -v '^#' "$tmp/c_$tag.csv" | cut -d, -f1-4) <(grep -v '^#' "$tmp/e_$tag.csv" | cut -d, -f1-4) &&
     [ "$(grep -vc '^#' "$tmp/e_$tag.csv")" = 7 ]; then
    if diff -r -q "$tmp/c_$tag" "$tmp/e_$tag" >/dev/null; then
      echo "ok   $lay: --device emu = cpu to the bit (6 steps: loss, grad norm, final weights)"
    else
      echo "FAIL $lay: final weights differ"; fail=1
    fi
  else
    echo "FAIL $lay: metrics differ"; paste -d'|' "$tmp/c_$tag.csv" "$tmp/e_$tag.csv" | tail -3; fail=1
  fi
done

# a checkpoint written on the emulated device (dp2 tp2 ZeRO-1 sp) resumes on
# the host CPU backend on another layout (tp2 sp), like one written there
rm -rf "$tmp/ck_e" "$tmp/ck_c"
mpirun --oversubscribe -np 4 $T train $D --layout dp=2,tp=2,zero=1,sp=1,mbs=1,precision=fp32 --device emu \
  --checkpoint-dir "$tmp/ck_e" --checkpoint-every 3 --exit-after 3 >/dev/null 2>&1
mpirun --oversubscribe -np 4 $T train $D --layout dp=2,tp=2,zero=1,sp=1,mbs=1,precision=fp32 --device cpu \
  --checkpoint-dir "$tmp/ck_c" --checkpoint-every 3 --exit-after 3 >/dev/null 2>&1
for k in e c; do
  mpirun --oversubscribe -np 2 $T train $D --layout tp=2,sp=1,mbs=1,precision=fp32 --checkpoint-dir "$tmp/ck_$k" \
    --resume --metrics "$tmp/res_$k.csv" >/dev/null 2>"$tmp/res_$k.err" || { echo "FAIL resume of the $k checkpoint"; fail=1; }
done
if [ -s "$tmp/res_e.csv" ] && cmp -s <(grep -v '^#' "$tmp/res_e.csv" | cut -d, -f1-4) \
                                     <(grep -v '^#' "$tmp/res_c.csv" | cut -d, -f1-4); then
  echo "ok   checkpoint from the emulated device resumes on the host (tp2 sp), steps 4-6 as from a host checkpoint"
else
  echo "FAIL resumed runs differ"; fail=1
fi

# the closed loop on the emulated device: profile its kernels and
# collectives, run every feasible layout of 2 ranks on it, compare
rm -rf "$tmp/rep"
if mpirun --oversubscribe -np 2 $T profile --model tiny --out "$tmp/p_emu.csv" --device emu --mbs 1 --samples 3 \
     --passes 1 >/dev/null 2>"$tmp/prof.err" &&
   grep -q '^# triad profile: device emu, 2 ranks' "$tmp/p_emu.csv" &&
   $T report --model tiny --gpus 2 --global-batch 8 --out "$tmp/rep" --profile "$tmp/p_emu.csv" --device emu \
     --steps 4 --warmup-steps 1 --repeat 1 --mbs 1 >"$tmp/rep.out" 2>&1 &&
   [ "$(grep -c '^"' "$tmp/rep/comparison.csv")" -ge 3 ]; then
  echo "ok   profile + report on the emulated device: $(grep -c '^"' "$tmp/rep/comparison.csv") layouts," \
       "$(grep -o 'memory error worst [0-9.]*%' "$tmp/rep.out")"
else
  echo "FAIL profile / report --device emu"; cat "$tmp/prof.err" "$tmp/rep.out" 2>/dev/null | grep triad: | head -5; fail=1
fi

# --device cuda where no GPU can be used: one line, exit 2
if ! nvidia-smi -L >/dev/null 2>&1; then
  $T train $D --layout mbs=2 --device cuda 2>"$tmp/cuda.err" >/dev/null; rc=$?
  if [ $rc = 2 ] && [ "$(grep -c 'triad: train: --device' "$tmp/cuda.err")" = 1 ]; then
    echo "ok   --device cuda without a usable GPU: exit 2, '$(grep -m1 'triad: train' "$tmp/cuda.err")'"
  else
    echo "FAIL --device cuda without a GPU: exit $rc"; cat "$tmp/cuda.err"; fail=1
  fi
  $T train $D --layout mbs=2 --device tpu 2>"$tmp/tpu.err" >/dev/null; rc=$?
  grep -q "device 'tpu' is not one of cpu, cuda, emu" "$tmp/tpu.err" && [ $rc = 2 ] &&
    echo "ok   --device tpu refused naming the value" || { echo "FAIL --device tpu: exit $rc"; fail=1; }
fi

# --comm: a name that is none of auto, mpi, nccl; nccl where the buffers are
# not on a GPU (the emulated device): one line each, exit 2
$T train $D --layout mbs=2 --comm ucx 2>"$tmp/comm1.err" >/dev/null; rc=$?
grep -q "train: --comm 'ucx' is not one of auto, mpi, nccl" "$tmp/comm1.err" && [ $rc = 2 ] &&
  [ "$(wc -l <"$tmp/comm1.err")" = 1 ] &&
  echo "ok   --comm ucx refused naming the value" || { echo "FAIL --comm ucx: exit $rc"; cat "$tmp/comm1.err"; fail=1; }
mpirun --oversubscribe -np 2 $T train $D --layout dp=2,mbs=1,precision=fp32 --device emu --comm nccl \
  2>"$tmp/comm2.err" >/dev/null; rc=$?
if [ $rc != 0 ] && [ "$(grep -c '^triad: ' "$tmp/comm2.err")" = 1 ] &&
   grep -Eq "triad: train: --comm (nccl needs --device cuda|.nccl. is not available in this build)" "$tmp/comm2.err"; then
  echo "ok   --comm nccl on the emulated device: '$(grep '^triad: ' "$tmp/comm2.err")'"
else
  echo "FAIL --comm nccl on the emulated device: exit $rc"; cat "$tmp/comm2.err"; fail=1
fi
# bf16 math end to end on a device backend: triad profile times the GEMMs and
# attention in both maths (rows tagged with their dtype), triad report runs
# precision=bf16 layouts predicted from the bf16 rows, memory (fp32 storage
# in either math) exact
mpirun --oversubscribe -np 2 $T profile --device emu --model tiny --mbs 1 --samples 2 --min-ms 0.1 --passes 1 \
  --out "$tmp/pe.csv" 2>"$tmp/pe.err" >/dev/null || { echo "FAIL emu profile"; cat "$tmp/pe.err"; fail=1; }
g32=$(grep -c '^gemm,.*,fp32$' "$tmp/pe.csv"); g16=$(grep -c '^gemm,.*,bf16$' "$tmp/pe.csv")
a16=$(grep -c '^kernel,attention_.*,bf16$' "$tmp/pe.csv")
[ "$g32" = 10 ] && [ "$g16" = 10 ] && [ "$a16" = 8 ] &&
  echo "ok   emu profile: $g32 fp32 and $g16 bf16 GEMM rows, $a16 bf16 attention rows" ||
  { echo "FAIL emu profile rows: fp32 $g32, bf16 $g16 GEMMs (want 10 each), bf16 attention $a16 (want 8)"; fail=1; }
$T report --model tiny --gpus 2 --global-batch 4 --mbs 1 --steps 3 --warmup-steps 1 --repeat 1 --confirm 0 --device emu \
  --precision bf16 --profile "$tmp/pe.csv" --out "$tmp/rb" >/dev/null 2>"$tmp/rb.err" ||
  { echo "FAIL report --precision bf16"; cat "$tmp/rb.err"; fail=1; }
python3 - "$tmp/rb/comparison.csv" "$tmp/rb/runs" <<'PY' && echo "ok   report --precision bf16 on emu: every layout ran bf16 math, memory exact" || fail=1
import csv, glob, sys
r = list(csv.DictReader(open(sys.argv[1])))
assert len(r) == 5, len(r)   # dp2, tp2, pp2 gpipe / 1f1b / interleaved v2 (mbs 1)
for x in r:
    assert int(x['predicted_mem_bytes']) == int(x['measured_mem_bytes']), x['layout']
    assert float(x['measured_step_time_s']) > 0, x['layout']
runs = glob.glob(sys.argv[2] + '/layout*.csv')
assert len(runs) == 5 and all(', math bf16,' in open(f).readline() for f in runs), runs
PY
exit $fail
