#!/usr/bin/env bash
# Step time per parallel layout on this machine: gpt2-124m-sized blocks
# (hidden 768, 12 heads, vocab 50257) with 4 layers, sequence 64, global
# batch 4, fp32, one OpenMP/BLAS thread per rank, ranks under mpirun
# --oversubscribe. Median step time over the steps after two warm-up steps.
# A benchmark, never asserted; layouts the trainer refuses are listed as such.
# Then the comm layer's all-reduce / all-gather / reduce-scatter bandwidth (tests/mpi/bench_comm.c).
set -u
cd "$(dirname "$0")/.."
T=build/triad
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
M="gpt2-124m,seq=64,layers=4"
echo "# model $M, global batch 4, fp32, 1 thread per rank, $(nproc --all) cores, $(mpirun --version | head -1)"
printf '%-36s %6s %12s %12s %10s\n' "layout" "ranks" "step s" "tokens/s" "memory"
printf '%-36s %6s %12s %12s %10s\n' "" "" "(median)" "(median)" "(MB, peak)"
for spec in "1 mbs=2" "2 dp=2,mbs=2" "2 dp=2,mbs=2,zero=1" "2 dp=2,mbs=2,zero=2" "2 dp=2,mbs=1,zero=1" \
            "2 dp=2,mbs=1,zero=2" "2 dp=2,mbs=2,zero=3" "2 dp=2,mbs=1,zero=3" "2 tp=2,mbs=2" "2 pp=2,mbs=1,schedule=1f1b" \
            "2 pp=2,mbs=1,schedule=gpipe" "2 pp=2,mbs=1,schedule=interleaved,v=2"; do
  set -- $spec
  if mpirun --oversubscribe -np $1 $T train --model $M --layout $2,precision=fp32 --global-batch 4 \
       --data markov:vocab=4096,order=1,seed=1 --steps 5 --metrics "$tmp/m.csv" --quiet >/dev/null 2>"$tmp/err"; then
    python3 - "$tmp/m.csv" "$2" "$1" <<'PY'
import csv, sys, statistics
r = [x for x in csv.DictReader(l for l in open(sys.argv[1]) if not l.startswith('#'))][2:]
print('%-36s %6s %12.3f %12.0f %10.1f' % (sys.argv[2], sys.argv[3], statistics.median(float(x['step_time_s']) for x in r),
      statistics.median(float(x['tokens_per_s']) for x in r), int(r[-1]['mem_peak_bytes']) / 1e6))
PY
  else
    printf '%-36s %6s %12s   %s\n' "$2" "$1" "-" "$(grep -m1 'triad:' "$tmp/err" | cut -c1-80)"
  fi
done

# comm layer bandwidth over 2 ranks (nccl-tests style algbw / busbw)
CUDA_LINK=""
if nm build/libtriad_exec.a 2>/dev/null | grep -q ' U cudaMemcpy'; then
  CUDA_LINK="-L/usr/local/cuda/lib64 -Wl,-rpath,/usr/local/cuda/lib64 -lcudart -lcublas -lcublasLt -lnccl -lstdc++"
fi
mkdir -p build/tests/mpi
mpicc -std=c11 -D_GNU_SOURCE -O2 -g -fopenmp -o build/tests/mpi/bench_comm tests/mpi/bench_comm.c \
  build/libtriad_exec.a build/libtriad_plan.a -lopenblas $CUDA_LINK -lglpk -linih -lcsv -lm && \
  echo && mpirun --oversubscribe -np 2 build/tests/mpi/bench_comm $((16 << 20))
