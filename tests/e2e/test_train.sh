#!/usr/bin/env bash
# triad train on one CPU rank: the independent float64 reference, convergence
# to the Markov source's entropy rate, memory measured vs predicted, and bad
# input refused with one line and status 2.
set -u
cd "$(dirname "$0")/../.."
T=${BUILD:-build}/triad
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail=0
check() { if eval "$2"; then echo "ok   $1"; else echo "FAIL $1"; fail=1; fi; }
# numpy for the reference: Debian's python3-numpy (make deps), or from PyPI when python3 is
# another interpreter (a pyenv or venv one does not see Debian's packages)
python3 -c 'import numpy' 2>/dev/null || python3 -m pip install -q numpy >/dev/null 2>&1 ||
  python3 -m pip install -q --break-system-packages numpy >/dev/null 2>&1
python3 -c 'import numpy' 2>/dev/null || { echo "FAIL numpy is not importable by python3"; exit 1; }

# 1. the reference: loss, every gradient, five AdamW steps (lr 3e-4, GPT-2's)
$T train --model tiny --layout mbs=2,precision=fp32 --global-batch 4 --data markov:vocab=64,order=1,seed=7 \
   --steps 5 --lr 3e-4 --warmup 2 --dump "$tmp/dump" --quiet
python3 tests/ref/gpt_ref.py "$tmp/dump" | tee "$tmp/ref.txt"
check "float64 reference agrees within 1e-4" "grep -q 'reference agrees' $tmp/ref.txt"
# the same with full recomputation and selective recomputation, and with
# fused (flash) attention, which keeps no probabilities
for lay in recompute=full recompute=selective attn=flash attn=flash,recompute=full; do
  d=$tmp/dump_${lay//[=,]/_}
  $T train --model tiny --layout mbs=2,precision=fp32,$lay --global-batch 4 \
     --data markov:vocab=64,order=1,seed=7 --steps 5 --lr 3e-4 --warmup 2 --dump "$d" --quiet
  python3 tests/ref/gpt_ref.py "$d" > "$d.txt"
  check "reference agrees with $lay" "grep -q 'reference agrees' $d.txt"
done

# 2. convergence: tiny on markov:vocab=64,order=1,seed=7 within 0.05 nats of the entropy rate
H=$($T data --describe markov:vocab=64,order=1,seed=7 | sed -n 's/entropy_rate_nats=//p')
$T train --model tiny --layout mbs=16 --global-batch 32 --data markov:vocab=64,order=1,seed=7 \
   --steps 700 --lr 2e-2 --warmup 20 --metrics "$tmp/m.csv" --quiet 2>/dev/null
check "converges within 0.05 nats of the entropy rate $H (mean of the last 50 steps)" "python3 - '$tmp/m.csv' $H <<'PY'
import csv, sys, math
rows = [r for r in csv.DictReader(l for l in open(sys.argv[1]) if not l.startswith('#'))]
L = [float(r['loss']) for r in rows[-50:]]
m = sum(L) / len(L); H = float(sys.argv[2])
print('    final loss %.4f, entropy rate %.4f, gap %.4f nats' % (m, H, m - H))
assert len(rows) == 700 and math.isfinite(m) and m - H < 0.05 and m - H > -0.02
PY"

# 3. memory: measured peak vs triad simulate --precision fp32 --cluster cpu, within 2%
for lay in "mbs=4" "mbs=2,recompute=full" "mbs=8,recompute=selective" "mbs=4,attn=flash" "mbs=2,attn=flash,recompute=full"; do
  $T train --model gpt2-124m,layers=2,seq=64 --layout $lay --global-batch 8 --data markov:vocab=512,order=1,seed=1 \
     --steps 1 --metrics "$tmp/mem.csv" --quiet 2>/dev/null
  pred=$($T simulate --model gpt2-124m,layers=2,seq=64 --cluster cpu --global-batch 8 --layout $lay \
     --precision fp32 --format csv | python3 -c 'import csv,sys; print(next(csv.DictReader(sys.stdin))["mem_peak_bytes"])')
  meas=$(python3 -c "import csv; r=list(csv.DictReader(l for l in open('$tmp/mem.csv') if not l.startswith('#'))); print(r[-1]['mem_peak_bytes'])")
  check "memory $lay: measured $meas vs simulate $pred (within 2%)" \
    "python3 -c 'import sys; m,p=$meas,$pred; sys.exit(0 if abs(m-p) <= 0.02*p else 1)'"
done

# 4. data tools
$T data --describe markov:vocab=2,order=1,seed=3 > "$tmp/d.txt"
check "data --describe prints the entropy rate" "grep -q '^entropy_rate_nats=0\.' $tmp/d.txt"
printf 'hello triad, hello world. ' > "$tmp/a.txt"; for i in $(seq 8); do cat "$tmp/a.txt" "$tmp/a.txt" > "$tmp/b.txt"; mv "$tmp/b.txt" "$tmp/a.txt"; done
$T data --text "$tmp/a.txt" --out "$tmp/a.bin"
check "text shard has the llm.c header" "python3 -c \"import struct; h=struct.unpack('<3i', open('$tmp/a.bin','rb').read(12)); assert h[0]==20240520 and h[1]==1 and h[2]==$(stat -c %s $tmp/a.txt)\""
$T train --model tiny,vocab=256 --global-batch 2 --data "$tmp/a.bin" --steps 3 --quiet --metrics "$tmp/s.csv" 2>/dev/null
check "trains on a shard" "[ \$(grep -c '^[0-9]' $tmp/s.csv) -eq 3 ]"

# 5. bad input: one line, status 2
bad() {
  local name=$1 needle=$2; shift 2
  "$@" > /dev/null 2> "$tmp/err"; local rc=$?
  check "bad input: $name" "[ $rc -eq 2 ] && grep -q -- \"$needle\" $tmp/err && [ \$(grep -vc 'trains in fp32' $tmp/err) -le 2 ]"
}
bad "missing data file" "cannot open" $T train --model tiny --global-batch 2 --data /nonexistent.bin --steps 1
head -c 2000 "$tmp/a.bin" > "$tmp/trunc.bin"
bad "truncated shard" "header says" $T train --model tiny,vocab=256 --global-batch 2 --data "$tmp/trunc.bin" --steps 1
printf 'not a shard at all, not a shard at all' > "$tmp/junk.bin"; head -c 3000 /dev/zero >> "$tmp/junk.bin"
bad "bad magic" "not a token shard" $T train --model tiny,vocab=256 --global-batch 2 --data "$tmp/junk.bin" --steps 1
bad "token beyond the vocabulary" "vocab is 64" $T train --model tiny --global-batch 2 --data "$tmp/a.bin" --steps 1
bad "vocabulary too large for shards" "65536" $T train --model tiny,vocab=70000 --global-batch 2 --data "$tmp/a.bin" --steps 1
bad "markov vocab above the model's" "exceeds the model" $T train --model tiny --global-batch 2 --data markov:vocab=128,order=1,seed=1 --steps 1
bad "layout the world cannot hold" "needs dp\*tp\*pp = 2 ranks" $T train --model tiny --layout dp=2 --global-batch 2 --data markov:vocab=8,order=1,seed=1 --steps 1
bad "batch not divisible" "not divisible" $T train --model tiny --layout mbs=3 --global-batch 4 --data markov:vocab=8,order=1,seed=1 --steps 1
bad "unknown attention" "attn='fast'" $T train --model tiny --layout attn=fast --global-batch 2 --data markov:vocab=8,order=1,seed=1 --steps 1
bad "bad learning rate" "--lr 'fast'" $T train --model tiny --global-batch 2 --data markov:vocab=8,order=1,seed=1 --steps 1 --lr fast
bad "shard overwrite refused" "not overwriting" $T data --text "$tmp/a.txt" --out "$tmp/a.bin"
exit $fail
