#!/usr/bin/env bash
# test_comm.sh — the comm layer (executor/comm_mpi.c) under real mpirun:
# every collective on every group of every (tp, dp, pp) factorisation of
# 2, 4 and 8 ranks with exact inputs (tests/mpi/test_comm_mpi.c), and a
# failing rank taking the whole job down (MPI_Abort, non-zero exit, no hang);
# the pipeline executor and dp gradient buckets / ZeRO-1 (tests/mpi/test_pipe_dp.c).
set -u
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
# one OpenMP thread per rank: 8 ranks on 2 cores with spinning OpenMP teams are 30x slower
export OMP_NUM_THREADS=1
make -s CI=1 BUILD="$BUILD" "$BUILD/libtriad_exec.a" "$BUILD/libtriad_plan.a" >/dev/null || exit 1
BIN="$BUILD/tests/mpi/test_comm_mpi"
PBIN="$BUILD/tests/mpi/test_pipe_dp"
mkdir -p "$(dirname "$BIN")"
CUDA_LINK=""
if nm "$BUILD/libtriad_exec.a" 2>/dev/null | grep -q ' U cudaMemcpy'; then
  CUDA_LINK="-L/usr/local/cuda/lib64 -Wl,-rpath,/usr/local/cuda/lib64 -lcudart -lcublas -lcublasLt -lnccl -lstdc++"
fi
mpicc -std=c11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -Werror -fopenmp -o "$BIN" tests/mpi/test_comm_mpi.c \
  "$BUILD/libtriad_exec.a" "$BUILD/libtriad_plan.a" -lopenblas $CUDA_LINK -lglpk -linih -lcsv -lm ${EXTRA_LDFLAGS:-} || exit 1
mpicc -std=c11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -Werror -fopenmp -o "$PBIN" tests/mpi/test_pipe_dp.c \
  "$BUILD/libtriad_exec.a" "$BUILD/libtriad_plan.a" -lopenblas $CUDA_LINK -lglpk -linih -lcsv -lm ${EXTRA_LDFLAGS:-} || exit 1

fail=0
for np in 2 4 8; do
  if ! timeout 120 mpirun --oversubscribe -np $np "$BIN"; then
    echo "test_comm: FAILED at -np $np" >&2; fail=1
  fi
  # pipeline schedules + dp buckets + ZeRO-1 on an exact toy model
  if ! timeout 120 mpirun --oversubscribe -np $np "$PBIN"; then
    echo "test_comm: pipeline/dpgrad FAILED at -np $np" >&2; fail=1
  fi
done

# a rank that fails must end the job with a non-zero status, quickly
out=$(timeout 60 mpirun --oversubscribe -np 2 "$BIN" --abort 2>&1); rc=$?
if [ $rc -eq 0 ] || [ $rc -eq 124 ]; then
  echo "test_comm: FAILED: a failing rank gave exit $rc (0 = not caught, 124 = hang)" >&2; fail=1
elif ! grep -q 'comm_mpi.c:[0-9]*: MPI_Send' <<<"$out"; then
  echo "test_comm: FAILED: the abort message lacks file:line and the call:" >&2; echo "$out" | head -5 >&2; fail=1
else
  echo "test_comm: failing rank aborted the job (exit $rc): $(grep -m1 'triad: \[rank' <<<"$out")"
fi
[ $fail -eq 0 ] && echo "test_comm: OK"
exit $fail
