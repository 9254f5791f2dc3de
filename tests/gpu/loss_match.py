#!/usr/bin/env python3
"""loss_match.py A.csv B.csv TOL WHAT [--mem] [--steps N]: two `triad train
--metrics` files of N steps (20 unless said) agree when the loss of B is
within TOL (relative) of A's at every step; with --mem also B's measured
memory peak within 2% of its prediction. Prints one ok/FAIL line; exit
status 0 when they agree (NaN fails)."""
import sys

def rows(p):
    return [l.split(",") for l in open(p) if l[0].isdigit()]

a, b, tol, what = rows(sys.argv[1]), rows(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
worst = max(abs(float(x[1]) - float(y[1])) / abs(float(x[1])) for x, y in zip(a, b)) if a and b else float("nan")
opts = sys.argv[5:]
steps = int(opts[opts.index("--steps") + 1]) if "--steps" in opts else 20
ok = len(a) == len(b) == steps and worst <= tol
line = "%s: loss max rel diff %.2e over %d steps (limit %g)" % (what, worst, len(b), tol)
if "--mem" in opts:
    memerr = max(abs(int(r[6]) - int(r[7])) / int(r[7]) for r in b) if b else float("nan")
    ok = ok and memerr <= 0.02
    line += "; device memory measured vs predicted %+.2f%%" % (100 * memerr)
print(("ok   " if ok else "FAIL ") + line)
sys.exit(0 if ok else 1)
