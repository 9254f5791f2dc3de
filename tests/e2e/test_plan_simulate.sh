#!/usr/bin/env bash
# triad plan / simulate / presets from the command line: outputs a person
# and a program can read, plan files that round-trip, traces that parse,
# and bad input refused with one line and status 2.
set -u
cd "$(dirname "$0")/../.."
T=${BUILD:-build}/triad
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail=0
check() { if eval "$2"; then echo "ok   $1"; else echo "FAIL $1"; fail=1; fi; }

# presets
$T presets > "$tmp/presets.txt"; check "presets lists gpt3-175b and dgx-h100-80gb" \
  "grep -q gpt3-175b $tmp/presets.txt && grep -q dgx-h100-80gb $tmp/presets.txt"

# simulate: CSV columns and values
$T simulate --model gpt3-175b --cluster dgx-a100-80gb --global-batch 1536 \
   --layout tp=8,pp=8,dp=16,recompute=full --format csv > "$tmp/sim.csv"
check "simulate csv has the documented columns" "python3 - '$tmp/sim.csv' <<'PY'
import csv, sys
r = list(csv.DictReader(open(sys.argv[1])))
need = 'tp,pp,dp,mbs,n_micro,schedule,v,recompute,zero,sp,step_time_s,tokens_per_s,tflops_per_gpu,mfu,hfu,mem_peak_bytes,fits,bubble_frac,compute_s,tp_comm_s,pp_comm_s,dp_comm_exposed_s,bubble_s,optimizer_s'.split(',')
assert len(r) == 1 and all(k in r[0] for k in need), r
x = r[0]
assert x['n_micro'] == '96' and x['fits'] == '1' and 1 < float(x['step_time_s']) < 100
PY"
$T simulate --model tiny --cluster cpu --global-batch 8 --layout pp=2,mbs=1 --format json > "$tmp/sim.json"
check "simulate json parses" "python3 -c 'import json,sys; d=json.load(open(\"$tmp/sim.json\")); assert d[\"simulator\"][\"step_time_s\"] > 0'"

# trace and svg: 1f1b, pp=4, 8 micro-batches -> 8 F and 8 B events per stage
$T simulate --model gpt2-124m --cluster dgx-a100-80gb --global-batch 8 --layout pp=4,mbs=1 \
   --trace "$tmp/trace.json" --svg "$tmp/t.svg" > /dev/null
check "trace is valid Chrome JSON with 32 forward and 32 backward events" "python3 - '$tmp/trace.json' <<'PY'
import json, sys
ev = json.load(open(sys.argv[1]))['traceEvents']
f = [e for e in ev if e.get('ph') == 'X' and e['name'].startswith('F ')]
b = [e for e in ev if e.get('ph') == 'X' and e['name'].startswith('B ')]
assert len(f) == 32 and len(b) == 32, (len(f), len(b))
assert {e['pid'] for e in f} == {0, 1, 2, 3}
assert any(e.get('ph') == 'M' and e['args']['name'] == 'compute' for e in ev)
assert all(e['dur'] >= 0 for e in ev if e.get('ph') == 'X')
PY"
check "svg is written" "grep -q '<svg' $tmp/t.svg && grep -q 'stage 3' $tmp/t.svg"

# plan: table, csv, plan file round trip through simulate --plan
$T plan --model gpt3-175b --cluster dgx-a100-80gb --gpus 1024 --global-batch 1536 --top 5 \
   --out "$tmp/plan.ini" > "$tmp/plan.txt" 2>/dev/null
check "plan recommends a layout that fits 80 GB with tp inside a node" "python3 - '$tmp/plan.ini' <<'PY'
import configparser, sys
c = configparser.ConfigParser(inline_comment_prefixes=('#',)); c.read(sys.argv[1])
L = c['layout']; assert int(L['tp']) <= 8
assert int(L['tp']) * int(L['pp']) * int(L['dp']) == 1024
assert float(c['prediction']['mem_peak_bytes']) <= 80e9
PY"
check "simulate reads the plan file" "$T simulate --plan $tmp/plan.ini --format csv | tail -1 | grep -q ','"
$T plan --model gpt3-175b --cluster dgx-a100-80gb --gpus 1024 --global-batch 1536 --out "$tmp/plan.ini" >/dev/null 2>"$tmp/err"
check "plan refuses to overwrite a plan file" "[ \$? -ne 0 ] || false; grep -q 'not overwriting' $tmp/err"
$T plan --model tiny --cluster cpu,gpus_per_node=4 --gpus 4 --global-batch 8 --format csv > "$tmp/plan.csv"
check "plan csv: every row has dp*tp*pp = 4" "python3 - '$tmp/plan.csv' <<'PY'
import csv, sys
r = list(csv.DictReader(open(sys.argv[1])))
assert r and all(int(x['dp'])*int(x['tp'])*int(x['pp']) == 4 for x in r)
PY"
$T plan --model gpt3-175b --cluster dgx-a100-80gb --gpus 1024 --global-batch 1536 --emit megatron > "$tmp/meg.txt"
check "megatron flags" "grep -q -- '--tensor-model-parallel-size' $tmp/meg.txt && grep -q -- '--global-batch-size 1536' $tmp/meg.txt"
$T plan --model gpt3-175b --cluster dgx-a100-80gb --gpus 1024 --global-batch 1536 --explain \
   --layout tp=8,pp=8,dp=16,recompute=full > "$tmp/explain.txt"
check "explain lists rejections and compares a given layout" \
  "grep -q 'does not fit device memory' $tmp/explain.txt && grep -q 'your layout vs the recommended' $tmp/explain.txt"

# bad input: one line on stderr, status 2
bad() {
  local name=$1 needle=$2; shift 2
  "$@" > /dev/null 2> "$tmp/err"; local rc=$?
  check "bad input: $name (status 2, names '$needle')" "[ $rc -eq 2 ] && grep -q -- \"$needle\" $tmp/err && [ \$(wc -l < $tmp/err) -le 2 ]"
}
bad "unknown command" "nosuch" $T nosuch
bad "unknown option" "--bogus" $T plan --bogus
bad "unknown preset" "gpt9" $T simulate --model gpt9 --cluster cpu --global-batch 8 --layout tp=1
bad "unknown key" "layerz" $T simulate --model tiny,layerz=2 --cluster cpu --global-batch 8 --layout tp=1
bad "malformed number" "hidden='6x4'" $T simulate --model tiny,hidden=6x4 --cluster cpu --global-batch 8 --layout tp=1
bad "zero size" "seq='0'" $T simulate --model tiny,seq=0 --cluster cpu --global-batch 8 --layout tp=1
bad "heads not divisible by tp" "tp=3 does not divide heads=4" $T simulate --model tiny --cluster cpu --global-batch 8 --layout tp=3
bad "batch not divisible" "not divisible by dp\*mbs" $T simulate --model tiny --cluster cpu --global-batch 10 --layout dp=4
bad "dp*tp*pp != gpus" "dp\*tp\*pp = 4 but --gpus is 8" $T plan --model tiny --cluster cpu --gpus 8 --global-batch 8 --layout dp=4
bad "negative gpus" "--gpus '-8'" $T plan --model tiny --cluster cpu --gpus -8 --global-batch 8
bad "nothing fits" "no layout fits" $T plan --model gpt3-175b --cluster dgx-a100-80gb --gpus 8 --global-batch 8
bad "layout that cannot fit" "stage 0 needs" $T simulate --model gpt3-175b --cluster dgx-a100-80gb --global-batch 8 --layout tp=8
bad "bad format" "--format 'xml'" $T simulate --model tiny --cluster cpu --global-batch 8 --layout tp=1 --format xml
bad "missing plan file" "cannot open" $T simulate --plan /nonexistent/plan.ini
exit $fail
