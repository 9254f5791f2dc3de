#!/usr/bin/env bash
# Checkpoints across layouts and rank failures, under mpirun:
#  - a job checkpointed as dp2.tp2.pp2 (8 ranks) at step 6 resumes as tp4,
#    dp8 and one rank, and each reproduces the uninterrupted run's losses
#    at steps 7-12 within 1e-5 relative (fp32; the reduction order differs
#    between layouts, so not bit for bit);
#  - a ZeRO-1 pipelined job (dp2.pp2, optimizer state sharded) resumes bit
#    for bit on its own layout, and as tp2.dp2 ZeRO-1 (other shard bounds)
#    and one rank within 1e-5, and as dp4 ZeRO-2; a dp2.tp2 ZeRO-2 job's
#    checkpoint resumes as one rank and as dp2.pp2 ZeRO-1 within 1e-5; a
#    dp2.pp2 ZeRO-3 one (weights sliced, gathered for the write) on its own
#    layout and as one rank, and a ZeRO-1 one as dp4 ZeRO-3;
#  - one rank of a 4-rank job killed with SIGKILL at a random moment (three
#    trials): mpirun exits non-zero within 30 s, no rank is left running,
#    and the job resumed from its last complete checkpoint reproduces the
#    uninterrupted run's remaining losses bit for bit;
#  - a checkpoint of another model or global batch, or with a shard file
#    missing, is refused with one line and status 2.
set -u
cd "$(dirname "$0")/../.."
T=$(pwd)/${BUILD:-build}/triad
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail=0
check() { if eval "$2"; then echo "ok   $1"; else echo "FAIL $1"; fail=1; fi; }
D="--model tiny --global-batch 8 --data markov:vocab=64,order=1,seed=7 --steps 12 --lr 1e-2 --warmup 3 --quiet"
mp() { local np=$1; shift; if [ "$np" -gt 1 ]; then mpirun -np "$np" "$@"; else "$@"; fi; }
rows() { grep -E '^[0-9]+,' "$1" | cut -d, -f1-4; }   # step, loss, lr, grad norm
# losses of steps a..b in two metrics files agree within relative tol (NaN fails)
same_losses() { # fileA fileB a b tol
  awk -F, -v a="$3" -v b="$4" -v tol="$5" '
    /^[0-9]+,/ { if (FNR == NR) ref[$1] = $2; else got[$1] = $2 }
    END { bad = 0; n = 0
      for (s = a; s <= b; s++) {
        if (!(s in ref) || !(s in got)) { bad = 1; continue }
        r = ref[s] + 0; g = got[s] + 0; d = r - g; if (d < 0) d = -d
        if (!(d <= tol * (r < 0 ? -r : r))) { printf "  step %d: %s vs %s\n", s, ref[s], got[s] > "/dev/stderr"; bad = 1 }
        n++ }
      exit (bad || n != b - a + 1) }' "$1" "$2"
}

# resume_as CKPT STEP NAME NP LAYOUT REF: a copy of checkpoint folder CKPT
# (newest step STEP) resumed on NP ranks as LAYOUT reproduces REF's losses
# from step STEP+1 to 12 within 1e-5
resume_as() {
  local d="$tmp/$1_as_$4_$RANDOM"; cp -r "$tmp/$1" "$d"
  mp "$4" $T train $D --layout "$5,precision=fp32" --metrics "$d.csv" --checkpoint-dir "$d" --resume 2>"$d.err"
  check "$3: resumed at step $(($2 + 1)), losses of steps $(($2 + 1))-12 within 1e-5" \
    "grep -q 'resuming from .*step_$2\$' $d.err && same_losses $tmp/$6 $d.csv $(($2 + 1)) 12 1e-5"
}

# ---- resharding: dp2.tp2.pp2 -> tp4, dp8, one rank ---------------------------------
L8="mbs=1,dp=2,tp=2,pp=2,schedule=1f1b,precision=fp32"
mp 8 $T train $D --layout $L8 --metrics "$tmp/ref8.csv" 2>/dev/null
mp 8 $T train $D --layout $L8 --metrics "$tmp/part8.csv" --checkpoint-dir "$tmp/ck8" --checkpoint-every 6 \
   --exit-after 6 2>/dev/null
check "dp2.tp2.pp2 checkpoint at step 6: 8 ranks' shards and a manifest" \
  "[ -f $tmp/ck8/step_6/MANIFEST ] && [ \$(ls $tmp/ck8/step_6/rank*.bin | wc -l) -eq 4 ]"
resume_as ck8 6 "dp2.tp2.pp2 -> tp4" 4 mbs=1,tp=4 ref8.csv
resume_as ck8 6 "dp2.tp2.pp2 -> dp8" 8 mbs=1,dp=8 ref8.csv
resume_as ck8 6 "dp2.tp2.pp2 -> one rank" 1 mbs=1 ref8.csv
# sequence parallelism shards the residual stream, not the checkpoint: same tensors
resume_as ck8 6 "dp2.tp2.pp2 -> tp2.pp2 with sp" 4 mbs=1,tp=2,pp=2,sp=1,schedule=gpipe ref8.csv
# interleaved: pp rank 0 holds blocks 0 and 2, rank 1 blocks 1 and 3 — and back
resume_as ck8 6 "dp2.tp2.pp2 -> dp2.pp2 interleaved v2" 4 mbs=1,dp=2,pp=2,schedule=interleaved,v=2 ref8.csv
LI="mbs=1,tp=2,pp=2,schedule=interleaved,v=2,precision=fp32"
mp 4 $T train $D --layout $LI --metrics "$tmp/parti.csv" --checkpoint-dir "$tmp/cki" --checkpoint-every 6 \
   --exit-after 6 2>/dev/null
resume_as cki 6 "tp2.pp2 interleaved v2 -> dp2.tp2.pp2 1f1b" 8 mbs=1,dp=2,tp=2,pp=2,schedule=1f1b ref8.csv

# ---- ZeRO-1 with pipelining: sharded optimizer state --------------------------------
LZ="mbs=1,dp=2,pp=2,zero=1,schedule=1f1b,precision=fp32"
mp 4 $T train $D --layout $LZ --metrics "$tmp/refz.csv" 2>/dev/null
mp 4 $T train $D --layout $LZ --metrics "$tmp/partz.csv" --checkpoint-dir "$tmp/ckz" --checkpoint-every 5 \
   --exit-after 5 2>/dev/null
cp -r "$tmp/ckz" "$tmp/ckz_same"
mp 4 $T train $D --layout $LZ --metrics "$tmp/partz.csv" --checkpoint-dir "$tmp/ckz_same" --resume 2>/dev/null
check "dp2.pp2 ZeRO-1 resumed on its own layout: steps 6-12 bit for bit" \
  "diff <(rows $tmp/refz.csv | sed -n 6,12p) <(rows $tmp/partz.csv | sed -n 6,12p) >&2"
resume_as ckz 5 "dp2.pp2 ZeRO-1 -> tp2.dp2 ZeRO-1" 4 mbs=1,tp=2,dp=2,zero=1 refz.csv
resume_as ckz 5 "dp2.pp2 ZeRO-1 -> one rank" 1 mbs=1 refz.csv
# ZeRO-2 slices the moments as ZeRO-1 does: either way, and on to one rank
resume_as ckz 5 "dp2.pp2 ZeRO-1 -> dp4 ZeRO-2" 4 mbs=1,dp=4,zero=2 refz.csv
LZ2="mbs=1,dp=2,tp=2,zero=2,precision=fp32"
mp 4 $T train $D --layout $LZ2 --metrics "$tmp/partz2.csv" --checkpoint-dir "$tmp/ckz2" --checkpoint-every 5 \
   --exit-after 5 2>/dev/null
resume_as ckz2 5 "dp2.tp2 ZeRO-2 -> one rank" 1 mbs=1 refz.csv
resume_as ckz2 5 "dp2.tp2 ZeRO-2 -> dp2.pp2 ZeRO-1" 4 mbs=1,dp=2,pp=2,zero=1,schedule=1f1b refz.csv
# ZeRO-3 slices the weights too: a checkpoint holds the whole flat vectors
# (gathered for the write) and its own layout reads them back into slices
LZ3="mbs=1,dp=2,pp=2,zero=3,schedule=1f1b,precision=fp32"
mp 4 $T train $D --layout $LZ3 --metrics "$tmp/partz3.csv" --checkpoint-dir "$tmp/ckz3" --checkpoint-every 5 \
   --exit-after 5 2>/dev/null
resume_as ckz3 5 "dp2.pp2 ZeRO-3 -> its own layout" 4 $LZ3 refz.csv
resume_as ckz3 5 "dp2.pp2 ZeRO-3 -> one rank" 1 mbs=1 refz.csv
resume_as ckz 5 "dp2.pp2 ZeRO-1 -> dp4 ZeRO-3" 4 mbs=1,dp=4,zero=3 refz.csv

# ---- a rank killed with SIGKILL under mpirun -------------------------------------
LK="mbs=1,dp=2,tp=2,precision=fp32"
K="--model tiny --global-batch 8 --data markov:vocab=64,order=1,seed=7 --steps 200 --lr 1e-2 --warmup 3 --quiet"
mp 4 $T train $K --layout $LK --metrics "$tmp/refk.csv" 2>/dev/null
for trial in 1 2 3; do
  d="$tmp/kill$trial"
  mpirun -np 4 $T train $K --layout $LK --metrics "$d.csv" --checkpoint-dir "$d" --checkpoint-every 10 \
    >/dev/null 2>"$d.err" &
  job=$!
  for i in $(seq 300); do [ -f "$d/step_10/MANIFEST" ] && break; sleep 0.05; done
  sleep "0.$((RANDOM % 10))"
  victims=($(pgrep -P $job -f "triad train"))   # the ranks: mpirun's children
  v=${victims[$((RANDOM % ${#victims[@]}))]}
  t0=$(date +%s.%N)
  kill -9 "$v"
  ( sleep 30; kill -9 $job 2>/dev/null ) & watchdog=$!
  wait $job; rc=$?
  t1=$(date +%s.%N)
  kill $watchdog 2>/dev/null; wait $watchdog 2>/dev/null
  secs=$(echo "$t1 - $t0" | bc)
  left=$(pgrep -f "triad train .*--checkpoint-dir $d " | wc -l)
  last=$(ls "$d" | sed -n 's/^step_\([0-9]*\)$/\1/p' | sort -n | tail -1)
  check "trial $trial: rank pid $v killed -> mpirun exit $rc after ${secs}s, $left ranks left, last checkpoint step_$last" \
    "[ ${#victims[@]} -eq 4 ] && [ $rc -ne 0 ] && [ \$(echo \"$secs < 30\" | bc) -eq 1 ] && [ $left -eq 0 ] && [ -n \"$last\" ]"
  mpirun -np 4 $T train $K --layout $LK --metrics "$d.csv" --checkpoint-dir "$d" --checkpoint-every 10 --resume \
    >/dev/null 2>"$d.err2"
  check "trial $trial: resumed from step_$last, steps $((last + 1))-200 bit for bit" \
    "grep -q \"resuming from .*step_$last\\$\" $d.err2 && diff <(rows $tmp/refk.csv | sed -n '$((last + 1)),200p') <(rows $d.csv | tail -n $((200 - last))) >/dev/null"
done

# ---- refusals -----------------------------------------------------------------------
d="$tmp/other"; cp -r "$tmp/ck8" "$d"
$T train --model tiny,layers=2 --global-batch 8 --data markov:vocab=64,order=1,seed=7 --steps 12 --quiet \
  --layout mbs=1,precision=fp32 --checkpoint-dir "$d" --resume >/dev/null 2>"$d.err"; rc=$?
check "another model refused (status $rc, one line)" "[ $rc -eq 2 ] && grep -q 'holds a model with layers=4' $d.err && [ \$(wc -l < $d.err) -eq 1 ]"
$T train $D --global-batch 16 --layout mbs=1,precision=fp32 --checkpoint-dir "$d" --resume >/dev/null 2>"$d.err"; rc=$?
check "another global batch refused (status $rc)" "[ $rc -eq 2 ] && grep -q 'global batch 8' $d.err"
rm "$d/step_6/rank4.bin"   # stage 1, tp rank 0
mp 4 $T train $D --layout mbs=1,tp=4,precision=fp32 --checkpoint-dir "$d" --resume >/dev/null 2>"$d.err"; rc=$?
check "a missing shard refused on every rank (mpirun status $rc)" "[ $rc -eq 2 ] && grep -q 'rank4.bin.* missing' $d.err"
exit $fail
