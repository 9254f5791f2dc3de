#!/usr/bin/env bash
# Simulator speed: one training step of large jobs, wall time of the whole
# `triad simulate` command (median of 5), with and without the timeline.
set -u
cd "$(dirname "$0")/.."
T=build/triad
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
printf '%-52s %12s %12s\n' "job (one representative rank per stage)" "wall s" "with trace s"
run() {
  local name=$1; shift
  local a=() b=()
  for i in 1 2 3 4 5; do
    s=$(date +%s.%N); $T simulate "$@" --format csv > /dev/null; e=$(date +%s.%N)
    a+=("$(echo "$e - $s" | bc -l)")
    s=$(date +%s.%N); $T simulate "$@" --format csv --trace /tmp/triad_bench_trace.json > /dev/null; e=$(date +%s.%N)
    b+=("$(echo "$e - $s" | bc -l)")
  done
  printf '%-52s %12.4f %12.4f\n' "$name" "$(printf '%s\n' "${a[@]}" | median)" "$(printf '%s\n' "${b[@]}" | median)"
}
run "gpt3-175b 1024 GPUs tp8 pp16 dp8, 192 micro-batches" --model gpt3-175b --cluster dgx-a100-80gb \
    --global-batch 1536 --layout tp=8,pp=16,dp=8,mbs=1
run "gpt3-175b 1024 GPUs tp8 pp8 dp16 interleaved v4, 96 mb" --model gpt3-175b --cluster dgx-a100-80gb \
    --global-batch 1536 --layout tp=8,pp=8,dp=16,mbs=1,schedule=interleaved,v=4
run "megatron-1t 3072 GPUs tp8 pp64 dp6, 512 micro-batches" --model megatron-1t --cluster dgx-a100-80gb \
    --global-batch 3072 --layout tp=8,pp=64,dp=6,mbs=1,recompute=full
rm -f /tmp/triad_bench_trace.json
