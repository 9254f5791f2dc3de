#!/usr/bin/env bash
# make demo: the triad loop on built-in defaults. Writes everything under
# demo-out/ (git ignores it) and ends with where it is and a short summary.
set -u
cd "$(dirname "$0")/.."
T=build/triad
OUT=${DEMO_OUT:-demo-out}
mkdir -p "$OUT"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
step() { printf '\n== %s\n' "$*"; }

step "1/4 plan: GPT-3 175B on 1024 A100-80GB GPUs, global batch 1536"
$T plan --model gpt3-175b --cluster dgx-a100-80gb --gpus 1024 --global-batch 1536 --top 5 \
   --out "$OUT/plan-175b.ini" --force || exit 1

step "2/4 simulate the recommended plan, with its timeline"
$T simulate --plan "$OUT/plan-175b.ini" --trace "$OUT/trace-175b.json" --svg "$OUT/timeline-175b.svg" \
   > "$OUT/simulate-175b.txt" || exit 1
sed -n '1,12p' "$OUT/simulate-175b.txt"

step "3/4 train a small GPT on this machine (one CPU rank) on a Markov source of known entropy"
H=$($T data --describe markov:vocab=64,order=1,seed=7 | sed -n 's/entropy_rate_nats=//p')
echo "  source entropy rate: $H nats/token (the loss a perfect model reaches)"
OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} $T train --model tiny --layout mbs=16 --global-batch 32 \
   --data markov:vocab=64,order=1,seed=7 --steps 700 --lr 2e-2 --warmup 20 --metrics "$OUT/train-tiny.csv" \
   2> "$OUT/train-tiny.log" || { cat "$OUT/train-tiny.log"; exit 1; }
grep -E '^step +(1|100|200|300|400|500|600|700)/' "$OUT/train-tiny.log"
tail -1 "$OUT/train-tiny.log"
train_summary=$(python3 - "$OUT/train-tiny.csv" "$H" <<'PY'
import csv, sys
r = [x for x in csv.DictReader(l for l in open(sys.argv[1]) if not l.startswith('#'))]
L = [float(x['loss']) for x in r[-50:]]; m = sum(L) / len(L); H = float(sys.argv[2])
mem, pred = int(r[-1]['mem_peak_bytes']), int(r[-1]['mem_pred_bytes'])
print("trained tiny: loss %.3f vs entropy rate %.3f (gap %.3f nats); memory %.2f MB measured vs %.2f MB predicted"
      % (m, H, m - H, mem / 1e6, pred / 1e6))
PY
)

step "4/4 how close are the predictions to published runs?"
python3 tests/validate.py --csv "$OUT/validation.csv" > "$OUT/validation.txt" || exit 1
tail -1 "$OUT/validation.txt"

step "done: everything is in $OUT/"
echo "  plan:      $OUT/plan-175b.ini (run it: mpirun -np 1024 triad train --plan $OUT/plan-175b.ini ...)"
echo "  timeline:  $OUT/trace-175b.json (Perfetto), $OUT/timeline-175b.svg"
echo "  training:  $OUT/train-tiny.csv (per-step metrics)"
echo "  summary:   $(grep -m1 '^step time' "$OUT/simulate-175b.txt" | awk '{print "predicted step " $5 " s (simulator), " $4 " s (closed form)"}')"
echo "             $train_summary"
echo "             published runs: $(tail -1 "$OUT/validation.txt")"
