/* model.c — GPT-2 forward and backward per block, by hand, over the CPU
 * kernels (see model.h). Buffers are carved from shapes.h's inventory. */
#include "model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../costmodel/cost.h"
#include "../kernels/kernels.h"

/* ---- backend and memory accounting ------------------------------------------- */

/* The kern_ops table every model, optimizer buffer and pipeline buffer of
 * this process lives in (exec_set_backend); host CPU by default. */
static const kern_ops *g_ops;
static int64_t g_mem_now, g_mem_peak;

void exec_set_backend(const kern_ops *ops) { g_ops = ops; }
const kern_ops *exec_backend(void) { return g_ops ? g_ops : kern_ops_cpu(); }
int exec_backend_is_host(void) { return !strcmp(exec_backend()->name, "cpu"); }

void *exec_mem_alloc(size_t bytes)
{
    void *p = exec_backend()->alloc((int64_t)bytes);
    if (p) {
        g_mem_now += (int64_t)bytes;
        if (g_mem_now > g_mem_peak)
            g_mem_peak = g_mem_now;
    }
    return p;
}

void exec_mem_free(void *p, size_t bytes)
{
    if (!p)
        return;
    exec_backend()->free(p);
    g_mem_now -= (int64_t)bytes;
}

int64_t exec_mem_peak_bytes(void) { return g_mem_peak; }

void exec_mem_account(int64_t bytes)
{
    g_mem_now += bytes;
    if (g_mem_now > g_mem_peak)
        g_mem_peak = g_mem_now;
}
int64_t exec_mem_now_bytes(void) { return g_mem_now; }

/* ---- initialisation: a pure function of (seed, tensor, layer, global index) --- */

static uint64_t mix64(uint64_t x)
{ /* splitmix64 finaliser */
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static uint64_t name_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* A standard normal from a counter (Box-Muller on two uniforms). */
static double normal_at(uint64_t key, uint64_t idx)
{
    uint64_t a = mix64(key ^ mix64(2 * idx)), b = mix64(key ^ mix64(2 * idx + 1));
    double u1 = ((a >> 11) + 0.5) / 9007199254740992.0, u2 = (b >> 11) / 9007199254740992.0;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

uint64_t exec_param_global_index(const char *name, const shapes_tensor *t, int64_t hidden, int tp, int r, int64_t i)
{
    int64_t C = hidden;
    if (tp == 1)
        return (uint64_t)i;
    if (!strcmp(name, "qkvw") || !strcmp(name, "qkvb")) {
        int64_t cols = t->ndim == 2 ? t->dims[1] : 1, row = i / cols, col = i % cols, Ct = C / tp;
        int64_t part = row / Ct, within = row % Ct;
        return (uint64_t)((part * C + r * Ct + within) * cols + col);
    }
    if (!strcmp(name, "fcw") || !strcmp(name, "fcb") || !strcmp(name, "wte") || !strcmp(name, "wte_head")) {
        int64_t rows = t->dims[0], cols = t->ndim == 2 ? t->dims[1] : 1;
        return (uint64_t)((r * rows + i / cols) * cols + i % cols);
    }
    if (!strcmp(name, "attprojw") || !strcmp(name, "fcprojw")) {
        int64_t cols = t->dims[1], row = i / cols, col = i % cols;
        return (uint64_t)(row * cols * tp + r * cols + col);
    }
    return (uint64_t)i; /* replicated */
}

void exec_param_global_shape(const char *name, const shapes_tensor *t, int tp, int64_t dims[2])
{
    dims[0] = t->dims[0], dims[1] = t->ndim == 2 ? t->dims[1] : 1;
    int split = exec_param_tp_split_dim(name);
    if (split >= 0)
        dims[split] *= tp;
}

static uint64_t global_index_of(const exec_model *md, int r, const char *name, const shapes_tensor *t, int64_t i)
{
    return exec_param_global_index(name, t, md->m.hidden, md->l.tp, r, i);
}

static uint64_t global_index(const exec_model *md, const char *name, const shapes_tensor *t, int64_t i)
{
    return global_index_of(md, md->tp_rank, name, t, i);
}


static void init_tensor(exec_model *md, float *dst, const char *name, int layer, const shapes_tensor *t,
                        uint64_t seed)
{
    const char *key_name = !strcmp(name, "wte_head") ? "wte" : name; /* tied: same values */
    int is_ln_w = !strcmp(name, "ln1w") || !strcmp(name, "ln2w") || !strcmp(name, "lnfw");
    int is_bias = t->ndim == 1 && !is_ln_w;
    if (is_ln_w || is_bias) {
        for (int64_t i = 0; i < t->elems; i++)
            dst[i] = is_ln_w ? 1.0f : 0.0f;
        return;
    }
    double std = 0.02;
    if (!strcmp(name, "attprojw") || !strcmp(name, "fcprojw"))
        std = 0.02 / sqrt(2.0 * (double)md->m.layers); /* GPT-2 residual scaling */
    if (!strcmp(name, "wpe"))
        std = 0.01;
    uint64_t key = mix64(seed ^ name_hash(key_name) ^ mix64((uint64_t)(layer + 1)));
    /* a pure function of the element's global index: threads change nothing */
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < t->elems; i++)
        dst[i] = (float)(std * normal_at(key, global_index(md, name, t, i)));
}

/* ---- construction --------------------------------------------------------------- */

/* The A_* slot of a kept activation named by shapes.c, or -1. Fused
 * attention's log-sum-exp takes the probabilities' slot (A_ATT). */
static int act_slot(const char *name)
{
    static const char *ACT_NAMES[EXEC_LAYER_ACTS] = {"inp", "ln1", "ln1_mean", "ln1_rstd", "qkv", "att", "atty",
                                                     "res2", "ln2", "ln2_mean", "ln2_rstd", "fch", "fch_gelu"};
    if (!strcmp(name, "lse"))
        return A_ATT;
    for (int a = 0; a < EXEC_LAYER_ACTS; a++)
        if (!strcmp(name, ACT_NAMES[a]))
            return a;
    return -1;
}

/* Chunks of pipeline rank pp_rank: the virtual stages c * pp + pp_rank. */
static int rank_chunks(const spec_layout *l) { return l->v > 0 ? l->v : 1; }

int exec_param_table(const spec_model *m, const spec_layout *l, int pp_rank, exec_param **out)
{
    shapes_tensor lt[EXEC_LAYER_PARAMS], et[8];
    int nl = cost_shapes_layer_params(m, l, lt, EXEC_LAYER_PARAMS);
    int ne = cost_shapes_extra_params(m, l, pp_rank, et, 8);
    int layers = cost_shapes_rank_layers(m, l, pp_rank);
    if (nl != EXEC_LAYER_PARAMS || ne < 0 || ne > 8 || layers < 0)
        return -1;
    exec_param *p = calloc((size_t)(layers * nl + ne) + 1, sizeof *p);
    if (!p)
        return -1;
    int64_t off = 0;
    int k = 0;
    for (int c = 0; c < rank_chunks(l); c++) {
        int s = c * l->pp + pp_rank, first = spec_layout_stage_first(l, m, s);
        for (int L = 0; L < spec_layout_stage_layers(l, m, s); L++)
            for (int j = 0; j < nl; j++, k++) {
                p[k] = (exec_param){lt[j], first + L, off, lt[j].ndim == 2};
                off += lt[j].elems;
            }
    }
    for (int j = 0; j < ne; j++, k++) {
        p[k] = (exec_param){et[j], -1, off, et[j].ndim == 2};
        off += et[j].elems;
    }
    *out = p;
    return k;
}

static int64_t ln_grads_packed(const exec_model *md, float *grads, int64_t lo, int64_t hi, float *buf, int pack);

/* A host buffer the largest parameter tensor fits (initialisation writes
 * one tensor at a time); *elems its size (elems may be NULL). NULL on memory. */
static float *tensor_host_buffer(const exec_model *md, int64_t *elems)
{
    int64_t biggest = 1;
    for (int i = 0; i < md->n_p; i++)
        if (md->p[i].shape.elems > biggest)
            biggest = md->p[i].shape.elems;
    if (elems)
        *elems = biggest;
    return malloc(sizeof(float) * (size_t)biggest);
}

int exec_model_init(exec_model *md, const spec_model *m, const spec_layout *l, int tp_rank, int pp_rank,
                    int n_slots, uint64_t seed, char err[SPEC_ERR_LEN])
{
    memset(md, 0, sizeof *md);
    md->m = *m;
    md->l = *l;
    md->tp_rank = tp_rank;
    md->pp_rank = pp_rank;
    if (l->sp && ((int64_t)l->mbs * m->seq) % l->tp) {
        snprintf(err, SPEC_ERR_LEN, "train: sp=1 needs tp=%d to divide mbs*seq=%lld", l->tp,
                 (long long)l->mbs * m->seq);
        return -1;
    }
    md->n_slots = n_slots > 0 ? n_slots : 1;
    md->n_layers = cost_shapes_rank_layers(m, l, pp_rank);
    if (md->n_layers > EXEC_MAX_LAYERS) {
        snprintf(err, SPEC_ERR_LEN, "train: %d blocks on one rank exceed %d", md->n_layers, EXEC_MAX_LAYERS);
        return -1;
    }
    md->v = rank_chunks(l);
    if (md->v > EXEC_MAX_CHUNKS) {
        snprintf(err, SPEC_ERR_LEN, "train: v=%d chunks on one rank exceed %d", md->v, EXEC_MAX_CHUNKS);
        return -1;
    }
    for (int c = 0; c < md->v; c++)
        md->chunk_lo[c + 1] = md->chunk_lo[c] + spec_layout_stage_layers(l, m, c * l->pp + pp_rank);
    md->chunk_max = cost_chunk_max_layers(m, l, pp_rank); /* the slot the memory model counts */
    md->has_embed = pp_rank == 0;
    md->has_head = pp_rank == l->pp - 1;
    md->B = l->mbs;
    md->T = (int)m->seq;
    md->C = (int)m->hidden;
    md->NH = (int)(m->heads / l->tp);
    md->HS = (int)(m->hidden / m->heads);
    md->F = (int)(m->ffn / l->tp);
    md->V = (int)(m->vocab / l->tp);
    md->sp = l->sp && l->tp > 1;
    md->Ns = md->sp ? md->B * md->T / l->tp : md->B * md->T;
    /* storage: bf16 activations and GEMM weights for precision=bf16 (the
     * trainer asks for fp32 on the CPU backend), fp32 otherwise */
    md->ops = exec_backend();
    md->act_bytes = l->precision == SPEC_PREC_BF16 ? 2 : 4;
    md->act_dt = md->act_bytes == 2 ? COMM_BF16 : COMM_F32;
    if (md->ops->set_storage(md->act_bytes == 2 ? KERN_STORE_BF16 : KERN_STORE_FP32)) {
        snprintf(err, SPEC_ERR_LEN, "train: the %s backend cannot store %s activations", md->ops->name,
                 spec_precision_name(l->precision));
        return -1;
    }

    /* parameters: blocks in order, then extras */
    md->n_p = exec_param_table(m, l, pp_rank, &md->p);
    int nl = EXEC_LAYER_PARAMS;
    int64_t off = md->n_p > 0 ? md->p[md->n_p - 1].offset + md->p[md->n_p - 1].shape.elems : 0;
    md->n_params = off;
    if (md->n_p < 0 || off != cost_shapes_param_elems(m, l, pp_rank)) {
        snprintf(err, SPEC_ERR_LEN, "train: parameter inventory mismatch (%lld vs %lld)", (long long)off,
                 (long long)cost_shapes_param_elems(m, l, pp_rank));
        return -1;
    }
    /* weights: the flat vector, or with ZeRO-3 a window every block's
     * weights are gathered into before it computes, then the extras kept
     * whole (shapes.h cost_shapes_weight_elems) */
    md->zero3 = l->zero >= 3 && l->dp > 1;
    md->weight_elems = cost_shapes_weight_elems(m, l, pp_rank);
    md->params = exec_mem_alloc(sizeof(float) * (size_t)md->weight_elems);
    /* gradients: like the parameters, or with ZeRO-2 and -3 every block's in one
     * window (the trainer reduce-scatters and zeroes it after each block's
     * backward) followed by the extras' (shapes.h cost_shapes_grad_elems) */
    int64_t ext_off = md->n_layers > 0 ? md->p[md->n_layers * EXEC_LAYER_PARAMS].offset : 0;
    int64_t block = md->n_layers > 0 ? cost_shapes_block_param_elems(m, l) : 0;
    md->grad_elems = cost_shapes_grad_elems(m, l, pp_rank);
    md->grads_flat = md->grad_elems == off;
    if (!md->grads_flat && md->grad_elems != block + (off - ext_off)) {
        snprintf(err, SPEC_ERR_LEN, "train: gradient window mismatch (%lld vs %lld)", (long long)md->grad_elems,
                 (long long)(block + off - ext_off));
        return -1;
    }
    md->grads = exec_mem_alloc(sizeof(float) * (size_t)md->grad_elems);
    /* bf16 storage: the GEMMs' copy of the weight slab (cost_layout_bytes' weight16) */
    if (md->act_bytes == 2)
        md->wbf = exec_mem_alloc(sizeof(uint16_t) * (size_t)md->weight_elems);
    if (!md->params || !md->grads || (md->act_bytes == 2 && !md->wbf)) {
        snprintf(err, SPEC_ERR_LEN, "train: cannot allocate %lld parameters", (long long)off);
        return -1;
    }
    int64_t biggest;
    float *host = tensor_host_buffer(md, &biggest);
    if (!host) {
        snprintf(err, SPEC_ERR_LEN, "train: cannot allocate %lld parameters", (long long)biggest);
        return -1;
    }
    for (int i = 0; i < md->n_p; i++) {
        exec_param *p = &md->p[i];
        float *w = md->params + p->offset, *g = md->grads + p->offset;
        /* block L's tensors at their place in the window, the extras after it */
        int64_t in_window = p->layer >= 0 ? p->offset - md->p[(i / nl) * nl].offset : block + (p->offset - ext_off);
        if (!md->grads_flat)
            g = md->grads + in_window;
        if (md->zero3)
            w = md->params + in_window;
        if (!md->zero3 || p->layer < 0) { /* ZeRO-3: a block's weights live in the dp slices (exec_model_init_slice) */
            init_tensor(md, host, p->shape.name, p->layer, &p->shape, seed);
            md->ops->to_device(w, host, (int64_t)sizeof(float) * p->shape.elems);
        }
        if (p->layer >= 0) {
            int L = i / nl, j = i % nl; /* local block: the table lists blocks first, 12 tensors each */
            md->lp[L][j] = w;
            md->lg[L][j] = g;
        } else if (!strcmp(p->shape.name, "wte") || !strcmp(p->shape.name, "wte_head")) {
            md->wte = w, md->dwte = g;
        } else if (!strcmp(p->shape.name, "wpe")) {
            md->wpe = w, md->dwpe = g;
        } else if (!strcmp(p->shape.name, "lnfw")) {
            md->lnfw = w, md->dlnfw = g;
        } else if (!strcmp(p->shape.name, "lnfb")) {
            md->lnfb = w, md->dlnfb = g;
        }
    }
    free(host);
    md->gext = md->grads + (md->grads_flat ? ext_off : block);

    /* activations: one (chunk-)micro-batch of the largest chunk's blocks, then extras */
    shapes_tensor at[16], xt[8], st[32];
    int na = cost_shapes_layer_acts(m, l, l->recompute, at, 16);
    int nx = cost_shapes_extra_acts(m, l, pp_rank, xt, 8);
    md->recompute_full = l->recompute == SPEC_RECOMPUTE_FULL;
    md->flash = l->flash;
    md->recompute_att = l->recompute != SPEC_RECOMPUTE_NONE && !l->flash; /* flash keeps its lse */
    /* every tensor carved at its bytes in the storage (shapes.h
     * cost_shapes_tensor_bytes, which the memory model sums) */
    int ab = md->act_bytes;
    int64_t per_layer = cost_shapes_sum_bytes(at, na, ab);
    md->slot_bytes = per_layer * md->chunk_max + cost_shapes_sum_bytes(xt, nx, ab);
    md->act_slab_bytes = md->slot_bytes * md->n_slots;
    md->acts = exec_mem_alloc((size_t)md->act_slab_bytes);
    int ns = cost_shapes_scratch(m, l, pp_rank, st, 32);
    md->scratch_bytes = cost_shapes_sum_bytes(st, ns, ab);
    md->scratch = exec_mem_alloc((size_t)md->scratch_bytes);
    if (!md->acts || !md->scratch) {
        snprintf(err, SPEC_ERR_LEN, "train: cannot allocate activations (%lld bytes)",
                 (long long)(md->act_slab_bytes + md->scratch_bytes));
        return -1;
    }
    /* block L's place in a slot is its place in its chunk: a slot holds one
     * chunk of one micro-batch at a time */
    int64_t at_off[EXEC_LAYER_ACTS];
    int at_kept[EXEC_LAYER_ACTS] = {0};
    int64_t o = 0;
    for (int j = 0; j < na; o += cost_shapes_tensor_bytes(&at[j], ab), j++) {
        int a = act_slot(at[j].name);
        if (a >= 0)
            at_off[a] = o, at_kept[a] = 1;
    }
    char *acts = md->acts;
    for (int c = 0; c < md->v; c++)
        for (int L = md->chunk_lo[c]; L < md->chunk_lo[c + 1]; L++)
            for (int a = 0; a < EXEC_LAYER_ACTS; a++)
                md->la[L][a] = at_kept[a] ? acts + (int64_t)(L - md->chunk_lo[c]) * per_layer + at_off[a] : NULL;
    char *q = acts + per_layer * md->chunk_max;
    for (int j = 0; j < nx; j++) {
        const char *n = xt[j].name;
        if (!strcmp(n, "lnf_in"))
            md->lnf_in = q;
        else if (!strcmp(n, "lnf"))
            md->lnf = q;
        else if (!strcmp(n, "lnf_mean"))
            md->lnf_mean = (float *)q;
        else
            md->lnf_rstd = (float *)q;
        q += cost_shapes_tensor_bytes(&xt[j], ab);
    }
    q = md->scratch;
    for (int j = 0; j < ns; j++) {
        const char *n = st[j].name;
        void **dst = !strcmp(n, "logits") ? &md->logits : !strcmp(n, "dres") ? &md->dres
                     : !strcmp(n, "xfer") ? &md->xfer : !strcmp(n, "d_ln1") ? &md->d_ln1
                     : !strcmp(n, "d_qkv") ? &md->d_qkv : !strcmp(n, "d_att") ? &md->d_att
                     : !strcmp(n, "d_atty") ? &md->d_atty : !strcmp(n, "d_ln2") ? &md->d_ln2
                     : !strcmp(n, "d_fch") ? &md->d_fch : !strcmp(n, "d_fch_gelu") ? &md->d_fch_gelu : NULL;
        int a = !dst && !strncmp(n, "rc_", 3) ? act_slot(n + 3) : -1;
        if (a >= 0)
            dst = &md->rc[a];
        if (dst)
            *dst = q;
        if (!strcmp(n, "xent_stats"))
            md->xent_stats = (float *)q;
        q += cost_shapes_tensor_bytes(&st[j], ab);
    }
    /* blocks whose activations were dropped read them from the recompute buffers */
    for (int L = 0; L < md->n_layers; L++)
        for (int a = 0; a < EXEC_LAYER_ACTS; a++) {
            md->kept[L][a] = md->la[L][a] != NULL;
            if (!md->la[L][a])
                md->la[L][a] = md->rc[a];
            md->la0[L][a] = md->la[L][a];
        }
    md->lnf0[0] = md->lnf_in, md->lnf0[1] = md->lnf, md->lnf0[2] = md->lnf_mean, md->lnf0[3] = md->lnf_rstd;
    md->logits_slot = -1;
    /* a device backend reads tokens and targets from its own memory; the
     * loss statistics come back to the host (3 values per row) */
    int64_t N = (int64_t)md->B * md->T;
    if (!exec_backend_is_host()) {
        md->d_tokens = md->ops->alloc((int64_t)sizeof(int) * 2 * N);
        if (!md->d_tokens) {
            snprintf(err, SPEC_ERR_LEN, "train: cannot allocate the token buffers (%lld tokens)", (long long)N);
            return -1;
        }
    }
    md->h_stats = malloc(sizeof(float) * (size_t)(3 * N));
    if (!md->h_stats) {
        snprintf(err, SPEC_ERR_LEN, "train: cannot allocate the loss statistics (%lld rows)", (long long)N);
        return -1;
    }
    if (md->sp) { /* the buffer the per-step sp sum of LayerNorm gradients packs into */
        int64_t n_ln = ln_grads_packed(md, md->grads, 0, md->n_params, NULL, 1);
        md->ln_sync = md->ops->alloc((int64_t)sizeof(float) * (n_ln > 0 ? n_ln : 1));
        if (!md->ln_sync) {
            snprintf(err, SPEC_ERR_LEN, "train: cannot allocate %lld LayerNorm gradients", (long long)n_ln);
            return -1;
        }
    }
    return 0;
}

/* tokens and targets where the backend's kernels read them */
static void stage_tokens(exec_model *md, const int **tokens, const int **targets)
{
    if (!md->d_tokens)
        return;
    int64_t N = (int64_t)md->B * md->T;
    if (*tokens) {
        md->ops->to_device(md->d_tokens, *tokens, (int64_t)sizeof(int) * N);
        *tokens = md->d_tokens;
    }
    if (*targets) {
        md->ops->to_device(md->d_tokens + N, *targets, (int64_t)sizeof(int) * N);
        *targets = md->d_tokens + N;
    }
}

/* Point the activation views at slot s (kept tensors move, recompute
 * buffers are shared). */
static void use_slot(exec_model *md, int s)
{
    if (md->slot == s)
        return;
    int64_t off = (int64_t)s * md->slot_bytes;
    for (int L = 0; L < md->n_layers; L++)
        for (int a = 0; a < EXEC_LAYER_ACTS; a++)
            md->la[L][a] = md->kept[L][a] ? (char *)md->la0[L][a] + off : md->la0[L][a];
    if (md->has_head) {
        md->lnf_in = (char *)md->lnf0[0] + off, md->lnf = (char *)md->lnf0[1] + off;
        md->lnf_mean = (float *)((char *)md->lnf0[2] + off), md->lnf_rstd = (float *)((char *)md->lnf0[3] + off);
    }
    md->slot = s;
}

void exec_model_free(exec_model *md)
{
    if (!md)
        return;
    exec_mem_free(md->params, sizeof(float) * (size_t)md->weight_elems);
    exec_mem_free(md->wbf, sizeof(uint16_t) * (size_t)md->weight_elems);
    exec_mem_free(md->grads, sizeof(float) * (size_t)md->grad_elems);
    exec_mem_free(md->acts, (size_t)md->act_slab_bytes);
    exec_mem_free(md->scratch, (size_t)md->scratch_bytes);
    if (md->d_tokens)
        md->ops->free(md->d_tokens);
    if (md->ln_sync)
        md->ops->free(md->ln_sync);
    free(md->h_stats);
    free(md->p);
    memset(md, 0, sizeof *md);
}

int exec_model_init_slice(exec_model *md, uint64_t seed, int64_t lo, int64_t hi, float *dst)
{
    float *host = tensor_host_buffer(md, NULL);
    if (!host)
        return -1;
    for (int i = 0; i < md->n_p; i++) {
        const exec_param *p = &md->p[i];
        int64_t a = p->offset > lo ? p->offset : lo, b = p->offset + p->shape.elems;
        b = b < hi ? b : hi;
        if (b <= a)
            continue;
        init_tensor(md, host, p->shape.name, p->layer, &p->shape, seed);
        md->ops->to_device(dst + (a - lo), host + (a - p->offset), (int64_t)sizeof(float) * (b - a));
    }
    free(host);
    return 0;
}

void exec_model_sync_weights(exec_model *md)
{
    if (md->wbf)
        md->ops->to_bf16(md->wbf, md->params, md->weight_elems);
}

/* The weights a GEMM reads for w (a pointer into the weight slab): the
 * bf16 copy's in bf16 storage, else w itself */
static const void *gemm_w(const exec_model *md, const float *w)
{
    return md->wbf ? (const void *)(md->wbf + (w - md->params)) : (const void *)w;
}

/* ZeRO-3: block L's weights into the window before it computes (and, in
 * bf16 storage, into its bf16 copy) */
static void need_weights(exec_model *md, int L)
{
    if (!md->zero3)
        return;
    const exec_param *first = &md->p[L * EXEC_LAYER_PARAMS], *last = first + EXEC_LAYER_PARAMS - 1;
    int64_t count = last->offset + last->shape.elems - first->offset;
    md->wgather.gather(md->wgather.ctx, md->lp[L][P_LN1W], first->offset, count);
    if (md->wbf)
        md->ops->to_bf16((uint16_t *)gemm_w(md, md->lp[L][P_LN1W]), md->lp[L][P_LN1W], count);
}

void exec_model_zero_grad(exec_model *md)
{
    md->ops->memset0(md->grads, (int64_t)sizeof(float) * md->grad_elems);
}

/* ---- forward ---------------------------------------------------------------------- */

/* Sum of n activation elements over the tensor-parallel group (nothing
 * when tp = 1). */
static void tp_sum(exec_model *md, void *x, int64_t n)
{
    if (md->l.tp > 1)
        comm_allreduce_sum(md->tpg, x, (size_t)n, md->act_dt);
}

/* sp: all-gather the token shards x (Ns rows) into xfer (all B*T rows). */
static const void *sp_gather(exec_model *md, const void *x)
{
    comm_allgather(md->tpg, x, md->xfer, (size_t)md->Ns * md->C, md->act_dt);
    return md->xfer;
}

/* The output of a row-parallel GEMM (partial sums over tp, all B*T rows,
 * in `full`) summed over tp: in place, or with sp reduce-scattered into
 * this rank's token rows `dst` (which must not overlap full). */
static void tp_reduce(exec_model *md, void *full, void *dst)
{
    int64_t N = (int64_t)md->B * md->T, C = md->C;
    if (md->sp)
        comm_reducescatter_sum(md->tpg, full, dst, (size_t)md->Ns * C, md->act_dt);
    else
        tp_sum(md, full, N * C); /* full == dst */
}

#define F32(x) ((float *)(x)) /* a row statistic (fp32 in either storage) */

/* One block forward from a[A_INP] to `out` (Ns rows of C). */
static void block_forward(exec_model *md, int L, void *out)
{
    int B = md->B, T = md->T, C = md->C, N = B * T, Ns = md->Ns, NH = md->NH, HS = md->HS, F = md->F;
    float **w = md->lp[L];
    void **a = md->la[L];
    md->ops->layernorm_forward(a[A_LN1], F32(a[A_LN1_MEAN]), F32(a[A_LN1_RSTD]), a[A_INP], w[P_LN1W], w[P_LN1B], Ns, C);
    const void *x = md->sp ? sp_gather(md, a[A_LN1]) : a[A_LN1];
    md->ops->matmul_forward(a[A_QKV], x, gemm_w(md, w[P_QKVW]), gemm_w(md, w[P_QKVB]), N, C, 3 * NH * HS);
    if (md->flash)
        md->ops->attention_forward_flash(a[A_ATTY], F32(a[A_ATT]), a[A_QKV], B, T, NH, HS); /* A_ATT: lse */
    else
        md->ops->attention_forward(a[A_ATTY], a[A_ATT], a[A_QKV], B, T, NH, HS);
    /* attention projection (row-parallel): partial sums, all-reduce (or
     * reduce-scatter), bias once, residual */
    void *part = md->sp ? md->xfer : a[A_RES2];
    md->ops->matmul_forward(part, a[A_ATTY], gemm_w(md, w[P_ATTPROJW]), NULL, N, NH * HS, C);
    tp_reduce(md, part, a[A_RES2]);
    md->ops->bias_residual(a[A_RES2], w[P_ATTPROJB], a[A_INP], Ns, C);
    md->ops->layernorm_forward(a[A_LN2], F32(a[A_LN2_MEAN]), F32(a[A_LN2_RSTD]), a[A_RES2], w[P_LN2W], w[P_LN2B], Ns,
                               C);
    x = md->sp ? sp_gather(md, a[A_LN2]) : a[A_LN2];
    md->ops->matmul_gelu_forward(a[A_FCH_GELU], a[A_FCH], x, gemm_w(md, w[P_FCW]), gemm_w(md, w[P_FCB]), N, C, F);
    part = md->sp ? md->xfer : out;
    md->ops->matmul_forward(part, a[A_FCH_GELU], gemm_w(md, w[P_FCPROJW]), NULL, N, F, C);
    tp_reduce(md, part, out);
    md->ops->bias_residual(out, w[P_FCPROJB], a[A_RES2], Ns, C);
}

/* The LM head and the cross-entropy statistics of the current slot into
 * the (shared) logits scratch. Returns the mean loss. */
static float head_forward(exec_model *md, const int *targets)
{
    int N = md->B * md->T, C = md->C, V = md->V;
    md->ops->layernorm_forward(md->lnf, md->lnf_mean, md->lnf_rstd, md->lnf_in, md->lnfw, md->lnfb, md->Ns, C);
    const void *x = md->sp ? sp_gather(md, md->lnf) : md->lnf;
    md->ops->matmul_forward(md->logits, x, gemm_w(md, md->wte), NULL, N, C, V);
    /* vocabulary-parallel cross-entropy: this rank holds rows [v0, v0 + V) */
    float *mx = md->xent_stats, *se = mx + N, *tl = se + N;
    int v0 = md->tp_rank * V;
    if (md->l.tp == 1) { /* the whole vocabulary here: one pass over the logits */
        md->ops->xent_forward(mx, se, tl, md->logits, targets, N, V, v0);
    } else { /* the global max first, then the exponentials against it */
        md->ops->xent_rowmax(mx, md->logits, N, V);
        comm_allreduce_max(md->tpg, mx, (size_t)N, COMM_F32);
        md->ops->xent_sumexp(se, md->logits, mx, N, V);
        md->ops->xent_target(tl, md->logits, targets, N, V, v0);
        if (md->l.tp > 1) /* sum of exponentials and the target logit, adjacent (fp32) */
            comm_allreduce_sum(md->tpg, se, 2 * (size_t)N, COMM_F32);
    }
    md->logits_slot = md->slot;
    float *h = md->h_stats; /* max, sum-exp, target logit: adjacent */
    md->ops->to_host(h, mx, (int64_t)sizeof(float) * 3 * N);
    double loss = 0.0;
    for (int i = 0; i < N; i++)
        loss += log((double)h[N + i]) + h[i] - h[2 * N + i];
    return (float)(loss / N);
}

/* Whether chunk c starts the model (embeds) or ends it (LM head). */
static int chunk_embeds(const exec_model *md, int c) { return md->has_embed && c == 0; }
static int chunk_heads(const exec_model *md, int c) { return md->has_head && c == md->v - 1; }

float exec_model_stage_forward(exec_model *md, int chunk, int slot, const int *tokens, const int *targets,
                               const void *in, void *out)
{
    int B = md->B, T = md->T, C = md->C, V = md->V, lo = md->chunk_lo[chunk], hi = md->chunk_lo[chunk + 1];
    int head = chunk_heads(md, chunk);
    use_slot(md, slot);
    stage_tokens(md, &tokens, &targets);
    if (chunk_embeds(md, chunk)) {
        /* vocabulary-parallel: each rank adds its rows; positions once (tp rank 0) */
        void *part = md->sp ? md->xfer : md->la[lo][A_INP];
        md->ops->encoder_forward(part, tokens, md->wte, md->wpe, B, T, C, md->tp_rank * V, V, md->tp_rank == 0);
        tp_reduce(md, part, md->la[lo][A_INP]);
    } else
        md->ops->copy(md->la[lo][A_INP], in, (int64_t)md->act_bytes * md->Ns * C);
    for (int L = lo; L < hi; L++) {
        /* with full recompute the block's intermediates land in the shared
         * recompute buffers; only its output (the next input) is kept */
        void *o = L + 1 < hi ? md->la[L + 1][A_INP] : head ? md->lnf_in : out;
        need_weights(md, L);
        block_forward(md, L, o);
    }
    return head ? head_forward(md, targets) : 0.0f;
}

float exec_model_forward(exec_model *md, const int *tokens, const int *targets)
{
    return exec_model_stage_forward(md, 0, 0, tokens, targets, NULL, NULL);
}

/* ---- backward ------------------------------------------------------------------------ */

void exec_model_stage_backward(exec_model *md, int chunk, int slot, const int *tokens, const int *targets,
                               float grad_scale, const void *dout, void *din, const exec_grad_hook *hook)
{
    int B = md->B, T = md->T, C = md->C, N = B * T, Ns = md->Ns, V = md->V, NH = md->NH, HS = md->HS, F = md->F;
    int lo = md->chunk_lo[chunk], hi = md->chunk_lo[chunk + 1];
    int64_t ab = md->act_bytes;
    use_slot(md, slot);
    stage_tokens(md, &tokens, &targets);
    if (chunk_heads(md, chunk)) {
        /* the logits scratch may hold another micro-batch's (GPipe runs
         * every forward first): recompute this one's */
        if (md->logits_slot != slot)
            head_forward(md, targets);
        float *mx = md->xent_stats, *se = mx + N;
        /* dlogits = (softmax - onehot) / N * grad_scale, in place */
        md->ops->xent_backward_inplace(md->logits, mx, se, targets, N, V, md->tp_rank * V, grad_scale / (float)N);
        md->logits_slot = -1;
        /* LM head (tied to wte): d lnf = dlogits @ wte (partial over the
         * vocabulary shards: all-reduced, or reduce-scattered with sp),
         * dwte += dlogits^T lnf (lnf gathered again with sp) */
        const void *x = md->sp ? sp_gather(md, md->lnf) : md->lnf;
        md->ops->matmul_backward(md->d_ln1, md->dwte, NULL, md->logits, x, gemm_w(md, md->wte), N, C, V, 0.0f);
        void *dlnf = md->sp ? md->xfer : md->d_ln1;
        tp_reduce(md, md->d_ln1, dlnf);
        md->ops->memset0(md->dres, ab * Ns * C);
        md->ops->layernorm_backward(md->dres, md->dlnfw, md->dlnfb, dlnf, md->lnf_in, md->lnfw, md->lnf_mean,
                                    md->lnf_rstd, Ns, C);
    } else {
        md->ops->copy(md->dres, dout, ab * Ns * C);
    }
    for (int L = hi - 1; L >= lo; L--) {
        float **w = md->lp[L], **g = md->lg[L];
        void **a = md->la[L];
        need_weights(md, L); /* ZeRO-3: gathered again (the window held another block since) */
        if (md->recompute_full) {
            /* recompute the whole block from its kept input */
            void *tmp_out = md->d_ln2; /* (B,T,C) scratch, free until fcproj backward */
            block_forward(md, L, tmp_out);
        } else if (md->recompute_att) {
            md->ops->attention_forward(md->d_atty, a[A_ATT], a[A_QKV], B, T, NH, HS); /* att only */
        }
        /* MLP: dres is d(out); out = res2 + fcproj(gelu(fc(ln2(res2)))).
         * With sp the GEMMs see all B*T rows: dres and ln2 are gathered,
         * d ln2 reduce-scattered back to this rank's rows. */
        const void *dy = md->sp ? sp_gather(md, md->dres) : md->dres;
        md->ops->matmul_gelu_backward(md->d_fch, g[P_FCPROJW], g[P_FCPROJB], dy, a[A_FCH_GELU], a[A_FCH],
                                      gemm_w(md, w[P_FCPROJW]), md->d_fch_gelu, N, F, C);
        const void *x = md->sp ? sp_gather(md, a[A_LN2]) : a[A_LN2];
        md->ops->matmul_backward(md->d_ln2, g[P_FCW], g[P_FCB], md->d_fch, x, gemm_w(md, w[P_FCW]), N, C, F, 0.0f);
        void *dx = md->sp ? md->xfer : md->d_ln2;
        tp_reduce(md, md->d_ln2, dx); /* column-parallel: input gradient summed */
        md->ops->layernorm_backward(md->dres, g[P_LN2W], g[P_LN2B], dx, a[A_RES2], w[P_LN2W], F32(a[A_LN2_MEAN]),
                                    F32(a[A_LN2_RSTD]), Ns, C);
        /* attention: res2 = inp + attproj(attn(qkv(ln1(inp)))) */
        dy = md->sp ? sp_gather(md, md->dres) : md->dres;
        md->ops->matmul_backward(md->d_atty, g[P_ATTPROJW], g[P_ATTPROJB], dy, a[A_ATTY], gemm_w(md, w[P_ATTPROJW]),
                                 N, NH * HS, C, 0.0f);
        if (md->flash)
            md->ops->attention_backward_flash(md->d_qkv, md->d_atty, a[A_QKV], a[A_ATTY], F32(a[A_ATT]), B, T, NH, HS);
        else
            md->ops->attention_backward(md->d_qkv, md->d_att, md->d_atty, a[A_QKV], a[A_ATT], B, T, NH, HS);
        x = md->sp ? sp_gather(md, a[A_LN1]) : a[A_LN1];
        md->ops->matmul_backward(md->d_ln1, g[P_QKVW], g[P_QKVB], md->d_qkv, x, gemm_w(md, w[P_QKVW]), N, C,
                                 3 * NH * HS, 0.0f);
        dx = md->sp ? md->xfer : md->d_ln1;
        tp_reduce(md, md->d_ln1, dx);
        md->ops->layernorm_backward(md->dres, g[P_LN1W], g[P_LN1B], dx, a[A_INP], w[P_LN1W], F32(a[A_LN1_MEAN]),
                                    F32(a[A_LN1_RSTD]), Ns, C);
        if (hook) { /* this block's 12 tensors are contiguous in the slab */
            const exec_param *first = &md->p[L * EXEC_LAYER_PARAMS], *last = first + EXEC_LAYER_PARAMS - 1;
            hook->ready(hook->ctx, first->offset, last->offset + last->shape.elems - first->offset);
        }
    }
    if (chunk_embeds(md, chunk)) { /* dres (gathered with sp) is the same on every tp rank: each keeps its wpe gradient whole */
        const void *d = md->sp ? sp_gather(md, md->dres) : md->dres;
        md->ops->encoder_backward(md->dwte, md->dwpe, d, tokens, B, T, C, md->tp_rank * V, V, 1);
    } else {
        md->ops->copy(din, md->dres, ab * Ns * C);
    }
    if (hook && chunk == 0) { /* the extras' last gradient (chunk v - 1's head ran its backward first) */
        int64_t off = md->p[md->n_layers * EXEC_LAYER_PARAMS].offset;
        hook->ready(hook->ctx, off, md->n_params - off);
    }
}

void exec_model_backward(exec_model *md, const int *tokens, const int *targets, float grad_scale,
                         const exec_grad_hook *hook)
{
    exec_model_stage_backward(md, 0, 0, tokens, targets, grad_scale, NULL, NULL, hook);
}

/* Copy the LayerNorm gradients inside [lo, hi) between grads and a packed
 * buffer (pack: grads -> buf, else buf -> grads), both in the backend's
 * memory; buf NULL only counts. */
static int64_t ln_grads_packed(const exec_model *md, float *grads, int64_t lo, int64_t hi, float *buf, int pack)
{
    int64_t k = 0;
    for (int i = 0; i < md->n_p; i++) {
        const exec_param *q = &md->p[i];
        const char *nm = q->shape.name;
        if (strncmp(nm, "ln1", 3) && strncmp(nm, "ln2", 3) && strncmp(nm, "lnf", 3))
            continue;
        int64_t a = q->offset > lo ? q->offset : lo, b = q->offset + q->shape.elems < hi ? q->offset + q->shape.elems : hi;
        if (b <= a)
            continue;
        if (buf) {
            int64_t bytes = (int64_t)sizeof(float) * (b - a);
            if (pack)
                md->ops->copy(buf + k, grads + a, bytes);
            else
                md->ops->copy(grads + a, buf + k, bytes);
        }
        k += b - a;
    }
    return k;
}

void exec_model_sp_sync_grads(exec_model *md, float *grads, int64_t lo, int64_t hi)
{
    if (!md->sp)
        return;
    int64_t n = ln_grads_packed(md, grads, lo, hi, NULL, 1);
    if (n == 0) /* the same on every tp rank: they hold the same ranges */
        return;
    float *buf = md->ln_sync; /* holds every LayerNorm gradient of the rank: n fits */
    ln_grads_packed(md, grads, lo, hi, buf, 1);
    comm_allreduce_sum(md->tpg, buf, (size_t)n, COMM_F32);
    ln_grads_packed(md, grads, lo, hi, buf, 0);
}

/* ---- dumps for the independent reference ------------------------------------------------ */

int exec_model_dump(const exec_model *md, const char *dir, const char *prefix, int grads)
{
    if (grads && !md->grads_flat)
        return -1; /* ZeRO-2: no rank holds its whole gradient */
    /* with tp > 1 every rank of the tp group calls this: shards are gathered
     * and tp rank 0 writes whole tensors, in the single-rank layout */
    int tp = md->l.tp, writer = md->tp_rank == 0;
    if (writer)
        mkdir(dir, 0755);
    char path[4096];
    /* every pipeline stage writes its tensors; the manifest names stage 0's */
    snprintf(path, sizeof path, md->pp_rank == 0 && writer ? "%s/%smanifest.txt" : "/dev/null", dir, prefix);
    FILE *man = fopen(path, "w");
    if (!man)
        return -1;
    int rc = 0;
    for (int i = 0; i < md->n_p && rc == 0; i++) {
        const exec_param *p = &md->p[i];
        char name[96];
        if (p->layer >= 0)
            snprintf(name, sizeof name, "%s.%d", p->shape.name, p->layer);
        else
            snprintf(name, sizeof name, "%s", p->shape.name);
        int64_t n = p->shape.elems;
        float *mine = malloc(sizeof(float) * (size_t)n); /* this rank's shard, on the host */
        md->ops->to_host(mine, (grads ? md->grads : md->params) + p->offset, (int64_t)sizeof(float) * n);
        const float *src = mine;
        float *full = NULL;
        if (tp > 1 && exec_param_tp_sharded(p->shape.name)) {
            float *all = malloc(sizeof(float) * (size_t)(n * tp));
            comm_allgather(md->tpg, src, all, (size_t)n, COMM_F32); /* host buffers: never staged */
            full = malloc(sizeof(float) * (size_t)(n * tp));
            for (int r = 0; r < tp; r++)
                for (int64_t k = 0; k < n; k++)
                    full[global_index_of(md, r, p->shape.name, &p->shape, k)] = all[(int64_t)r * n + k];
            free(all);
            src = full;
            n *= tp;
        }
        if (writer) {
            fprintf(man, "%s", name);
            int64_t whole[2]; /* the whole tensor's shape */
            exec_param_global_shape(p->shape.name, &p->shape, tp, whole);
            for (int d = 0; d < p->shape.ndim; d++)
                fprintf(man, " %lld", (long long)whole[d]);
            fprintf(man, "\n");
            snprintf(path, sizeof path, "%s/%s%s.bin", dir, prefix, name);
            FILE *f = fopen(path, "wb");
            if (!f || fwrite(src, sizeof(float), (size_t)n, f) != (size_t)n)
                rc = -1;
            if (f)
                fclose(f);
        }
        free(full);
        free(mine);
    }
    fclose(man);
    return rc;
}
