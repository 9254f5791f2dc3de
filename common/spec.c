/* spec.c — presets, parsing and checks of model / cluster / layout specs
 * (contract in spec.h).
 *
 * Vocabulary sizes: GPT-2 and GPT-3 presets use the tokenizer's 50257
 * entries padded to 50304 (a multiple of 128, as llm.c and Megatron-LM pad
 * them, so that the vocabulary divides by tp up to 8 — Megatron pads to a
 * multiple of 128·tp); the Megatron-LM papers' large models use 51200.
 */
#include "spec.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ini.h>

/* ---- presets -------------------------------------------------------------- */

typedef struct {
    spec_model m;
    const char *source;
} model_preset;

#define GPT2_SRC "Radford et al. 2019 (GPT-2), vocab 50257 padded to 50304"
#define GPT3_SRC "Brown et al. 2020 (GPT-3) Table 2.1, vocab 50257 padded to 50304"

static const model_preset MODEL_PRESETS[] = {
    {{"tiny", 4, 64, 4, 256, 64, 32}, "triad test model"},
    {{"gpt2-124m", 12, 768, 12, 3072, 50304, 1024}, GPT2_SRC},
    {{"gpt2-350m", 24, 1024, 16, 4096, 50304, 1024}, GPT2_SRC},
    {{"gpt2-774m", 36, 1280, 20, 5120, 50304, 1024}, GPT2_SRC},
    {{"gpt2-1558m", 48, 1600, 25, 6400, 50304, 1024}, GPT2_SRC},
    {{"gpt3-1.3b", 24, 2048, 16, 8192, 50304, 2048}, GPT3_SRC},
    {{"gpt3-6.7b", 32, 4096, 32, 16384, 50304, 2048}, GPT3_SRC},
    /* The GPT-3 paper lists d_model 5140 for 13B, which 40 heads do not
     * divide; 5120 (head size 128) is the shape every reproduction uses. */
    {{"gpt3-13b", 40, 5120, 40, 20480, 50304, 2048}, GPT3_SRC " (d_model 5140 in the paper read as 5120)"},
    {{"gpt3-175b", 96, 12288, 96, 49152, 51200, 2048},
     "Brown et al. 2020; vocab 51200 as in Narayanan et al. 2021 Table 1"},
    {{"mtnlg-530b", 105, 20480, 128, 81920, 51200, 2048},
     "Smith et al. 2022 (MT-NLG 530B); Narayanan et al. 2021 Table 1 (529.6B)"},
    {{"megatron-1t", 128, 25600, 160, 102400, 51200, 2048}, "Narayanan et al. 2021 Table 1 (1008B)"},
};
#define N_MODEL_PRESETS ((int)(sizeof MODEL_PRESETS / sizeof MODEL_PRESETS[0]))

typedef struct {
    double mem_gb, peak_tflops, hbm_gbps;
} gpu_sheet;

/* Datasheet numbers (tests/data/hardware.csv has the sources). The CPU row is
 * a placeholder, overridden by a measured profile. */
static const gpu_sheet GPU_SHEETS[SPEC_GPU_COUNT] = {
    [SPEC_GPU_A100_40GB] = {40.0, 312.0, 1555.0},
    [SPEC_GPU_A100_80GB] = {80.0, 312.0, 2039.0},
    [SPEC_GPU_H100_80GB] = {80.0, 989.0, 3350.0},
    [SPEC_GPU_H200_141GB] = {141.0, 989.0, 4800.0},
    [SPEC_GPU_CPU] = {8.0, 0.1, 20.0},
};

static const char *GPU_NAMES[SPEC_GPU_COUNT] = {"a100-40gb", "a100-80gb", "h100-80gb", "h200-141gb",
                                                "cpu"};

typedef struct {
    spec_cluster c;
    const char *source;
} cluster_preset;

/* Latencies: NVLink/NVSwitch small-message latency of a few microseconds and
 * InfiniBand HDR/NDR end-to-end MPI latency of ~5 us including the software
 * stack (nccl-tests small-message all-reduce times on DGX systems). */
static const cluster_preset CLUSTER_PRESETS[] = {
    {{"dgx-a100-40gb", SPEC_GPU_A100_40GB, 1, 8, 300.0, 25.0, 3.0, 5.0, 40.0, 312.0, 1555.0},
     "DGX A100: NVLink3 300 GB/s/dir, 8x200 Gb/s HDR IB (25 GB/s/GPU), A100 datasheet"},
    {{"dgx-a100-80gb", SPEC_GPU_A100_80GB, 1, 8, 300.0, 25.0, 3.0, 5.0, 80.0, 312.0, 2039.0},
     "DGX A100 (Selene, Narayanan et al. 2021 Sec 5): NVLink3 300 GB/s/dir, 25 GB/s/GPU IB"},
    {{"dgx-h100-80gb", SPEC_GPU_H100_80GB, 1, 8, 450.0, 50.0, 3.0, 5.0, 80.0, 989.0, 3350.0},
     "DGX H100: NVLink4 450 GB/s/dir, 8x400 Gb/s NDR IB (50 GB/s/GPU), H100 SXM datasheet"},
    {{"dgx-h200-141gb", SPEC_GPU_H200_141GB, 1, 8, 450.0, 50.0, 3.0, 5.0, 141.0, 989.0, 4800.0},
     "DGX H200: as DGX H100 with 141 GB HBM3e at 4.8 TB/s (H200 SXM datasheet)"},
    {{"cpu", SPEC_GPU_CPU, 1, 2, 5.0, 5.0, 1.0, 1.0, 8.0, 0.1, 20.0},
     "this machine's cores as ranks; numbers are placeholders a measured profile replaces"},
};
#define N_CLUSTER_PRESETS ((int)(sizeof CLUSTER_PRESETS / sizeof CLUSTER_PRESETS[0]))

int spec_model_preset_count(void) { return N_MODEL_PRESETS; }
const spec_model *spec_model_preset_at(int i)
{
    return i >= 0 && i < N_MODEL_PRESETS ? &MODEL_PRESETS[i].m : NULL;
}
const char *spec_model_preset_source(int i)
{
    return i >= 0 && i < N_MODEL_PRESETS ? MODEL_PRESETS[i].source : NULL;
}
int spec_cluster_preset_count(void) { return N_CLUSTER_PRESETS; }
const spec_cluster *spec_cluster_preset_at(int i)
{
    return i >= 0 && i < N_CLUSTER_PRESETS ? &CLUSTER_PRESETS[i].c : NULL;
}
const char *spec_cluster_preset_source(int i)
{
    return i >= 0 && i < N_CLUSTER_PRESETS ? CLUSTER_PRESETS[i].source : NULL;
}

/* The `cpu` preset: one rank per online core, memory shared among them. */
static void cpu_cluster_fill(spec_cluster *c)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
    c->gpus_per_node = n > 0 ? (int)n : 1;
    if (pages > 0 && psz > 0)
        c->mem_gb = (double)pages * (double)psz / 1e9 / c->gpus_per_node;
}

void spec_cluster_apply_gpu(spec_cluster *c, spec_gpu_kind gpu)
{
    c->gpu = gpu;
    c->mem_gb = GPU_SHEETS[gpu].mem_gb;
    c->peak_tflops = GPU_SHEETS[gpu].peak_tflops;
    c->hbm_gbps = GPU_SHEETS[gpu].hbm_gbps;
}

void spec_layout_default(spec_layout *l)
{
    memset(l, 0, sizeof *l);
    l->tp = l->pp = l->dp = 1;
    l->mbs = 1;
    l->schedule = SPEC_SCHED_1F1B;
    l->v = 1;
    l->recompute = SPEC_RECOMPUTE_NONE;
    l->precision = SPEC_PREC_BF16;
}

/* ---- names ------------------------------------------------------------------ */

static const char *SCHED_NAMES[] = {"gpipe", "1f1b", "interleaved"};
static const char *RC_NAMES[] = {"none", "selective", "full"};
static const char *PREC_NAMES[] = {"bf16", "fp32"};

static int name_index(const char *s, const char *const *names, int n)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(s, names[i]))
            return i;
    return -1;
}

const char *spec_gpu_name(spec_gpu_kind g) { return g < SPEC_GPU_COUNT ? GPU_NAMES[g] : "?"; }
const char *spec_schedule_name(spec_schedule s) { return s <= SPEC_SCHED_INTERLEAVED ? SCHED_NAMES[s] : "?"; }
const char *spec_recompute_name(spec_recompute r) { return r <= SPEC_RECOMPUTE_FULL ? RC_NAMES[r] : "?"; }
const char *spec_precision_name(spec_precision p) { return p <= SPEC_PREC_FP32 ? PREC_NAMES[p] : "?"; }
const char *spec_attn_name(int flash) { return flash ? "flash" : "explicit"; }
int spec_gpu_from_name(const char *s) { return name_index(s, GPU_NAMES, SPEC_GPU_COUNT); }
int spec_schedule_from_name(const char *s) { return name_index(s, SCHED_NAMES, 3); }
int spec_recompute_from_name(const char *s) { return name_index(s, RC_NAMES, 3); }
int spec_precision_from_name(const char *s) { return name_index(s, PREC_NAMES, 2); }

/* ---- numbers ---------------------------------------------------------------- */

/* Strict integer: the whole string, no sign games, within [lo, hi]. */
static int parse_int(const char *what, const char *key, const char *v, int64_t lo, int64_t hi,
                     int64_t *out, char err[SPEC_ERR_LEN])
{
    char *end = NULL;
    errno = 0;
    long long x = (*v && !isspace((unsigned char)*v)) ? strtoll(v, &end, 10) : 0;
    if (!*v || isspace((unsigned char)*v) || errno || !end || *end || x < lo || x > hi) {
        if (lo >= 1)
            snprintf(err, SPEC_ERR_LEN, "%s: %s='%s' is not a positive integer%s", what, key, v,
                     hi < INT64_MAX ? " in range" : "");
        else
            snprintf(err, SPEC_ERR_LEN, "%s: %s='%s' is not an integer in %lld..%lld", what, key, v,
                     (long long)lo, (long long)hi);
        if (lo >= 1 && hi < INT64_MAX) {
            size_t n = strlen(err);
            snprintf(err + n, SPEC_ERR_LEN - n, " %lld..%lld", (long long)lo, (long long)hi);
        }
        return SPEC_ERR;
    }
    *out = x;
    return SPEC_OK;
}

/* Strict positive finite real. */
static int parse_pos_real(const char *what, const char *key, const char *v, double *out,
                          char err[SPEC_ERR_LEN])
{
    char *end = NULL;
    errno = 0;
    double x = (*v && !isspace((unsigned char)*v)) ? strtod(v, &end) : NAN;
    if (!*v || errno || !end || *end || !isfinite(x) || !(x > 0)) {
        snprintf(err, SPEC_ERR_LEN, "%s: %s='%s' is not a positive number", what, key, v);
        return SPEC_ERR;
    }
    *out = x;
    return SPEC_OK;
}

/* Largest size accepted for a model dimension: keeps every product of two
 * of them (and the FLOP counts) far from int64 overflow. */
#define SPEC_DIM_MAX ((int64_t)1 << 24)

/* ---- setters ------------------------------------------------------------------ */

int spec_model_set(spec_model *m, const char *key, const char *value, char err[SPEC_ERR_LEN])
{
    struct {
        const char *k;
        int64_t *p;
    } f[] = {{"layers", &m->layers}, {"hidden", &m->hidden}, {"heads", &m->heads},
             {"ffn", &m->ffn},       {"vocab", &m->vocab},   {"seq", &m->seq}};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        if (!strcmp(key, f[i].k))
            return parse_int("model", key, value, 1, SPEC_DIM_MAX, f[i].p, err);
    if (!strcmp(key, "name")) {
        snprintf(m->name, sizeof m->name, "%s", value);
        return SPEC_OK;
    }
    snprintf(err, SPEC_ERR_LEN,
             "model: unknown key '%s' (keys: layers, hidden, heads, ffn, vocab, seq)", key);
    return SPEC_ERR;
}

int spec_cluster_set(spec_cluster *c, const char *key, const char *value, char err[SPEC_ERR_LEN])
{
    int64_t iv;
    if (!strcmp(key, "gpu")) {
        int g = spec_gpu_from_name(value);
        if (g < 0) {
            snprintf(err, SPEC_ERR_LEN,
                     "cluster: gpu='%s' is not one of a100-40gb, a100-80gb, h100-80gb, h200-141gb, cpu",
                     value);
            return SPEC_ERR;
        }
        spec_cluster_apply_gpu(c, (spec_gpu_kind)g);
        if (g == SPEC_GPU_CPU)
            cpu_cluster_fill(c);
        return SPEC_OK;
    }
    if (!strcmp(key, "nodes") || !strcmp(key, "gpus_per_node")) {
        if (parse_int("cluster", key, value, 1, 1 << 20, &iv, err))
            return SPEC_ERR;
        *(!strcmp(key, "nodes") ? &c->nodes : &c->gpus_per_node) = (int)iv;
        return SPEC_OK;
    }
    struct {
        const char *k;
        double *p;
    } f[] = {{"intra_gbps", &c->intra_gbps},     {"inter_gbps", &c->inter_gbps},
             {"intra_lat_us", &c->intra_lat_us}, {"inter_lat_us", &c->inter_lat_us},
             {"mem_gb", &c->mem_gb},             {"peak_tflops", &c->peak_tflops},
             {"hbm_gbps", &c->hbm_gbps}};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        if (!strcmp(key, f[i].k))
            return parse_pos_real("cluster", key, value, f[i].p, err);
    if (!strcmp(key, "name")) {
        snprintf(c->name, sizeof c->name, "%s", value);
        return SPEC_OK;
    }
    snprintf(err, SPEC_ERR_LEN,
             "cluster: unknown key '%s' (keys: gpu, nodes, gpus_per_node, intra_gbps, inter_gbps, "
             "intra_lat_us, inter_lat_us, mem_gb, peak_tflops, hbm_gbps)",
             key);
    return SPEC_ERR;
}

static int parse_stages(spec_layout *l, const char *value, char err[SPEC_ERR_LEN])
{
    int n = 0;
    const char *p = value;
    while (*p) {
        char tok[32];
        size_t k = strcspn(p, ":");
        if (k == 0 || k >= sizeof tok || n >= SPEC_MAX_PP) {
            snprintf(err, SPEC_ERR_LEN, "layout: stages='%s' is not a list like 4:4:4:4 (at most %d)",
                     value, SPEC_MAX_PP);
            return SPEC_ERR;
        }
        memcpy(tok, p, k);
        tok[k] = 0;
        int64_t x;
        if (parse_int("layout", "stages", tok, 1, SPEC_DIM_MAX, &x, err))
            return SPEC_ERR;
        l->stage_layers[n++] = (int)x;
        p += k;
        if (*p == ':') {
            p++;
            if (!*p) {
                snprintf(err, SPEC_ERR_LEN, "layout: stages='%s' ends with ':'", value);
                return SPEC_ERR;
            }
        }
    }
    if (n == 0) {
        snprintf(err, SPEC_ERR_LEN, "layout: stages='%s' is empty", value);
        return SPEC_ERR;
    }
    l->n_stage_layers = n;
    return SPEC_OK;
}

int spec_layout_set(spec_layout *l, const char *key, const char *value, char err[SPEC_ERR_LEN])
{
    int64_t iv;
    struct {
        const char *k;
        int *p;
        int64_t lo, hi;
    } f[] = {{"tp", &l->tp, 1, 1 << 16}, {"pp", &l->pp, 1, SPEC_MAX_PP}, {"dp", &l->dp, 1, 1 << 24},
             {"mbs", &l->mbs, 1, 1 << 20}, {"v", &l->v, 1, 64},           {"zero", &l->zero, 0, 3},
             {"sp", &l->sp, 0, 1}};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        if (!strcmp(key, f[i].k)) {
            if (parse_int("layout", key, value, f[i].lo, f[i].hi, &iv, err))
                return SPEC_ERR;
            *f[i].p = (int)iv;
            return SPEC_OK;
        }
    if (!strcmp(key, "schedule")) {
        int s = spec_schedule_from_name(value);
        if (s < 0) {
            snprintf(err, SPEC_ERR_LEN, "layout: schedule='%s' is not one of gpipe, 1f1b, interleaved",
                     value);
            return SPEC_ERR;
        }
        l->schedule = (spec_schedule)s;
        return SPEC_OK;
    }
    if (!strcmp(key, "recompute")) {
        int r = spec_recompute_from_name(value);
        if (r < 0) {
            snprintf(err, SPEC_ERR_LEN, "layout: recompute='%s' is not one of none, selective, full",
                     value);
            return SPEC_ERR;
        }
        l->recompute = (spec_recompute)r;
        return SPEC_OK;
    }
    if (!strcmp(key, "precision")) {
        int p = spec_precision_from_name(value);
        if (p < 0) {
            snprintf(err, SPEC_ERR_LEN, "layout: precision='%s' is not one of bf16, fp32", value);
            return SPEC_ERR;
        }
        l->precision = (spec_precision)p;
        return SPEC_OK;
    }
    if (!strcmp(key, "attn")) {
        if (strcmp(value, spec_attn_name(0)) && strcmp(value, spec_attn_name(1))) {
            snprintf(err, SPEC_ERR_LEN, "layout: attn='%s' is not one of explicit, flash", value);
            return SPEC_ERR;
        }
        l->flash = !strcmp(value, spec_attn_name(1));
        return SPEC_OK;
    }
    if (!strcmp(key, "stages"))
        return parse_stages(l, value, err);
    snprintf(err, SPEC_ERR_LEN,
             "layout: unknown key '%s' (keys: tp, pp, dp, mbs, schedule, v, recompute, zero, sp, "
             "precision, attn, stages)",
             key);
    return SPEC_ERR;
}

/* ---- generic parsing: preset[,k=v...] | k=v,... | file.ini ------------------ */

typedef int (*setter_fn)(void *obj, const char *key, const char *value, char err[SPEC_ERR_LEN]);

typedef struct {
    void *obj;
    setter_fn set;
    const char *what;
    const char *path;
    char *err;
    int failed;
} ini_ctx;

static int ini_cb(void *user, const char *section, const char *name, const char *value)
{
    (void)section;
    ini_ctx *c = user;
    if (c->failed)
        return 0;
    if (c->set(c->obj, name, value, c->err)) {
        c->failed = 1;
        return 0;
    }
    return 1;
}

static int is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

static int parse_ini_file(const char *path, void *obj, setter_fn set, const char *what,
                          char err[SPEC_ERR_LEN])
{
    ini_ctx c = {obj, set, what, path, err, 0};
    err[0] = 0;
    int rc = ini_parse(path, ini_cb, &c);
    if (rc == -1) {
        snprintf(err, SPEC_ERR_LEN, "%s: cannot open file '%s'", what, path);
        return SPEC_ERR;
    }
    if (rc != 0) {
        char inner[SPEC_ERR_LEN];
        snprintf(inner, sizeof inner, "%s", err[0] ? err : "malformed line");
        snprintf(err, SPEC_ERR_LEN, "%s:%d: %s", path, rc, inner);
        return SPEC_ERR;
    }
    return SPEC_OK;
}

/* Applies "k=v,k=v" (items after the first when skip_first) to obj. */
static int parse_pairs(const char *text, void *obj, setter_fn set, const char *what,
                       int skip_first, char err[SPEC_ERR_LEN])
{
    char *buf = strdup(text);
    if (!buf) {
        snprintf(err, SPEC_ERR_LEN, "%s: out of memory", what);
        return SPEC_ERR;
    }
    int rc = SPEC_OK, idx = 0;
    char *save = NULL;
    for (char *item = strtok_r(buf, ",", &save); item; item = strtok_r(NULL, ",", &save), idx++) {
        if (skip_first && idx == 0)
            continue;
        while (isspace((unsigned char)*item))
            item++;
        char *eq = strchr(item, '=');
        if (!eq || eq == item) {
            snprintf(err, SPEC_ERR_LEN, "%s: '%s' is not key=value", what, item);
            rc = SPEC_ERR;
            break;
        }
        *eq = 0;
        char *end = eq - 1;
        while (end > item && isspace((unsigned char)*end))
            *end-- = 0;
        char *val = eq + 1;
        while (isspace((unsigned char)*val))
            val++;
        size_t vl = strlen(val);
        while (vl > 0 && isspace((unsigned char)val[vl - 1]))
            val[--vl] = 0;
        if (set(obj, item, val, err)) {
            rc = SPEC_ERR;
            break;
        }
    }
    free(buf);
    return rc;
}

static int model_set_cb(void *o, const char *k, const char *v, char e[SPEC_ERR_LEN])
{
    return spec_model_set(o, k, v, e);
}
static int cluster_set_cb(void *o, const char *k, const char *v, char e[SPEC_ERR_LEN])
{
    return spec_cluster_set(o, k, v, e);
}
static int layout_set_cb(void *o, const char *k, const char *v, char e[SPEC_ERR_LEN])
{
    return spec_layout_set(o, k, v, e);
}

/* First comma-separated item, if it has no '=': the preset name. */
static int first_item(const char *text, char *name, size_t len)
{
    size_t k = strcspn(text, ",");
    if (memchr(text, '=', k))
        return 0;
    if (k >= len)
        k = len - 1;
    memcpy(name, text, k);
    name[k] = 0;
    return 1;
}

static int model_parse(const char *text, spec_model *out, char err[SPEC_ERR_LEN])
{
    memset(out, 0, sizeof *out);
    if (!text || !*text) {
        snprintf(err, SPEC_ERR_LEN, "model: empty spec (give a preset, key=value pairs or an INI file)");
        return SPEC_ERR;
    }
    if (is_file(text) || ends_with(text, ".ini")) {
        snprintf(out->name, sizeof out->name, "%s", text);
        if (parse_ini_file(text, out, model_set_cb, "model", err))
            return SPEC_ERR;
    } else {
        char name[SPEC_NAME_LEN * 2];
        int has_preset = first_item(text, name, sizeof name);
        if (has_preset) {
            int found = -1;
            for (int i = 0; i < N_MODEL_PRESETS; i++)
                if (!strcmp(name, MODEL_PRESETS[i].m.name))
                    found = i;
            if (found < 0) {
                snprintf(err, SPEC_ERR_LEN, "model: unknown preset '%s' (see triad presets)", name);
                return SPEC_ERR;
            }
            *out = MODEL_PRESETS[found].m;
        } else {
            snprintf(out->name, sizeof out->name, "custom");
        }
        if (parse_pairs(text, out, model_set_cb, "model", has_preset, err))
            return SPEC_ERR;
        if (has_preset && strchr(text, ','))
            snprintf(out->name, sizeof out->name, "%.*s", (int)sizeof out->name - 1, text);
    }
    if (out->ffn == 0 && out->hidden > 0)
        out->ffn = 4 * out->hidden;
    return spec_model_check(out, err);
}

static int cluster_parse(const char *text, spec_cluster *out, char err[SPEC_ERR_LEN])
{
    memset(out, 0, sizeof *out);
    if (!text || !*text) {
        snprintf(err, SPEC_ERR_LEN, "cluster: empty spec (give a preset, key=value pairs or an INI file)");
        return SPEC_ERR;
    }
    /* defaults for a custom cluster: one node of 8 A100-80GB-like devices */
    *out = CLUSTER_PRESETS[1].c;
    snprintf(out->name, sizeof out->name, "custom");
    if (is_file(text) || ends_with(text, ".ini")) {
        snprintf(out->name, sizeof out->name, "%s", text);
        if (parse_ini_file(text, out, cluster_set_cb, "cluster", err))
            return SPEC_ERR;
    } else {
        char name[SPEC_NAME_LEN * 2];
        int has_preset = first_item(text, name, sizeof name);
        if (has_preset) {
            int found = -1;
            for (int i = 0; i < N_CLUSTER_PRESETS; i++)
                if (!strcmp(name, CLUSTER_PRESETS[i].c.name))
                    found = i;
            if (found < 0) {
                snprintf(err, SPEC_ERR_LEN, "cluster: unknown preset '%s' (see triad presets)", name);
                return SPEC_ERR;
            }
            *out = CLUSTER_PRESETS[found].c;
            if (out->gpu == SPEC_GPU_CPU)
                cpu_cluster_fill(out);
        }
        if (parse_pairs(text, out, cluster_set_cb, "cluster", has_preset, err))
            return SPEC_ERR;
    }
    return spec_cluster_check(out, err);
}

static int layout_parse(const char *text, spec_layout *out, char err[SPEC_ERR_LEN])
{
    spec_layout_default(out);
    if (!text) {
        snprintf(err, SPEC_ERR_LEN, "layout: empty spec");
        return SPEC_ERR;
    }
    if (!*text)
        return SPEC_OK; /* all defaults */
    if (is_file(text) || ends_with(text, ".ini"))
        return parse_ini_file(text, out, layout_set_cb, "layout", err);
    return parse_pairs(text, out, layout_set_cb, "layout", 0, err);
}

/* Error lines echo the user's text; control characters (a newline inside a
 * value) become '?' so the message stays one line. */
static int one_line(int rc, char err[SPEC_ERR_LEN])
{
    if (rc != SPEC_OK)
        for (char *c = err; *c; c++)
            if ((unsigned char)*c < 0x20 || *c == 0x7f)
                *c = '?';
    return rc;
}

int spec_model_parse(const char *text, spec_model *out, char err[SPEC_ERR_LEN])
{
    return one_line(model_parse(text, out, err), err);
}
int spec_cluster_parse(const char *text, spec_cluster *out, char err[SPEC_ERR_LEN])
{
    return one_line(cluster_parse(text, out, err), err);
}
int spec_layout_parse(const char *text, spec_layout *out, char err[SPEC_ERR_LEN])
{
    return one_line(layout_parse(text, out, err), err);
}

/* ---- checks ------------------------------------------------------------------- */

int spec_model_check(const spec_model *m, char err[SPEC_ERR_LEN])
{
    struct {
        const char *k;
        int64_t v;
    } f[] = {{"layers", m->layers}, {"hidden", m->hidden}, {"heads", m->heads},
             {"ffn", m->ffn},       {"vocab", m->vocab},   {"seq", m->seq}};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        if (f[i].v <= 0) {
            snprintf(err, SPEC_ERR_LEN, "model: %s is missing or not positive (%lld)", f[i].k,
                     (long long)f[i].v);
            return SPEC_ERR;
        }
    if (m->hidden % m->heads) {
        snprintf(err, SPEC_ERR_LEN, "model: heads=%lld does not divide hidden=%lld",
                 (long long)m->heads, (long long)m->hidden);
        return SPEC_ERR;
    }
    return SPEC_OK;
}

int spec_cluster_check(const spec_cluster *c, char err[SPEC_ERR_LEN])
{
    if (c->nodes < 1 || c->gpus_per_node < 1) {
        snprintf(err, SPEC_ERR_LEN, "cluster: nodes=%d and gpus_per_node=%d must be positive", c->nodes,
                 c->gpus_per_node);
        return SPEC_ERR;
    }
    struct {
        const char *k;
        double v;
    } f[] = {{"intra_gbps", c->intra_gbps}, {"inter_gbps", c->inter_gbps},
             {"mem_gb", c->mem_gb},         {"peak_tflops", c->peak_tflops},
             {"hbm_gbps", c->hbm_gbps},     {"intra_lat_us", c->intra_lat_us},
             {"inter_lat_us", c->inter_lat_us}};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        if (!(f[i].v > 0) || !isfinite(f[i].v)) {
            snprintf(err, SPEC_ERR_LEN, "cluster: %s=%g must be a positive number", f[i].k, f[i].v);
            return SPEC_ERR;
        }
    return SPEC_OK;
}

int spec_layout_check(const spec_layout *l, const spec_model *m, int64_t global_batch, int gpus,
                      char err[SPEC_ERR_LEN])
{
    if (l->tp < 1 || l->pp < 1 || l->dp < 1 || l->mbs < 1 || l->v < 1) {
        snprintf(err, SPEC_ERR_LEN, "layout: tp, pp, dp, mbs and v must be positive");
        return SPEC_ERR;
    }
    if (m->heads % l->tp) {
        snprintf(err, SPEC_ERR_LEN, "layout: tp=%d does not divide heads=%lld", l->tp,
                 (long long)m->heads);
        return SPEC_ERR;
    }
    if (m->ffn % l->tp) {
        snprintf(err, SPEC_ERR_LEN, "layout: tp=%d does not divide ffn=%lld", l->tp, (long long)m->ffn);
        return SPEC_ERR;
    }
    if (m->vocab % l->tp) {
        snprintf(err, SPEC_ERR_LEN, "layout: tp=%d does not divide vocab=%lld (pad the vocabulary)",
                 l->tp, (long long)m->vocab);
        return SPEC_ERR;
    }
    if (l->sp && m->seq % l->tp) {
        snprintf(err, SPEC_ERR_LEN, "layout: sp=1 needs tp=%d to divide seq=%lld", l->tp,
                 (long long)m->seq);
        return SPEC_ERR;
    }
    if (l->v > 1 && l->schedule != SPEC_SCHED_INTERLEAVED) {
        snprintf(err, SPEC_ERR_LEN, "layout: v=%d needs schedule=interleaved (schedule=%s)", l->v,
                 spec_schedule_name(l->schedule));
        return SPEC_ERR;
    }
    if (l->schedule == SPEC_SCHED_INTERLEAVED && l->pp < 2) {
        snprintf(err, SPEC_ERR_LEN, "layout: schedule=interleaved needs pp >= 2 (pp=%d)", l->pp);
        return SPEC_ERR;
    }
    if (l->schedule == SPEC_SCHED_INTERLEAVED && l->v < 2) {
        /* one chunk per rank is 1F1B (Megatron-LM runs it without interleaving) */
        snprintf(err, SPEC_ERR_LEN, "layout: schedule=interleaved needs v >= 2 chunks per rank (v=%d; use schedule=1f1b)",
                 l->v);
        return SPEC_ERR;
    }
    if (l->zero < 0 || l->zero > 3) {
        snprintf(err, SPEC_ERR_LEN, "layout: zero=%d is not in 0..3", l->zero);
        return SPEC_ERR;
    }
    int64_t stages = (int64_t)l->pp * l->v;
    if (l->n_stage_layers > 0) {
        if (l->n_stage_layers != stages) {
            snprintf(err, SPEC_ERR_LEN, "layout: stages lists %d stages but pp*v = %lld",
                     l->n_stage_layers, (long long)stages);
            return SPEC_ERR;
        }
        int64_t sum = 0;
        for (int i = 0; i < l->n_stage_layers; i++)
            sum += l->stage_layers[i];
        if (sum != m->layers) {
            snprintf(err, SPEC_ERR_LEN, "layout: stages sum to %lld layers but the model has %lld",
                     (long long)sum, (long long)m->layers);
            return SPEC_ERR;
        }
    } else if (stages > m->layers) {
        snprintf(err, SPEC_ERR_LEN, "layout: pp*v = %lld stages but the model has %lld layers",
                 (long long)stages, (long long)m->layers);
        return SPEC_ERR;
    }
    if (global_batch > 0 && global_batch % ((int64_t)l->dp * l->mbs)) {
        snprintf(err, SPEC_ERR_LEN, "layout: global batch %lld is not divisible by dp*mbs = %lld",
                 (long long)global_batch, (long long)l->dp * l->mbs);
        return SPEC_ERR;
    }
    if (l->schedule == SPEC_SCHED_INTERLEAVED && global_batch > 0 &&
        spec_layout_n_micro(l, global_batch) % l->pp) {
        snprintf(err, SPEC_ERR_LEN,
                 "layout: interleaved needs micro-batches (%lld) to be a multiple of pp=%d",
                 (long long)spec_layout_n_micro(l, global_batch), l->pp);
        return SPEC_ERR;
    }
    if (gpus >= 0 && (int64_t)l->dp * l->tp * l->pp != gpus) {
        snprintf(err, SPEC_ERR_LEN, "layout: dp*tp*pp = %lld but the job has %d devices",
                 (long long)l->dp * l->tp * l->pp, gpus);
        return SPEC_ERR;
    }
    return SPEC_OK;
}

int spec_layout_stage_layers(const spec_layout *l, const spec_model *m, int stage)
{
    int stages = l->pp * (l->v > 0 ? l->v : 1);
    if (stage < 0 || stage >= stages)
        return 0;
    if (l->n_stage_layers > 0)
        return stage < l->n_stage_layers ? l->stage_layers[stage] : 0;
    int base = (int)(m->layers / stages), extra = (int)(m->layers % stages);
    return base + (stage < extra ? 1 : 0);
}

int spec_layout_stage_first(const spec_layout *l, const spec_model *m, int stage)
{
    int first = 0;
    for (int s = 0; s < stage; s++)
        first += spec_layout_stage_layers(l, m, s);
    return first;
}

void spec_layout_format(const spec_layout *l, char *buf, size_t len)
{
    char v[16] = "";
    if (l->schedule == SPEC_SCHED_INTERLEAVED)
        snprintf(v, sizeof v, " v%d", l->v);
    snprintf(buf, len, "dp%d tp%d pp%d mbs%d %s%s rc=%s z%d sp%d%s", l->dp, l->tp, l->pp, l->mbs,
             spec_schedule_name(l->schedule), v, spec_recompute_name(l->recompute), l->zero, l->sp,
             l->flash ? " flash" : "");
}

int spec_parse_int_list(const char *s, int *out, int max)
{
    int n = 0;
    const char *p = s;
    while (*p) {
        char *end = NULL;
        long v = strtol(p, &end, 10);
        if (end == p || v < 1 || v > 4096 || (*end && *end != ',') || n == max)
            return -1;
        out[n++] = (int)v;
        p = *end ? end + 1 : end;
    }
    return n > 0 ? n : -1;
}
