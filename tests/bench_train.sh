#!/usr/bin/env bash
# Trainer speed on this machine's cores: gpt2-124m at micro-batch 4,
# sequence 64, fp32, one rank; tokens/s is the median over the steps after
# two warm-up steps (forward, backward and AdamW included).
set -u
cd "$(dirname "$0")/.."
T=build/triad
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
printf '%-44s %8s %12s %12s\n' "model, layout" "threads" "tokens/s" "step s"
for th in 1 $(nproc); do
  OMP_NUM_THREADS=$th OPENBLAS_NUM_THREADS=$th $T train --model gpt2-124m,seq=64 --layout mbs=4 --global-batch 4 \
     --data markov:vocab=4096,order=1,seed=1 --steps 12 --metrics "$tmp/m.csv" --quiet 2>/dev/null
  python3 - "$tmp/m.csv" "$th" <<'PY'
import csv, sys, statistics
r = [x for x in csv.DictReader(l for l in open(sys.argv[1]) if not l.startswith('#'))][2:]
print('%-44s %8s %12.0f %12.4f' % ('gpt2-124m seq 64, batch 4, fp32', sys.argv[2],
      statistics.median(float(x['tokens_per_s']) for x in r), statistics.median(float(x['step_time_s']) for x in r)))
PY
done
