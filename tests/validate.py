#!/usr/bin/env python3
"""Predictions against published runs (make validate).

For every row of the dev set (published, measured iteration times of GPT
runs on DGX A100 clusters), runs `triad simulate --format csv` with the
row's model, cluster, batch and layout, and prints measured vs predicted
with the breakdown. Assumptions where the papers are silent are printed.
Exit status: 0, or 1 with --strict when the mean error exceeds 5% or the
worst 12%.
"""
import argparse, csv, os, subprocess, sys

DEFAULTS = {"tp": "1", "pp": "1", "sp": "0", "zero": "0", "recompute": "none", "v": "1",
            "gpu": "a100-80gb", "gpus_per_node": "8"}

def normalise(r):
    """Blank fields take the value a Megatron-LM run has when the option is
    not given (tp = pp = 1, no sp, no ZeRO, no recomputation, plain 1F1B);
    dp follows from gpus / (tp pp) when blank; spaces and case are ignored."""
    r = {k.strip(): (v or "").strip() for k, v in r.items() if k}
    for k, d in DEFAULTS.items():
        if not r.get(k):
            r[k] = d
    r["recompute"] = r["recompute"].lower()
    r["gpu"] = r["gpu"].lower()
    if not r.get("dp"):
        r["dp"] = str(int(r["gpus"]) // (int(r["tp"]) * int(r["pp"])))
    return r

def padded_vocab(r):
    """Megatron-LM pads the vocabulary to a multiple of 128 x tp
    (--make-vocab-size-divisible-by 128), so every tp rank holds an equal
    shard; the published runs trained on the padded size."""
    v, q = int(r["vocab"]), 128 * int(r["tp"] or 1)
    return (v + q - 1) // q * q

def cluster_of(r):
    """The cluster preset of a row's GPU (a100-80gb -> dgx-a100-80gb; the
    built-in profile of that GPU kind comes with it), its GPUs per node."""
    gpu = (r.get("gpu") or "a100-80gb").strip().lower()
    c = "dgx-" + gpu
    if r.get("gpus_per_node"):
        c += ",gpus_per_node=%s" % r["gpus_per_node"]
    return c

def scaling(out):
    """Runs of one job on more GPUs (the same model and batch): how much
    faster the larger run is, measured and predicted. Terms a prediction
    gets wrong for every run of the job alike (the software's kernel
    efficiency) cancel in the ratio; what is left is the model's scaling."""
    if len(out) < 2:
        return
    base = out[0]
    print("# scaling against %s: measured and predicted speed-up" % base["id"])
    for o in out[1:]:
        m = base["measured_s"] / o["measured_s"]
        p = base["predicted_s"] / o["predicted_s"]
        print("scaling %-28s measured %.3fx predicted %.3fx err %+.1f%%" % (o["id"], m, p, 100.0 * (p - m) / m))

def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--triad", default=os.path.join(here, "..", "build", "triad"))
    ap.add_argument("--dev", default=os.path.join(here, "data", "published_dev.csv"))
    ap.add_argument("--strict", action="store_true")
    ap.add_argument("--csv", help="also write the per-row table as CSV here")
    ap.add_argument("--no-plan", action="store_true", help="skip the planner comparison")
    ap.add_argument("--heldout", action="store_true",
                    help="the held-out rows (tests/data/published_heldout.csv): no target, their scaling printed")
    a = ap.parse_args()
    if a.heldout and a.dev == ap.get_default("dev"):
        a.dev = os.path.join(here, "data", "published_heldout.csv")
    rows = [normalise(r) for r in csv.DictReader(open(a.dev))]
    print("# triad validate: %d published runs from %s" % (len(rows), os.path.basename(a.dev)))
    if a.heldout:
        print("# held out: runs the model was never checked against while it was built. MT-NLG 530B")
        print("#   (Smith et al. 2022, sec. 2.4: iteration times at global batch 1920 on 280, 350 and")
        print("#   420 DGX A100 nodes) ran DeepSpeed's pipeline engine (plain 1F1B) with Megatron's")
        print("#   tensor slicing and ZeRO-1; the micro-batch is not stated")
    print("# assumptions: micro-batch 1 where the paper does not state it; the nar21 rows use the")
    print("#   plain 1F1B schedule (v=1) since the interleaving degree is not stated; the vocabulary")
    print("#   padded to a multiple of 128 x tp as Megatron-LM does;")
    print("#   cluster dgx-<gpu> of each row (A100 rows: dgx-a100-80gb, 8 GPUs/node, 25 GB/s/GPU")
    print("#   InfiniBand) with the built-in profile of that GPU kind")
    print("#   (profiles/dgx-a100-80gb.csv: Megatron-LM 2021-22 software - GEMM efficiency of its CUDA 11")
    print("#   era, explicit softmax and dropout, backward tp collectives overlapped with the GEMMs)")
    hdr = "%-28s %5s %4s %4s %4s %3s %-9s %9s %9s %7s %8s %7s %7s %7s %7s" % (
        "id", "gpus", "tp", "pp", "dp", "v", "recompute", "measured", "predicted", "err%",
        "compute", "tp_comm", "pp_comm", "dp_exp", "bubble")
    print(hdr)
    errs, out = [], []
    for r in rows:
        mbs = r["micro_batch"] or "1"
        model = "layers=%s,hidden=%s,heads=%s,ffn=%s,vocab=%d,seq=%s" % (
            r["layers"], r["hidden"], r["heads"], r["ffn"], padded_vocab(r), r["seq"])
        v = int(r["v"] or 1)
        sched = "interleaved" if v > 1 else "1f1b"
        layout = "tp=%s,pp=%s,dp=%s,mbs=%s,sp=%s,zero=%s,recompute=%s,schedule=%s,v=%d" % (
            r["tp"], r["pp"], r["dp"], mbs, r["sp"], r["zero"], r["recompute"], sched, v)
        cluster = cluster_of(r)
        cmd = [a.triad, "simulate", "--model", model, "--cluster", cluster, "--global-batch",
               r["global_batch"], "--layout", layout, "--format", "csv"]
        p = subprocess.run(cmd, capture_output=True, text=True)
        # a layout triad's memory model says cannot fit is still predicted
        # (status 2 with the CSV on stdout): the run was measured, so it fit;
        # the row is marked and the message kept
        fits_note = ""
        if p.returncode == 2 and "does not fit" in p.stderr and p.stdout.strip():
            fits_note = "  (memory model: %s)" % p.stderr.strip().split("simulate: ")[-1]
        elif p.returncode != 0:
            print("%-28s FAILED: %s" % (r["id"], p.stderr.strip()))
            errs.append(float("inf"))
            continue
        pr = next(csv.DictReader(p.stdout.splitlines()))
        meas = float(r["measured_iter_s"]); pred = float(pr["step_time_s"])
        err = 100.0 * (pred - meas) / meas
        errs.append(abs(err))
        print("%-28s %5s %4s %4s %4s %3d %-9s %9.3f %9.3f %+7.1f %8.2f %7.2f %7.2f %7.2f %7.2f" % (
            r["id"], r["gpus"], r["tp"], r["pp"], r["dp"], v, r["recompute"], meas, pred, err,
            float(pr["compute_s"]), float(pr["tp_comm_s"]), float(pr["pp_comm_s"]),
            float(pr["dp_comm_exposed_s"]), float(pr["bubble_s"])) + fits_note)
        out.append(dict(id=r["id"], measured_s=meas, predicted_s=pred, error_pct=round(err, 2)))
    mean = sum(errs) / len(errs)
    worst = max(errs)
    if a.heldout:
        print("\nmean |error| %.1f%%, worst %.1f%% over %d runs (held out: no target)" % (mean, worst, len(errs)))
        scaling(out)
    else:
        print("\nmean |error| %.1f%%, worst %.1f%% over %d runs (target: mean <= 5%%, worst <= 12%%)" % (
            mean, worst, len(errs)))
    if not a.no_plan:
        # For every published run: does triad plan, searching the same job
        # (model, cluster, GPU count, batch), find a layout it predicts at
        # least as fast as the published one? Both sides are triad's
        # predictions (the simulator's, for the published layout too).
        print("\n# triad plan on the same jobs: best layout found vs the published layout (both predicted)")
        print("%-28s %-34s %9s %9s %7s" % ("id", "plan's best layout", "best s", "publ. s", "faster"))
        worse = 0
        for r, o in zip(rows, out):
            model = "layers=%s,hidden=%s,heads=%s,ffn=%s,vocab=%d,seq=%s" % (
                r["layers"], r["hidden"], r["heads"], r["ffn"], padded_vocab(r), r["seq"])
            cluster = cluster_of(r)
            p = subprocess.run([a.triad, "plan", "--model", model, "--cluster", cluster, "--gpus", r["gpus"],
                                "--global-batch", r["global_batch"], "--format", "csv", "--top", "1"],
                               capture_output=True, text=True)
            if p.returncode != 0:
                print("%-28s plan FAILED: %s" % (r["id"], p.stderr.strip()))
                worse += 1
                continue
            b = next(csv.DictReader(p.stdout.splitlines()))
            lay = "dp%s tp%s pp%s mbs%s %s%s rc=%s z%s sp%s" % (
                b["dp"], b["tp"], b["pp"], b["mbs"], b["schedule"][:5], ("v" + b["v"]) if b["schedule"] == "interleaved" else "",
                b["recompute"][:4], b["zero"], b["sp"])
            best = float(b["step_time_s"]); pub = o["predicted_s"]
            ok = best <= pub * (1 + 1e-9)
            worse += 0 if ok else 1
            print("%-28s %-34s %9.3f %9.3f %7s" % (r["id"], lay, best, pub, "yes" if ok else "NO"))
        print("plan found a layout at least as fast as the published one for %d of %d runs" % (len(rows) - worse, len(rows)))
        print("(`triad plan ... --explain --layout <published>` compares the two term by term)")
    if a.csv:
        with open(a.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(out[0].keys()))
            w.writeheader(); w.writerows(out)
    if a.strict and not a.heldout and not (mean <= 5.0 and worst <= 12.0):  # NaN fails too; held out: no target
        return 1
    return 0

if __name__ == "__main__":
    sys.exit(main())
