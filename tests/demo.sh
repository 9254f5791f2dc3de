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

step "1/3 plan: GPT-3 175B on 1024 A100-80GB GPUs, global batch 1536"
$T plan --model gpt3-175b --cluster dgx-a100-80gb --gpus 1024 --global-batch 1536 --top 5 \
   --out "$OUT/plan-175b.ini" --force || exit 1

step "2/3 simulate the recommended plan, with its timeline"
$T simulate --plan "$OUT/plan-175b.ini" --trace "$OUT/trace-175b.json" --svg "$OUT/timeline-175b.svg" \
   > "$OUT/simulate-175b.txt" || exit 1
sed -n '1,12p' "$OUT/simulate-175b.txt"

step "3/3 how close are the predictions to published runs?"
python3 tests/validate.py --csv "$OUT/validation.csv" > "$OUT/validation.txt" || exit 1
tail -1 "$OUT/validation.txt"

step "done: everything is in $OUT/"
echo "  plan:      $OUT/plan-175b.ini (run it: mpirun -np 1024 triad train --plan $OUT/plan-175b.ini ...)"
echo "  timeline:  $OUT/trace-175b.json (Perfetto), $OUT/timeline-175b.svg"
echo "  summary:   $(grep -m1 '^step time' "$OUT/simulate-175b.txt" | awk '{print "predicted step " $5 " s (simulator), " $4 " s (closed form)"}')"
echo "             $(tail -1 "$OUT/validation.txt")"
