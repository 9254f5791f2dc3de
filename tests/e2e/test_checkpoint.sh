#!/usr/bin/env bash
# Checkpoints: an interrupted and resumed run produces exactly the losses of
# an uninterrupted one (same layout, single rank and dp2); a job killed with
# SIGKILL mid-run resumes from its last complete checkpoint; only the newest
# checkpoints are kept; a corrupted or truncated checkpoint is refused.
# Resharding and rank failures under mpirun: tests/e2e/test_reshard.sh.
set -u
cd "$(dirname "$0")/../.."
T=${BUILD:-build}/triad
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail=0
check() { if eval "$2"; then echo "ok   $1"; else echo "FAIL $1"; fail=1; fi; }
D="--model tiny --global-batch 8 --data markov:vocab=64,order=1,seed=7 --steps 12 --lr 1e-2 --warmup 3 --quiet"
rows() { grep -E '^[0-9]+,' "$1" | cut -d, -f1-4; }   # step, loss, lr, grad norm (not times)

for np in 1 2; do
  run=""; [ $np -gt 1 ] && run="mpirun --oversubscribe -np $np"
  L="mbs=1,dp=$np,precision=fp32"
  $run $T train $D --layout $L --metrics "$tmp/full$np.csv" 2>/dev/null
  $run $T train $D --layout $L --metrics "$tmp/part$np.csv" --checkpoint-dir "$tmp/ck$np" --checkpoint-every 4 \
     --exit-after 7 2>/dev/null
  check "np=$np: interrupted after step 7 with checkpoints at 4" "[ -f $tmp/ck$np/step_4/MANIFEST ] && [ ! -d $tmp/ck$np/step_8 ]"
  $run $T train $D --layout $L --metrics "$tmp/part$np.csv" --checkpoint-dir "$tmp/ck$np" --checkpoint-every 4 \
     --resume 2>/dev/null
  # steps 1..7 from the first run, then 5..12 from the resumed one: the
  # resumed rows must equal the uninterrupted run's, bit for bit
  check "np=$np: resumed run reproduces steps 5-12 exactly" \
    "diff <(rows $tmp/full$np.csv | sed -n '5,12p') <(rows $tmp/part$np.csv | sed -n '8,15p') >/dev/null"
  check "np=$np: keeps the newest 3 checkpoints" "[ -d $tmp/ck$np/step_12 ] && [ -d $tmp/ck$np/step_8 ] && [ -d $tmp/ck$np/step_4 ]"
done

# SIGKILL mid-run: the last complete checkpoint survives and the job resumes from it
$T train $D --steps 400 --layout mbs=1,precision=fp32 --checkpoint-dir "$tmp/kill" --checkpoint-every 10 \
   --metrics "$tmp/kill.csv" 2>/dev/null &
pid=$!
for i in $(seq 100); do [ -f "$tmp/kill/step_20/MANIFEST" ] && break; sleep 0.1; done
kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
ls "$tmp/kill" | grep -q '\.tmp$' && rm -rf "$tmp"/kill/*.tmp   # a half-written one is ignored anyway
last=$(ls "$tmp/kill" | sed -n 's/^step_\([0-9]*\)$/\1/p' | sort -n | tail -1)
$T train $D --steps 400 --layout mbs=1,precision=fp32 --checkpoint-dir "$tmp/kill" --checkpoint-every 10 \
   --resume --exit-after $((last + 1)) 2> "$tmp/kill.err" >/dev/null
check "SIGKILL: resumed from step_$last" "grep -q \"resuming from .*step_$last\" $tmp/kill.err"

# NaN in a gradient: the run stops naming the step and the tensor, and the last good checkpoint
# stays whole and resumable
$T train $D --layout mbs=1,precision=fp32 --checkpoint-dir "$tmp/nan" --checkpoint-every 2 --inject-nan 5 \
   > /dev/null 2> "$tmp/nan.err"; rc=$?
check "NaN stops the run (status $rc) naming step 5 and the tensor" \
  "[ $rc -eq 1 ] && grep -q 'step 5: .*not finite (first: gradient of fcw in block 3)' $tmp/nan.err"
$T train $D --layout mbs=1,precision=fp32 --checkpoint-dir "$tmp/nan" --checkpoint-every 2 --resume \
   --exit-after 5 > /dev/null 2> "$tmp/nan2.err"
check "the last good checkpoint (step 4) resumes" "grep -q 'resuming from .*step_4' $tmp/nan2.err"

# corruption: one flipped byte, or a truncated file, is refused with one line and status 2
cp -r "$tmp/ck1" "$tmp/bad"
printf '\x55' | dd of="$tmp/bad/step_12/rank0.bin" bs=1 seek=100 conv=notrunc 2>/dev/null
$T train $D --layout mbs=1,precision=fp32 --checkpoint-dir "$tmp/bad" --resume > /dev/null 2> "$tmp/err"; rc=$?
check "corrupted checkpoint refused (status $rc)" "[ $rc -eq 2 ] && grep -q 'fails its checksum' $tmp/err"
cp -r "$tmp/ck1" "$tmp/trunc"; truncate -s 1000 "$tmp/trunc/step_12/rank0.bin"
$T train $D --layout mbs=1,precision=fp32 --checkpoint-dir "$tmp/trunc" --resume > /dev/null 2> "$tmp/err"; rc=$?
check "truncated checkpoint refused (status $rc)" "[ $rc -eq 2 ] && grep -q 'truncated' $tmp/err"
exit $fail
