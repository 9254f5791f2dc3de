#!/usr/bin/env bash
# The closed loop on this machine: triad profile under mpirun writes a
# profile the cost model reads (gemm, kernel and collective rows), triad
# report runs every feasible layout of a small job on 2 ranks and writes
# comparison.csv and the plots. Memory must match the prediction within 2%
# for every layout (it is exact by construction of the inventory); step
# times are only checked for being real numbers here (speed goals are
# measured by `make bench`, not asserted in tests). --measured re-reads the
# runs and reproduces the table. Bad input: one line, exit 2.
set -u
cd "$(dirname "$0")/../.."
T=${BUILD:-build}/triad
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fail=1; }
M=tiny

mpirun -np 2 $T profile --model $M --mbs 1,2 --samples 3 --min-ms 0.2 --out "$tmp/p.csv" 2> "$tmp/p.log" \
  || { cat "$tmp/p.log"; bad "profile ran"; }
g=$(grep -c '^gemm,' "$tmp/p.csv"); k=$(grep -c '^kernel,' "$tmp/p.csv"); c=$(grep -c '^collective,' "$tmp/p.csv")
# 2 tp degrees x 2 micro-batch sizes x (5 forward GEMMs; 5 matmul_bwd + 15 other kernels, the fused
# attention pair and the MLP's GEMM + GELU pair among them) + the optimizer step (adamw, grad_norm,
# zero_grad, scale)
[ "$g" = 20 ] && [ "$k" = 84 ] && [ "$c" -ge 16 ] && ok "profile rows: $g gemm, $k kernel, $c collective" \
  || bad "profile rows: $g gemm (want 20), $k kernel (want 84), $c collective (want >= 16)"
# collectives on the MPI comm: gradient buckets do not reduce under backward
grep -q '^param,dp_overlap,0,' "$tmp/p.csv" && grep -q '^# .*collectives of the comm layer (MPI)' "$tmp/p.csv" \
  && ok "profile states its comm: MPI, dp_overlap 0" || bad "profile lacks 'param,dp_overlap,0' or its comm line"
# ranks that fit the cores spin in their waits: no sleeping waits to measure;
# 4 ranks on fewer cores sleep between polls, and the profile times what a
# collective after compute and a wake-up cost (seconds, between 1 us and 0.1 s)
! grep -q '^param,\(wait_coll_s\|wake_s\),' "$tmp/p.csv" && ok "2-rank profile: no sleeping waits measured" \
  || bad "2-rank profile states sleeping waits"
if [ "$(getconf _NPROCESSORS_ONLN)" -lt 4 ]; then
  mpirun -np 4 $T profile --model $M --mbs 1 --tp 1 --samples 1 --passes 1 --min-ms 0.2 --out "$tmp/p4.csv" \
    2> "$tmp/p4.log" || { cat "$tmp/p4.log"; bad "4-rank profile ran"; }
  python3 - "$tmp/p4.csv" <<'PY' && ok "4-rank profile on $(getconf _NPROCESSORS_ONLN) cores: $(grep -h '^param,w' "$tmp/p4.csv" | cut -d, -f2,3 | tr '\n' ' ')" || bad "4-rank profile's waits"
import sys
v = {r.split(',')[1]: float(r.split(',')[2]) for r in open(sys.argv[1]) if r.startswith('param,w')}
sys.exit(0 if set(v) == {'wait_coll_s', 'wake_s'} and all(1e-6 <= x <= 0.1 for x in v.values()) else 1)
PY
  $T simulate --profile "$tmp/p4.csv" --model $M --cluster cpu,gpus_per_node=4 --layout tp=2,pp=2,mbs=1 \
    --global-batch 4 --precision fp32 > "$tmp/s4.txt" 2>&1
  grep -q "measured with 4 ranks on $(getconf _NPROCESSORS_ONLN) cores" "$tmp/s4.txt" && grep -q "waiting ranks sleep:" "$tmp/s4.txt" \
    && ok "simulate states the profile's sharing and sleeping waits" || { cat "$tmp/s4.txt"; bad "simulate with a 4-rank profile"; }
  # the emulated device keeps its memory from the host: no waits timed there (they were, on host
  # buffers, and the profile crashed)
  mpirun -np 4 $T profile --model $M --device emu --mbs 1 --tp 1 --samples 1 --passes 1 --min-ms 0.2 \
    --out "$tmp/p4e.csv" 2> "$tmp/p4e.log" && ! grep -q '^param,wait' "$tmp/p4e.csv" \
    && ok "4-rank profile of the emulated device: written, no sleeping waits" || { tail -3 "$tmp/p4e.log"; bad "4-rank emu profile"; }
  # the closed form cannot follow that sharing: the plan simulates every layout
  $T plan --profile "$tmp/p4.csv" --model $M --cluster cpu,gpus_per_node=4 --gpus 4 --global-batch 8 --top 2 \
    > "$tmp/plan4.txt" 2>&1
  $T plan --profile "$tmp/p4.csv" --model $M --cluster cpu,gpus_per_node=4 --gpus 4 --global-batch 8 --top 1000 \
    --format csv > "$tmp/plan4.csv" 2>&1
  n4=$(($(wc -l < "$tmp/plan4.csv") - 1)); s4=$(grep -c ',simulator$' "$tmp/plan4.csv")
  grep -q "event simulator, every layout" "$tmp/plan4.txt" && [ "$n4" -gt 10 ] && [ "$s4" = "$n4" ] \
    && ok "plan under a 4-rank profile simulates all $n4 layouts" \
    || { head -4 "$tmp/plan4.txt"; bad "plan under a 4-rank profile: $s4 of $n4 simulated"; }
fi
mpirun -np 2 $T profile --model $M --tp 3 --out "$tmp/p3.csv" 2> "$tmp/e.log"; rc=$?
[ $rc = 2 ] && [ "$(grep -c 'triad:' "$tmp/e.log")" = 1 ] && grep -q -- "--tp 3 does not divide" "$tmp/e.log" && [ ! -e "$tmp/p3.csv" ] \
  && ok "profile --tp 3 on 2 ranks refused: $(grep triad: "$tmp/e.log")" || bad "profile --tp 3: rc=$rc $(cat "$tmp/e.log")"
mpirun -np 2 $T profile --model $M --mbs 1 --out "$tmp/p.csv" 2> "$tmp/e.log"; rc=$?
[ $rc = 2 ] && grep -q "exists" "$tmp/e.log" && ok "profile refuses to overwrite without --force" \
  || bad "profile overwrite: rc=$rc $(cat "$tmp/e.log")"
$T plan --model $M --cluster cpu --gpus 2 --global-batch 8 --profile "$tmp/p.csv" > "$tmp/plan.txt" 2>&1 \
  && ok "triad plan reads the measured profile" || { cat "$tmp/plan.txt"; bad "plan --profile"; }
# a profile of triad's executor plans for triad train: every proposed layout
# must be one it runs (fp32, any ZeRO stage and schedule), and the best must train
$T plan --model $M --cluster cpu --gpus 2 --global-batch 8 --profile "$tmp/p.csv" --top 100 --format csv \
  --out "$tmp/best.ini" > "$tmp/plan.csv" 2>/dev/null
n=$(python3 -c "import csv,sys; r=list(csv.DictReader(open(sys.argv[1]))); print(len(r), sum(1 for x in r if int(x['zero'])>3 or x['precision']!='fp32'))" "$tmp/plan.csv")
set -- $n
if [ "${1:-0}" -gt 0 ] && [ "${2:-1}" = 0 ] &&
   mpirun -np 2 $T train --device cpu --plan "$tmp/best.ini" --data markov:vocab=64,order=1,seed=1 --steps 2 --quiet \
     2>/dev/null; then
  ok "plan with the measured profile: $1 layouts, all ones triad train runs; the best trains"
else
  bad "plan with the measured profile proposed $2 of ${1:-0} layouts triad train does not run (or the best did not train)"
fi
# the cpu profile timed fp32 only (the cpu trainer's math), and both attentions:
# the plan searches fused attention too, without selective recomputation (it keeps nothing to drop)
python3 - "$tmp/plan.csv" <<'PY' && ok "plan searches attn=flash from the profile's fused rows" || fail=1
import csv, sys
r = list(csv.DictReader(open(sys.argv[1])))
f = [x for x in r if x['attn'] == 'flash']
e = [x for x in r if x['attn'] == 'explicit']
assert f and e, (len(f), len(e))
assert not [x for x in f if x['recompute'] == 'selective'], 'flash + selective is rc=none'
PY
grep -q '^dtype\|,dtype$' <(sed -n '/^kind,/p' "$tmp/p.csv") && ! grep -q ',bf16$' "$tmp/p.csv" \
  && [ "$(grep -c '^gemm,.*,fp32$' "$tmp/p.csv")" = 20 ] \
  && ok "profile rows carry their math: every GEMM fp32 on the cpu backend" || bad "profile dtype column"
$T simulate --profile "$tmp/p.csv" --model $M --cluster cpu --layout mbs=2,precision=bf16 --global-batch 4 \
  > /dev/null 2> "$tmp/e.log"; rc=$?
[ $rc = 2 ] && grep -q "precision=bf16 was not measured" "$tmp/e.log" \
  && ok "a precision the profile did not time is refused: $(cat "$tmp/e.log")" || bad "simulate bf16 on an fp32 profile: rc=$rc"
mpirun -np 1 $T profile --model $M --precision bf16 --out "$tmp/q.csv" 2> "$tmp/e.log"; rc=$?
[ $rc = 2 ] && grep -q "fp32 only" "$tmp/e.log" && ok "profile --precision bf16 refused on the cpu backend" \
  || bad "profile --precision bf16 on cpu: rc=$rc"

$T report --model $M --gpus 2 --global-batch 4 --mbs 1,2 --steps 4 --warmup-steps 1 --profile "$tmp/p.csv" \
   --out "$tmp/r" > "$tmp/r.txt" 2> "$tmp/r.log" || { cat "$tmp/r.log"; bad "report ran"; }
cat "$tmp/r.txt"
python3 - "$tmp/r/comparison.csv" <<'PY' && ok "comparison.csv: every feasible layout, memory within 2%, the fastest pass, the spread, the contenders confirmed, comm time" || fail=1
import csv, math, sys
rows = list(csv.DictReader(open(sys.argv[1])))
need = ['layout', 'predicted_step_time_s', 'measured_step_time_s', 'step_time_error_pct',
        'predicted_mem_bytes', 'measured_mem_bytes']
assert all(c in rows[0] for c in need), rows[0].keys()
# tp 1, 2 x pp 1, 2 (tiny has 4 layers) x mbs 1, 2, with every schedule when pp > 1,
# batch 4: dp2 (mbs 1, 2), tp2 (1, 2), pp2 (1, 2) x 3 schedules (gpipe, 1f1b,
# interleaved v2: pp * 2 = 4 layers, 4 or 2 micro-batches divisible by pp) = 10
assert len(rows) == 10, len(rows)
assert sum(1 for r in rows if r['schedule'] == 'interleaved') == 2, [r['layout'] for r in rows]
for r in rows:
    p, m = float(r['predicted_step_time_s']), float(r['measured_step_time_s'])
    assert math.isfinite(p) and math.isfinite(m) and p > 0 and m > 0, r
    e = 100 * (p - m) / m
    assert abs(e - float(r['step_time_error_pct'])) < 0.01, r
    pm, mm = int(r['predicted_mem_bytes']), int(r['measured_mem_bytes'])
    assert pm > 0 and abs(pm - mm) <= 0.02 * mm, ('memory', r['layout'], pm, mm)
# every pass's median step time (after the 1 warm-up step), recomputed from
# its metrics: the measured time is the fastest pass, the spread the slowest
# over it; two passes each, and the confirmation's two more for the
# contenders: the predicted fastest and the three fastest of the first two
# passes among the others
import glob, os, statistics
def med(path):
    t = [float(l.split(',')[4]) for l in open(path) if l[0].isdigit()]
    return statistics.median(t[1:])
runs = os.path.join(os.path.dirname(sys.argv[1]), 'runs')
def passes(i):
    return ['%s/layout%02d.csv' % (runs, i + 1)] + sorted(glob.glob('%s/layout%02d.r*.csv' % (runs, i + 1)))
for i, r in enumerate(rows):
    t = [med(p) for p in passes(i)]
    m = float(r['measured_step_time_s'])
    assert int(r['measured_passes']) == len(t), ('passes', r['layout'], r['measured_passes'], len(t))
    assert abs(m - min(t)) <= 1e-5 * m, ('fastest pass', r['layout'], m, t)
    sp = float(r['measured_spread_pct'])
    assert math.isfinite(sp) and abs(sp - 100 * (max(t) - min(t)) / m) < 0.01, ('spread', r['layout'], sp, t)
pick = min(range(len(rows)), key=lambda i: float(rows[i]['predicted_step_time_s']))
first2 = {i: min(med(p) for p in passes(i)[:2]) for i in range(len(rows)) if i != pick}
want = {pick} | set(sorted(first2, key=first2.get)[:3])
got = {i for i, r in enumerate(rows) if int(r['measured_passes']) == 4}
assert got == want and all(int(r['measured_passes']) == 2 for i, r in enumerate(rows) if i not in got), (got, want)
# time blocked in communication: the fastest pass's median of the metrics'
# comm_s column, less than the step; every 2-rank layout
# communicates, and the prediction (the closed form's step less compute and
# optimizer) is positive and less than the predicted step
def med_col(path, name):
    ls = [l.rstrip('\n').split(',') for l in open(path) if not l.startswith('#')]
    j = ls[0].index(name)
    return statistics.median([float(x[j]) for x in ls[1:]][1:])
for i, r in enumerate(rows):
    t = [(med(p), med_col(p, 'comm_s')) for p in passes(i)]
    want = min(t)[1]
    mc, m = float(r['measured_comm_s']), float(r['measured_step_time_s'])
    assert abs(mc - want) <= 1e-5 * m and 0 < mc < m, ('measured comm', r['layout'], mc, c1, c2, m)
    pc, p = float(r['predicted_comm_s']), float(r['predicted_step_time_s'])
    assert 0 < pc < p, ('predicted comm', r['layout'], pc, p)
PY
# the order line: Spearman's rho (Pearson's correlation of average ranks,
# ties sharing a rank) and the signed mean error, recomputed from the step
# times of comparison.csv (%.6g there, the ties of the predictions kept)
python3 - "$tmp/r/comparison.csv" "$tmp/r.txt" <<'PY' && ok "order line: Spearman rho and signed mean error recomputed" || fail=1
import csv, math, re, sys
rows = list(csv.DictReader(open(sys.argv[1])))
txt = open(sys.argv[2]).read()
m = re.search(r'rank correlation \(Spearman\) (-?[0-9.]+) .*signed mean error ([-+][0-9.]+)%', txt)
assert m, txt
rho, signed = float(m.group(1)), float(m.group(2))
k = len(rows)
def ranks(col):  # average ranks: tied values share the mean of their places
    v = [float(r[col]) for r in rows]
    return [1 + sum(w < x for w in v) + (sum(w == x for w in v) - 1) / 2 for x in v]
rp, rm = ranks('predicted_step_time_s'), ranks('measured_step_time_s')
mp, mm = sum(rp) / k, sum(rm) / k
want = sum((a - mp) * (b - mm) for a, b in zip(rp, rm)) / math.sqrt(
    sum((a - mp) ** 2 for a in rp) * sum((b - mm) ** 2 for b in rm))
assert math.isfinite(rho) and abs(rho - want) <= 0.005 + 1e-9, (rho, want)
e = [100 * (float(r['predicted_step_time_s']) - float(r['measured_step_time_s'])) / float(r['measured_step_time_s']) for r in rows]
assert abs(signed - sum(e) / k) <= 0.05 + 1e-9, (signed, sum(e) / k)
PY
# repeatability: Spearman's rho between the layouts' first and second passes
python3 - "$tmp/r/comparison.csv" "$tmp/r.txt" <<'PY' && ok "repeatability line: the passes' own rank correlation recomputed; the pick named is the one confirmed" || fail=1
import csv, math, os, re, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
m = re.search(r'repeatability: the first pass orders the layouts as the second with Spearman (-?[0-9.]+)', open(sys.argv[2]).read())
assert m, 'no repeatability line'
runs = os.path.join(os.path.dirname(sys.argv[1]), 'runs')
def med(path):
    t = [float(l.split(',')[4]) for l in open(path) if l[0].isdigit()]
    return statistics.median(t[1:])
a = [med('%s/layout%02d.csv' % (runs, i + 1)) for i in range(len(rows))]
b = [med('%s/layout%02d.r2.csv' % (runs, i + 1)) for i in range(len(rows))]
def ranks(v):
    return [1 + sum(w < x for w in v) + (sum(w == x for w in v) - 1) / 2 for x in v]
ra, rb = ranks(a), ranks(b)
k = len(rows); mu = (k + 1) / 2
want = sum((x - mu) * (y - mu) for x, y in zip(ra, rb)) / math.sqrt(sum((x - mu) ** 2 for x in ra) * sum((y - mu) ** 2 for y in rb))
assert abs(float(m.group(1)) - want) <= 0.005 + 1e-9, (m.group(1), want)
# the pick the summary names is the one the confirmation ran: the first row
# of the lowest prediction, with its two more passes
pick = min(range(len(rows)), key=lambda i: float(rows[i]['predicted_step_time_s']))
m = re.search(r"triad's pick: (.*), measured", open(sys.argv[2]).read())
assert m and m.group(1) == rows[pick]['layout'] and int(rows[pick]['measured_passes']) == 4, (m and m.group(1), rows[pick])
PY
# the machine's speed: the profile's kernels timed again before and after the
# layouts (runs/speed_before.csv, speed_after.csv: profiles of the smallest
# micro-batch), the median ratio of every matching row recomputed from them,
# and the error of the predictions scaled by the mean of the two
python3 - "$tmp/p.csv" "$tmp/r" "$tmp/r.txt" <<'PY' && ok "machine speed line: ratios recomputed from the re-timed profiles, the scaled error from comparison.csv" || fail=1
import csv, math, re, statistics, sys
def rows(path):  # the j-th row of a (kind, name, shape, math) is matched with the j-th
    out, seen = {}, {}
    for r in csv.DictReader(l for l in open(path) if not l.startswith('#')):
        if r['kind'] in ('gemm', 'kernel'):
            key = (r['kind'], r['name'], float(r['m']), float(r['n']), float(r['k']), r['dtype'])
            seen[key] = seen.get(key, -1) + 1
            out[key + (seen[key],)] = float(r['time_s'])
    return out
base = rows(sys.argv[1])
want = []
for when in ('before', 'after'):
    f = '%s/runs/speed_%s.csv' % (sys.argv[2], when)
    assert not any(l.startswith('collective,') for l in open(f)), 'speed re-check timed collectives'
    again = rows(f)
    r = [again[k] / base[k] for k in again if k in base]
    assert len(r) >= 10, (when, len(r))
    want.append((statistics.median(r), len(r)))
got = list(csv.DictReader(open(sys.argv[2] + '/speed.csv')))
assert [g['when'] for g in got] == ['before', 'after'], got
for g, (x, n) in zip(got, want):
    assert int(g['shapes']) == n and abs(float(g['speed_ratio']) - x) <= 1e-5 * x, (g, x, n)
txt = open(sys.argv[3]).read()
m = re.search(r'took ([0-9.]+)x .* and ([0-9.]+)x after .*\(x([0-9.]+)\): step time error mean ([0-9.]+)%, signed ([-+][0-9.]+)%', txt, re.S)
assert m, txt
s = (want[0][0] + want[1][0]) / 2
assert abs(float(m.group(3)) - s) <= 0.005 + 1e-9, (m.group(3), s)
e = [100 * (float(r['predicted_step_time_s']) * s - float(r['measured_step_time_s'])) / float(r['measured_step_time_s'])
     for r in csv.DictReader(open(sys.argv[2] + '/comparison.csv'))]
assert abs(float(m.group(4)) - sum(map(abs, e)) / len(e)) <= 0.05 + 1e-6, (m.group(4), e)
assert abs(float(m.group(5)) - sum(e) / len(e)) <= 0.05 + 1e-6, (m.group(5), e)
PY
# a profile whose kernels all read 10x faster than this machine runs them:
# the speed line reads several times slower and says to profile again
awk -F, 'BEGIN{OFS=","} ($1=="gemm"||$1=="kernel") && $10+0>0 {$10=$10/10} {print}' "$tmp/p.csv" > "$tmp/p10.csv"
$T report --model $M --gpus 2 --global-batch 4 --mbs 1 --steps 3 --warmup-steps 1 --repeat 1 --confirm 0 \
   --schedules 1f1b --profile "$tmp/p10.csv" --out "$tmp/rf" > "$tmp/rf.txt" 2> /dev/null \
  && python3 - "$tmp/rf/speed.csv" "$tmp/rf.txt" <<'PY' && ok "a profile 10x too fast: the speed line reads $(sed -n 2p "$tmp/rf/speed.csv" | cut -d, -f2)x and says to profile again" || bad "speed line of a 10x profile: $(cat "$tmp/rf.txt")"
import csv, sys
r = list(csv.DictReader(open(sys.argv[1])))
assert all(float(x['speed_ratio']) > 3 and int(x['shapes']) >= 10 for x in r), r
t = open(sys.argv[2]).read()
assert 'slower than when it was profiled: profile again' in t, t
PY
for f in step_time.svg ranking.svg; do
  grep -q "measured" "$tmp/r/$f" 2>/dev/null && ok "plot $f has its labels" || bad "plot $f"
done
$T report --model $M --gpus 2 --global-batch 4 --mbs 1,2 --steps 4 --warmup-steps 1 --profile "$tmp/p.csv" \
   --out "$tmp/r2" --measured "$tmp/r/runs" > /dev/null 2>&1
cmp -s <(cut -d, -f8 "$tmp/r/comparison.csv") <(cut -d, -f8 "$tmp/r2/comparison.csv") \
  && ok "--measured re-reads the runs: same measured times" || bad "--measured differs"

# both attentions: every layout twice, the fused one predicted from the
# profile's attention_flash rows and run with attn=flash, memory exact
mkdir -p "$tmp/ra/runs" && echo stale > "$tmp/ra/runs/layout01.r3.csv" && echo mine > "$tmp/ra/runs/notes.txt"
$T report --model $M --gpus 2 --global-batch 4 --mbs 1 --steps 4 --warmup-steps 1 --profile "$tmp/p.csv" \
   --attn explicit,flash --confirm 0 --out "$tmp/ra" > /dev/null 2> "$tmp/ra.log" || { cat "$tmp/ra.log"; bad "report --attn ran"; }
python3 - "$tmp/ra/comparison.csv" <<'PY' && ok "--attn explicit,flash: each layout with both attentions, fused memory exact and smaller" || fail=1
import csv, sys
rows = {r['layout']: r for r in csv.DictReader(open(sys.argv[1]))}
flash = [k for k in rows if k.endswith(' flash')]
assert len(flash) == 5 and len(rows) == 10, sorted(rows)
for k in flash:
    f, e = rows[k], rows[k[:-len(' flash')]]
    assert int(f['predicted_mem_bytes']) == int(f['measured_mem_bytes']), ('memory', k)
    assert int(f['predicted_mem_bytes']) < int(e['predicted_mem_bytes']), ('no s x s kept', k)
    assert float(f['predicted_step_time_s']) != float(e['predicted_step_time_s']), ('own kernels', k)
PY
[ ! -e "$tmp/ra/runs/layout01.r3.csv" ] && [ "$(cat "$tmp/ra/runs/notes.txt")" = mine ] \
  && ok "an earlier report's runs are cleared, nothing else in runs/" || bad "stale runs kept or other files removed"
$T report --model $M --gpus 2 --global-batch 4 --attn fast --out "$tmp/rb" 2> "$tmp/e.log"; rc=$?
[ $rc = 2 ] && grep -q -- "--attn 'fast'" "$tmp/e.log" && ok "bad --attn refused" || bad "--attn fast: rc=$rc"
# --schedules limits the pipelined layouts only: dp2 and tp2 stay, pp2 runs interleaved alone
$T report --model $M --gpus 2 --global-batch 4 --mbs 1 --steps 3 --warmup-steps 1 --repeat 1 --confirm 0 \
  --schedules interleaved --profile "$tmp/p.csv" --out "$tmp/rs" > /dev/null 2> "$tmp/rs.log" || { cat "$tmp/rs.log"; bad "report --schedules ran"; }
[ "$(cut -d, -f4,6 "$tmp/rs/comparison.csv" | sed 1d | sort | tr '\n' ' ')" = "1,1f1b 1,1f1b 2,interleaved " ] \
  && ok "--schedules interleaved: dp2, tp2 and pp2 interleaved v2" || bad "--schedules: $(cut -d, -f1 "$tmp/rs/comparison.csv" | tr '\n' ' ')"
$T report --model $M --gpus 2 --global-batch 4 --schedules 1f1b,zb --out "$tmp/rt" 2> "$tmp/e.log"; rc=$?
[ $rc = 2 ] && [ "$(wc -l < "$tmp/e.log")" = 1 ] && grep -q -- "'zb' is not one of" "$tmp/e.log" \
  && ok "bad --schedules refused: $(cat "$tmp/e.log")" || bad "--schedules zb: rc=$rc $(cat "$tmp/e.log")"
# --zero adds the ZeRO stages of the dp > 1 layouts: dp2 with ZeRO-0, -2 and -3, tp2, pp2 1F1B; memory exact
$T report --model $M --gpus 2 --global-batch 4 --mbs 1 --steps 3 --warmup-steps 1 --repeat 1 --confirm 0 \
  --schedules 1f1b --zero 0,2,3 --profile "$tmp/p.csv" --out "$tmp/rz" > /dev/null 2> "$tmp/rz.log" || { cat "$tmp/rz.log"; bad "report --zero ran"; }
python3 - "$tmp/rz/comparison.csv" <<'PY' && ok "--zero 0,2,3: dp2 z0, z2 and z3, tp2, pp2; memory predicted to the byte" || bad "--zero 0,2,3: $(cut -d, -f1,12 "$tmp/rz/comparison.csv" | tr '\n' ' ')"
import csv, sys
r = list(csv.DictReader(open(sys.argv[1])))
names = sorted(x['layout'] for x in r)
assert len(r) == 5 and sum(' z2 ' in n for n in names) == 1 and sum(' z3 ' in n for n in names) == 1, names
assert all(x['predicted_mem_bytes'] == x['measured_mem_bytes'] for x in r), [(x['layout'], x['mem_error_pct']) for x in r]
PY
$T report --model $M --gpus 2 --global-batch 4 --zero 0,4 --out "$tmp/ry" 2> "$tmp/e.log"; rc=$?
[ $rc = 2 ] && [ "$(wc -l < "$tmp/e.log")" = 1 ] && grep -q -- "--zero '0,4': '4' is not" "$tmp/e.log" \
  && ok "bad --zero refused: $(cat "$tmp/e.log")" || bad "--zero 0,4: rc=$rc $(cat "$tmp/e.log")"

$T report --model $M --global-batch 4 --out "$tmp/x" 2> "$tmp/e.log"; rc=$?
[ $rc = 2 ] && grep -q -- "--gpus" "$tmp/e.log" && ok "missing --gpus refused" || bad "missing --gpus: rc=$rc"
$T report --model $M --gpus 2 --global-batch 4 --out "$tmp/r" 2> "$tmp/e.log"; rc=$?
[ $rc = 2 ] && grep -q "exists" "$tmp/e.log" && ok "existing report kept without --force" || bad "overwrite: rc=$rc"
$T report --model $M --gpus 3 --global-batch 4 --out "$tmp/y" 2> "$tmp/e.log"; rc=$?
[ $rc = 2 ] && [ "$(wc -l < "$tmp/e.log")" = 1 ] && ok "no feasible layout: $(cat "$tmp/e.log")" \
  || bad "gpus=3: rc=$rc $(cat "$tmp/e.log")"
$T profile --model $M --mbs 1,x --out "$tmp/z.csv" 2> "$tmp/e.log"; rc=$?
[ $rc = 2 ] && grep -q -- "--mbs '1,x'" "$tmp/e.log" && ok "bad --mbs refused" || bad "--mbs: rc=$rc"
exit $fail
