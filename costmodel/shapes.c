/* shapes.c — the buffer inventory of a training rank (see shapes.h). */
#include "shapes.h"

#include <stdio.h>
#include <string.h>

/* Append a tensor of up to four dims (0 ends the list) when room remains. */
static int add(shapes_tensor *out, int n, int max, const char *name, int64_t d0, int64_t d1,
               int64_t d2, int64_t d3)
{
    if (n >= max)
        return n;
    shapes_tensor *t = &out[n];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    int64_t d[4] = {d0, d1, d2, d3};
    t->elems = 1;
    for (int i = 0; i < 4 && d[i] > 0; i++) {
        t->dims[t->ndim++] = d[i];
        t->elems *= d[i];
    }
    return n + 1;
}

int cost_shapes_layer_params(const spec_model *m, const spec_layout *l, shapes_tensor *out, int max)
{
    int64_t C = m->hidden, F = m->ffn, t = l->tp;
    int n = 0;
    n = add(out, n, max, "ln1w", C, 0, 0, 0);
    n = add(out, n, max, "ln1b", C, 0, 0, 0);
    n = add(out, n, max, "qkvw", 3 * C / t, C, 0, 0);      /* column-parallel */
    n = add(out, n, max, "qkvb", 3 * C / t, 0, 0, 0);
    n = add(out, n, max, "attprojw", C, C / t, 0, 0);      /* row-parallel */
    n = add(out, n, max, "attprojb", C, 0, 0, 0);
    n = add(out, n, max, "ln2w", C, 0, 0, 0);
    n = add(out, n, max, "ln2b", C, 0, 0, 0);
    n = add(out, n, max, "fcw", F / t, C, 0, 0);           /* column-parallel */
    n = add(out, n, max, "fcb", F / t, 0, 0, 0);
    n = add(out, n, max, "fcprojw", C, F / t, 0, 0);       /* row-parallel */
    n = add(out, n, max, "fcprojb", C, 0, 0, 0);
    return n;
}

static int holds_first(const spec_layout *l, int pp_rank) { (void)l; return pp_rank == 0; }
static int holds_last(const spec_layout *l, int pp_rank) { return pp_rank == l->pp - 1; }

int cost_shapes_extra_params(const spec_model *m, const spec_layout *l, int pp_rank,
                             shapes_tensor *out, int max)
{
    int64_t C = m->hidden, Vt = m->vocab / l->tp;
    int n = 0;
    if (holds_first(l, pp_rank)) {
        n = add(out, n, max, "wte", Vt, C, 0, 0);
        n = add(out, n, max, "wpe", m->seq, C, 0, 0);
    }
    if (holds_last(l, pp_rank)) {
        n = add(out, n, max, "lnfw", C, 0, 0, 0);
        n = add(out, n, max, "lnfb", C, 0, 0, 0);
        if (l->pp > 1)
            n = add(out, n, max, "wte_head", Vt, C, 0, 0); /* tied copy, grads summed with stage 0 */
    }
    return n;
}

int cost_shapes_layer_acts(const spec_model *m, const spec_layout *l, spec_recompute rc,
                           shapes_tensor *out, int max)
{
    int64_t B = l->mbs, S = m->seq, C = m->hidden, t = l->tp;
    int64_t Ss = l->sp ? S / t : S; /* positions outside the tp regions */
    int64_t NH = m->heads / t, Ct = C / t, Ft = m->ffn / t;
    int n = 0;
    n = add(out, n, max, "inp", B, Ss, C, 0);
    if (rc == SPEC_RECOMPUTE_FULL)
        return n;
    n = add(out, n, max, "ln1", B, Ss, C, 0);
    n = add(out, n, max, "ln1_mean", B, Ss, 0, 0);
    n = add(out, n, max, "ln1_rstd", B, Ss, 0, 0);
    n = add(out, n, max, "qkv", B, S, 3 * Ct, 0);
    /* explicit attention keeps the softmax probabilities (selective
     * recomputation drops them); fused attention keeps one log-sum-exp per
     * row, and has no s x s matrix for selective recomputation to drop */
    if (l->flash)
        n = add(out, n, max, "lse", B, NH, S, 0);
    else if (rc == SPEC_RECOMPUTE_NONE)
        n = add(out, n, max, "att", B, NH, S, S);
    n = add(out, n, max, "atty", B, S, Ct, 0);
    n = add(out, n, max, "res2", B, Ss, C, 0);
    n = add(out, n, max, "ln2", B, Ss, C, 0);
    n = add(out, n, max, "ln2_mean", B, Ss, 0, 0);
    n = add(out, n, max, "ln2_rstd", B, Ss, 0, 0);
    n = add(out, n, max, "fch", B, S, Ft, 0);
    n = add(out, n, max, "fch_gelu", B, S, Ft, 0);
    return n;
}

int cost_shapes_extra_acts(const spec_model *m, const spec_layout *l, int pp_rank,
                           shapes_tensor *out, int max)
{
    int64_t B = l->mbs, S = m->seq, C = m->hidden;
    int64_t Ss = l->sp ? S / l->tp : S;
    int n = 0;
    if (holds_last(l, pp_rank)) {
        n = add(out, n, max, "lnf_in", B, Ss, C, 0);
        n = add(out, n, max, "lnf", B, Ss, C, 0);
        n = add(out, n, max, "lnf_mean", B, Ss, 0, 0);
        n = add(out, n, max, "lnf_rstd", B, Ss, 0, 0);
    }
    return n;
}

int cost_shapes_scratch(const spec_model *m, const spec_layout *l, int pp_rank,
                        shapes_tensor *out, int max)
{
    int64_t B = l->mbs, S = m->seq, C = m->hidden, t = l->tp;
    int64_t NH = m->heads / t, Ct = C / t, Ft = m->ffn / t;
    int n = 0;
    if (holds_last(l, pp_rank)) {
        n = add(out, n, max, "logits", B, S, m->vocab / t, 0);
        n = add(out, n, max, "xent_stats", 3, B, S, 0); /* row max, sum of exp, target logit */
    }
    /* the gradient of the residual stream, updated in place through a block */
    n = add(out, n, max, "dres", B, S, C, 0);
    /* pipeline receive / tensor-parallel gather buffer */
    if (l->pp > 1 || l->sp)
        n = add(out, n, max, "xfer", B, S, C, 0);
    /* gradients of one block's activations, overwritten block after block */
    n = add(out, n, max, "d_ln1", B, S, C, 0);
    n = add(out, n, max, "d_qkv", B, S, 3 * Ct, 0);
    if (!l->flash) /* the fused backward recomputes the probabilities on chip */
        n = add(out, n, max, "d_att", B, NH, S, S);
    n = add(out, n, max, "d_atty", B, S, Ct, 0);
    n = add(out, n, max, "d_ln2", B, S, C, 0);
    n = add(out, n, max, "d_fch", B, S, Ft, 0);
    n = add(out, n, max, "d_fch_gelu", B, S, Ft, 0);
    /* recompute buffers of one block: what the recompute mode dropped */
    if (l->recompute != SPEC_RECOMPUTE_NONE) {
        shapes_tensor all[16], kept[16];
        int k = cost_shapes_layer_acts(m, l, SPEC_RECOMPUTE_NONE, all, 16);
        int nk = cost_shapes_layer_acts(m, l, l->recompute, kept, 16);
        for (int i = 0; i < k; i++) {
            int dropped = 1;
            for (int j = 0; j < nk; j++)
                if (strcmp(kept[j].name, all[i].name) == 0)
                    dropped = 0;
            if (!dropped)
                continue;
            char nm[SHAPES_NAME_LEN + 8];
            snprintf(nm, sizeof nm, "rc_%.28s", all[i].name);
            int64_t *d = all[i].dims;
            n = add(out, n, max, nm, d[0], all[i].ndim > 1 ? d[1] : 0, all[i].ndim > 2 ? d[2] : 0,
                    all[i].ndim > 3 ? d[3] : 0);
        }
    }
    return n;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

int64_t cost_shapes_tensor_bytes(const shapes_tensor *t, int act_bytes)
{
    /* the row statistics: fp32 in either storage (their recompute buffers too) */
    int fp32 = ends_with(t->name, "_mean") || ends_with(t->name, "_rstd") || ends_with(t->name, "lse") ||
               !strcmp(t->name, "xent_stats");
    int64_t bytes = t->elems * (fp32 ? 4 : act_bytes);
    return (bytes + 3) / 4 * 4; /* the next tensor starts 4-byte aligned */
}

int64_t cost_shapes_sum_bytes(const shapes_tensor *t, int n, int act_bytes)
{
    int64_t s = 0;
    for (int i = 0; i < n; i++)
        s += cost_shapes_tensor_bytes(&t[i], act_bytes);
    return s;
}

int64_t cost_shapes_sum_elems(const shapes_tensor *t, int n)
{
    int64_t s = 0;
    for (int i = 0; i < n; i++)
        s += t[i].elems;
    return s;
}

int cost_shapes_rank_layers(const spec_model *m, const spec_layout *l, int pp_rank)
{
    int v = l->v > 0 ? l->v : 1, sum = 0;
    /* virtual stage k lives on pp rank k % pp (Megatron interleaving) */
    for (int k = pp_rank; k < l->pp * v; k += l->pp)
        sum += spec_layout_stage_layers(l, m, k);
    return sum;
}

int64_t cost_shapes_block_param_elems(const spec_model *m, const spec_layout *l)
{
    shapes_tensor t[16];
    int n = cost_shapes_layer_params(m, l, t, 16);
    return cost_shapes_sum_elems(t, n);
}

int64_t cost_shapes_param_elems(const spec_model *m, const spec_layout *l, int pp_rank)
{
    shapes_tensor t[16];
    int n = cost_shapes_extra_params(m, l, pp_rank, t, 16);
    return cost_shapes_block_param_elems(m, l) * cost_shapes_rank_layers(m, l, pp_rank) + cost_shapes_sum_elems(t, n);
}

int64_t cost_shapes_grad_elems(const spec_model *m, const spec_layout *l, int pp_rank)
{
    if (!(l->zero >= 2 && l->dp > 1))
        return cost_shapes_param_elems(m, l, pp_rank);
    int layers = cost_shapes_rank_layers(m, l, pp_rank);
    int64_t block = cost_shapes_block_param_elems(m, l);
    return cost_shapes_param_elems(m, l, pp_rank) - block * layers + (layers > 0 ? block : 0);
}

int64_t cost_shapes_weight_elems(const spec_model *m, const spec_layout *l, int pp_rank)
{
    if (!(l->zero >= 3 && l->dp > 1))
        return cost_shapes_param_elems(m, l, pp_rank);
    return cost_shapes_grad_elems(m, l, pp_rank); /* the same window and extras */
}

int cost_pipe_send_slots(spec_schedule kind, int pp, int stage, int64_t n_micro, int v, int grad)
{
    int64_t all = n_micro * (kind == SPEC_SCHED_INTERLEAVED ? v : 1);
    int64_t k = (!grad && kind == SPEC_SCHED_1F1B) ? pp - stage : 2;
    if (k > all)
        k = all;
    return (int)(k < 1 ? 1 : k);
}

int64_t cost_pipe_buffer_elems(const spec_model *m, const spec_layout *l, int pp_rank, int64_t n_micro)
{
    if (l->pp <= 1)
        return 0;
    int v = l->schedule == SPEC_SCHED_INTERLEAVED ? l->v : 1;
    int64_t slots = 2 + cost_pipe_send_slots(l->schedule, l->pp, pp_rank, n_micro, v, 0) +
                    cost_pipe_send_slots(l->schedule, l->pp, pp_rank, n_micro, v, 1);
    /* with sp a stage boundary carries the tp rank's token rows only */
    int64_t rows = (int64_t)l->mbs * m->seq / (l->sp ? l->tp : 1);
    return slots * rows * m->hidden;
}
