#!/usr/bin/env python3
"""Independent reference for triad's trainer: GPT-2 in numpy float64.

Reads what `triad train --dump DIR` wrote (initial weights, the batches of
the first steps, the step-1 loss and gradients, the weights after step 5, the
hyper-parameters), recomputes the loss and every gradient with its own
forward and backward (vectorised numpy, written from the GPT-2 equations,
sharing no code with triad), runs five AdamW steps of its own, and compares:

  loss and every gradient tensor: max |ours - triad| / max |ours| <= 1e-4
  weights after five steps:        same criterion

NaN or Inf anywhere fails. Exit status 0 when everything agrees.
"""
import os
import sys

import numpy as np


def load(dirname):
    cfg = {}
    for line in open(os.path.join(dirname, "config.txt")):
        k, v = line.split()
        cfg[k] = float(v) if "." in v or "e" in v else int(v)
    names, shapes = [], {}
    for line in open(os.path.join(dirname, "init_manifest.txt")):
        parts = line.split()
        names.append(parts[0])
        shapes[parts[0]] = tuple(int(x) for x in parts[1:])

    def tensors(prefix):
        out = {}
        for n in names:
            a = np.fromfile(os.path.join(dirname, prefix + n + ".bin"), dtype="<f4")
            out[n] = a.astype(np.float64).reshape(shapes[n])
        return out

    return cfg, names, tensors("init_"), tensors("grad1_"), tensors("step5_")


def batch(dirname, step, mb, B, T):
    tok = np.fromfile(os.path.join(dirname, "batch_%d_%d_tokens.bin" % (step, mb)), dtype="<i4").reshape(B, T)
    tgt = np.fromfile(os.path.join(dirname, "batch_%d_%d_targets.bin" % (step, mb)), dtype="<i4").reshape(B, T)
    return tok, tgt


GELU_C = np.sqrt(2.0 / np.pi)


def layernorm(x, w, b):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    rstd = 1.0 / np.sqrt(var + 1e-5)
    xhat = (x - mu) * rstd
    return xhat * w + b, (xhat, rstd)


def layernorm_back(dy, w, cache):
    xhat, rstd = cache
    dxhat = dy * w
    dx = rstd * (dxhat - dxhat.mean(-1, keepdims=True) - xhat * (dxhat * xhat).mean(-1, keepdims=True))
    return dx, (dy * xhat).sum((0, 1)), dy.sum((0, 1))


def gelu(x):
    return 0.5 * x * (1.0 + np.tanh(GELU_C * (x + 0.044715 * x ** 3)))


def gelu_back(x, dy):
    u = GELU_C * (x + 0.044715 * x ** 3)
    th = np.tanh(u)
    return dy * (0.5 * (1 + th) + 0.5 * x * (1 - th ** 2) * GELU_C * (1 + 3 * 0.044715 * x ** 2))


def forward_backward(P, cfg, tok, tgt):
    """Loss (mean over B*T) and gradients of every parameter."""
    B, T = tok.shape
    L, C, NH = cfg["layers"], cfg["hidden"], cfg["heads"]
    HS = C // NH
    G = {k: np.zeros_like(v) for k, v in P.items()}
    x = P["wte"][tok] + P["wpe"][np.arange(T)][None]
    caches = []
    mask = np.tril(np.ones((T, T), dtype=bool))
    for l in range(L):
        p = lambda n: P["%s.%d" % (n, l)]
        h1, c1 = layernorm(x, p("ln1w"), p("ln1b"))
        qkv = h1 @ p("qkvw").T + p("qkvb")
        q, k, v = np.split(qkv, 3, axis=-1)
        q = q.reshape(B, T, NH, HS).transpose(0, 2, 1, 3)
        k = k.reshape(B, T, NH, HS).transpose(0, 2, 1, 3)
        v = v.reshape(B, T, NH, HS).transpose(0, 2, 1, 3)
        s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(HS)
        s = np.where(mask, s, -np.inf)
        s = s - s.max(-1, keepdims=True)
        a = np.exp(s)
        a /= a.sum(-1, keepdims=True)
        y = (a @ v).transpose(0, 2, 1, 3).reshape(B, T, C)
        r2 = x + y @ p("attprojw").T + p("attprojb")
        h2, c2 = layernorm(r2, p("ln2w"), p("ln2b"))
        f = h2 @ p("fcw").T + p("fcb")
        g = gelu(f)
        out = r2 + g @ p("fcprojw").T + p("fcprojb")
        caches.append((x, h1, c1, q, k, v, a, y, r2, h2, c2, f, g))
        x = out
    hf, cf = layernorm(x, P["lnfw"], P["lnfb"])
    logits = hf @ P["wte"].T
    m = logits.max(-1, keepdims=True)
    e = np.exp(logits - m)
    z = e.sum(-1, keepdims=True)
    logp = logits - m - np.log(z)
    N = B * T
    loss = -np.take_along_axis(logp, tgt[..., None], -1).mean()
    # backward
    dlogits = e / z
    np.put_along_axis(dlogits, tgt[..., None], np.take_along_axis(dlogits, tgt[..., None], -1) - 1.0, -1)
    dlogits /= N
    G["wte"] += np.einsum("btv,btc->vc", dlogits, hf)
    dhf = dlogits @ P["wte"]
    dx, G["lnfw"], G["lnfb"] = layernorm_back(dhf, P["lnfw"], cf)
    for l in reversed(range(L)):
        n = lambda s: "%s.%d" % (s, l)
        p = lambda s: P[n(s)]
        xin, h1, c1, q, k, v, a, y, r2, h2, c2, f, g = caches[l]
        dout = dx
        G[n("fcprojw")] += np.einsum("bto,bti->oi", dout, g)
        G[n("fcprojb")] += dout.sum((0, 1))
        dg = dout @ p("fcprojw")
        df = gelu_back(f, dg)
        G[n("fcw")] += np.einsum("bto,bti->oi", df, h2)
        G[n("fcb")] += df.sum((0, 1))
        dh2 = df @ p("fcw")
        dr2, G[n("ln2w")], G[n("ln2b")] = layernorm_back(dh2, p("ln2w"), c2)
        dr2 = dr2 + dout
        G[n("attprojw")] += np.einsum("bto,bti->oi", dr2, y)
        G[n("attprojb")] += dr2.sum((0, 1))
        dy = (dr2 @ p("attprojw")).reshape(B, T, NH, HS).transpose(0, 2, 1, 3)
        da = dy @ v.transpose(0, 1, 3, 2)
        dv = a.transpose(0, 1, 3, 2) @ dy
        ds = a * (da - (da * a).sum(-1, keepdims=True)) / np.sqrt(HS)
        dq = ds @ k
        dk = ds.transpose(0, 1, 3, 2) @ q
        dqkv = np.concatenate([t.transpose(0, 2, 1, 3).reshape(B, T, C) for t in (dq, dk, dv)], -1)
        G[n("qkvw")] += np.einsum("bto,bti->oi", dqkv, h1)
        G[n("qkvb")] += dqkv.sum((0, 1))
        dh1 = dqkv @ p("qkvw")
        dxin, G[n("ln1w")], G[n("ln1b")] = layernorm_back(dh1, p("ln1w"), c1)
        dx = dxin + dr2
    np.add.at(G["wte"], tok, dx)
    G["wpe"][:T] += dx.sum(0)
    return loss, G


def lr_at(cfg, step):
    lr, warm, steps, frac = cfg["lr"], cfg["warmup"], cfg["steps"], cfg["min_lr_frac"]
    if warm > 0 and step <= warm:
        return lr * step / warm
    decay = steps - warm
    if decay <= 0:
        return lr
    c = 0.5 * (1 + np.cos(np.pi * (step - warm) / decay))
    return lr * (frac + (1 - frac) * c)


def rel_err(ours, theirs):
    if not (np.all(np.isfinite(ours)) and np.all(np.isfinite(theirs))):
        return np.inf
    scale = np.abs(ours).max()
    return np.abs(ours - theirs).max() / (scale if scale > 0 else 1.0)


def main():
    d = sys.argv[1]
    tol = float(sys.argv[2]) if len(sys.argv) > 2 else 1e-4
    cfg, names, P0, G1, P5 = load(d)
    B, T = cfg["mbs"], cfg["seq"]
    nmb = cfg["global_batch"] // B
    P = {k: v.copy() for k, v in P0.items()}
    M = {k: np.zeros_like(v) for k, v in P.items()}
    Vv = {k: np.zeros_like(v) for k, v in P.items()}
    worst, failed = 0.0, []
    b1, b2, eps = cfg["beta1"], cfg["beta2"], cfg["eps"]
    for step in range(1, 6):
        loss, G = 0.0, {k: np.zeros_like(v) for k, v in P.items()}
        for mb in range(nmb):
            tok, tgt = batch(d, step, mb, B, T)
            l, g = forward_backward(P, cfg, tok, tgt)
            loss += l / nmb
            for k in G:
                G[k] += g[k] / nmb
        if step == 1:
            their = float(open(os.path.join(d, "loss1.txt")).read())
            e = abs(loss - their) / abs(loss)
            print("%-14s rel err %.2e   (reference %.9f, triad %.9f)" % ("loss", e, loss, their))
            if not e <= tol:
                failed.append("loss")
            for k in names:
                e = rel_err(G[k], G1[k])
                worst = max(worst, e)
                if not e <= tol:
                    failed.append("grad " + k)
                    print("%-14s rel err %.2e   FAIL" % ("grad " + k, e))
            print("%-14s max rel err over %d tensors %.2e" % ("gradients", len(names), worst))
            C = cfg["hidden"]
            for k in names:
                if k.startswith("qkvb."):
                    gk = np.abs(G[k][C:2 * C]).max() / np.abs(G[k]).max()
                    if not gk <= 1e-12:
                        failed.append("key-bias gradient " + k)
                        print("%-14s key-bias gradient %.2e is not zero   FAIL" % (k, gk))
        norm = np.sqrt(sum((g ** 2).sum() for g in G.values()))
        if cfg["clip"] > 0 and norm > cfg["clip"]:
            for k in G:
                G[k] *= cfg["clip"] / norm
        lr = lr_at(cfg, step)
        for k in P:
            wd = cfg["weight_decay"] if P[k].ndim == 2 else 0.0
            M[k] = b1 * M[k] + (1 - b1) * G[k]
            Vv[k] = b2 * Vv[k] + (1 - b2) * G[k] ** 2
            mh = M[k] / (1 - b1 ** step)
            vh = Vv[k] / (1 - b2 ** step)
            P[k] = P[k] - lr * (mh / (np.sqrt(vh) + eps) + wd * P[k])
    worst5 = 0.0
    C = cfg["hidden"]
    for k in names:
        ours, theirs = P[k], P5[k]
        if k.startswith("qkvb."):
            # Attention is invariant to the key bias (it adds the same
            # constant to every score of a softmax row), so its exact
            # gradient is zero (asserted above) and Adam turns each side's
            # rounding noise into updates: the key slice is compared by that
            # assertion, the query and value slices here.
            ours = np.concatenate([ours[:C], ours[2 * C:]])
            theirs = np.concatenate([theirs[:C], theirs[2 * C:]])
        e = rel_err(ours, theirs)
        worst5 = max(worst5, e)
        if not e <= tol:
            failed.append("step5 " + k)
            print("%-14s rel err %.2e   FAIL" % ("step5 " + k, e))
    print("%-14s max rel err over %d tensors %.2e" % ("5 AdamW steps", len(names), worst5))
    if failed:
        print("FAILED: %d comparisons above %.0e" % (len(failed), tol))
        return 1
    print("reference agrees: loss, %d gradients and 5 AdamW steps within %.0e" % (len(names), tol))
    return 0


if __name__ == "__main__":
    sys.exit(main())
