#!/usr/bin/env bash
# Runs every test of `make test`: the cmocka unit binaries, then the
# end-to-end scripts under tests/e2e (real mpirun ranks). Ends with one line
# "N passed, N failed" and a non-zero status when anything failed.
set -u
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
# every rank of the suite runs on this machine: Open MPI's shared-memory
# transport and ob1 engine carry all of it, and not probing the network
# transports takes ~0.3 s off each of the suite's hundreds of mpirun starts
# (0.82 -> 0.55 s for 4 ranks of tiny here); a value set outside wins
export OMPI_MCA_pml=${OMPI_MCA_pml:-ob1} OMPI_MCA_btl=${OMPI_MCA_btl:-self,vader}
# numpy for the reference checks: Debian's python3-numpy (make deps), or from
# PyPI when python3 is another interpreter (a pyenv or venv one does not see
# Debian's packages)
python3 -c 'import numpy' 2>/dev/null || python3 -m pip install -q numpy >/dev/null 2>&1 ||
  python3 -m pip install -q --break-system-packages numpy >/dev/null 2>&1 || true
pass=0; fail=0; failed=()
for bin in $1; do
    echo "=== unit: $(basename "$bin")"
    if "$bin"; then pass=$((pass+1)); else fail=$((fail+1)); failed+=("$bin"); fi
done
for t in tests/e2e/test_*.sh; do
    [ -e "$t" ] || continue
    echo "=== e2e: $(basename "$t")"
    start=$(date +%s)
    if timeout 600 bash "$t"; then pass=$((pass+1)); r=ok; else fail=$((fail+1)); failed+=("$t"); r=FAILED; fi
    echo "--- $(basename "$t"): $r ($(( $(date +%s) - start )) s)"
done
echo
for f in "${failed[@]+"${failed[@]}"}"; do echo "FAILED: $f"; done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
