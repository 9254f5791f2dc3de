#!/usr/bin/env bash
# Planner speed: wall time of whole searches (median of 5) and layouts
# predicted per second, as triad plan reports them.
set -u
cd "$(dirname "$0")/.."
T=build/triad
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
printf '%-34s %10s %12s %14s\n' "search" "wall s" "predicted" "layouts/s"
printf '%-34s %10s %12s %14s\n' "" "(median 5)" "(layouts)" "(median)"
run() {
  local name=$1; shift
  local walls=() rates=() n=0
  for i in 1 2 3 4 5; do
    s=$(date +%s.%N)
    out=$($T plan "$@" --top 3)
    e=$(date +%s.%N)
    walls+=("$(echo "$e - $s" | bc -l)")
    n=$(echo "$out" | sed -n 's/.*, \([0-9]*\) predicted.*/\1/p')
    t=$(echo "$out" | sed -n 's/.*searched in \([0-9.]*\) s.*/\1/p')
    rates+=("$(echo "$n / $t" | bc -l)")
  done
  printf '%-34s %10.3f %12s %14.0f\n' "$name" "$(printf '%s\n' "${walls[@]}" | median)" "$n" \
         "$(printf '%s\n' "${rates[@]}" | median)"
}
run "gpt3-175b, 1024 x A100, batch 1536" --model gpt3-175b --cluster dgx-a100-80gb --gpus 1024 --global-batch 1536
run "megatron-1t, 3072 x A100, b 3072" --model megatron-1t --cluster dgx-a100-80gb --gpus 3072 --global-batch 3072
run "gpt3-13b, 64 x H100, batch 512" --model gpt3-13b --cluster dgx-h100-80gb --gpus 64 --global-batch 512
