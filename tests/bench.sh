#!/usr/bin/env bash
# make bench: every speed figure of triad, printed, never asserted.
# Each part is a script tests/bench_<part>.sh that prints '#' provenance
# lines and fixed-width rows; medians over repeated runs.
set -u
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
echo "# triad bench, $(date -u +%Y-%m-%dT%H:%M:%SZ), host $(hostname), $(nproc) cores"
echo "# cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
status=0
for part in plan sim kernels train layouts; do
    s=tests/bench_$part.sh
    [ -f "$s" ] || continue
    echo; echo "## $part"
    bash "$s" || { echo "# bench_$part failed"; status=1; }
done
exit $status
