/* spec.h — the shared vocabulary of triad: model, cluster and layout specs.
 *
 * A spec is accepted the same way everywhere (command line, plan files):
 *   - a preset name:                     "gpt3-175b"
 *   - a preset followed by overrides:    "gpt3-175b,seq=4096"
 *   - inline key=value pairs:            "layers=4,hidden=64,heads=4,vocab=64,seq=32"
 *   - a path to an INI file (a file that exists, or a name ending in .ini);
 *     keys may sit in any section or none.
 * Parsers never exit: they return SPEC_OK or SPEC_ERR and write one line
 * naming the field and the value into the caller's error buffer.
 *
 * Units live in names: _gb = 1e9 bytes, _gbps = 1e9 bytes/s, _us = microseconds,
 * _tflops = 1e12 FLOP/s.
 */
#ifndef TRIAD_SPEC_H
#define TRIAD_SPEC_H

#include <stddef.h>
#include <stdint.h>

enum { SPEC_OK = 0, SPEC_ERR = -1 };

#define SPEC_NAME_LEN 64
#define SPEC_ERR_LEN 512
#define SPEC_MAX_PP 512 /* most pipeline stages a layout may have */

/* ---- model -------------------------------------------------------------- */

/* A GPT-style decoder (GPT-2 architecture: learned positions, pre-LayerNorm,
 * GELU MLP, LM head tied to the token embedding). */
typedef struct {
    char name[SPEC_NAME_LEN];
    int64_t layers; /* transformer blocks, l */
    int64_t hidden; /* model width, h */
    int64_t heads;  /* attention heads, a (hidden % heads == 0) */
    int64_t ffn;    /* MLP inner width (default 4 * hidden) */
    int64_t vocab;  /* vocabulary size, V */
    int64_t seq;    /* sequence length, s */
} spec_model;

/* ---- cluster ------------------------------------------------------------ */

typedef enum {
    SPEC_GPU_A100_40GB = 0,
    SPEC_GPU_A100_80GB,
    SPEC_GPU_H100_80GB,
    SPEC_GPU_H200_141GB,
    SPEC_GPU_CPU,
    SPEC_GPU_COUNT
} spec_gpu_kind;

typedef struct {
    char name[SPEC_NAME_LEN];
    spec_gpu_kind gpu;
    int nodes;          /* nodes in the cluster */
    int gpus_per_node;  /* devices (or CPU ranks) per node */
    double intra_gbps;  /* per-device bandwidth inside a node, one direction */
    double inter_gbps;  /* per-device bandwidth across nodes, one direction */
    double intra_lat_us;
    double inter_lat_us;
    double mem_gb;      /* device memory per device, 1e9 bytes */
    double peak_tflops; /* dense peak per device at the working precision */
    double hbm_gbps;    /* device memory bandwidth */
} spec_cluster;

/* ---- layout ------------------------------------------------------------- */

typedef enum { SPEC_SCHED_GPIPE = 0, SPEC_SCHED_1F1B, SPEC_SCHED_INTERLEAVED } spec_schedule;
typedef enum { SPEC_RECOMPUTE_NONE = 0, SPEC_RECOMPUTE_SELECTIVE, SPEC_RECOMPUTE_FULL } spec_recompute;
typedef enum { SPEC_PREC_BF16 = 0, SPEC_PREC_FP32 } spec_precision;

/* How one training job is split. dp * tp * pp is the number of devices.
 * stage_layers is empty (n_stage_layers == 0) for uniform stages; otherwise it
 * holds pp * v entries, the transformer blocks of each (virtual) stage in
 * pipeline order, summing to the model's layers. */
typedef struct {
    int tp, pp, dp;
    int mbs;                  /* micro-batch size, sequences */
    spec_schedule schedule;
    int v;                    /* virtual stages per rank (interleaved); 1 otherwise */
    spec_recompute recompute;
    int zero;                 /* ZeRO stage 0..3 */
    int sp;                   /* sequence parallel, 0/1 */
    spec_precision precision;
    int flash;                /* attention: 0 explicit softmax, the s x s probabilities kept (attn=explicit);
                                 1 fused, one log-sum-exp per row kept (attn=flash, FlashAttention) */
    int n_stage_layers;
    int stage_layers[SPEC_MAX_PP];
} spec_layout;

/* ---- defaults and presets ---------------------------------------------- */

/* Layout defaults: tp=pp=dp=1, mbs=1, 1f1b, v=1, recompute none, zero 0,
 * sp 0, bf16, uniform stages. */
void spec_layout_default(spec_layout *l);

/* Number of built-in presets and their names, for `triad presets`. */
int spec_model_preset_count(void);
const spec_model *spec_model_preset_at(int i);
const char *spec_model_preset_source(int i); /* paper the shape comes from */
int spec_cluster_preset_count(void);
const spec_cluster *spec_cluster_preset_at(int i);
const char *spec_cluster_preset_source(int i);

/* Datasheet defaults for a device kind (memory, peak, HBM) — used when a
 * cluster spec gives `gpu=` without the numbers. */
void spec_cluster_apply_gpu(spec_cluster *c, spec_gpu_kind gpu);

/* ---- parsing ------------------------------------------------------------ */

/* Parse a spec string (see the file header). On error, err holds one line
 * such as "model: unknown key 'layerz'" or "model: hidden='abc' is not a
 * positive integer" and the result is SPEC_ERR. */
int spec_model_parse(const char *text, spec_model *out, char err[SPEC_ERR_LEN]);
int spec_cluster_parse(const char *text, spec_cluster *out, char err[SPEC_ERR_LEN]);
/* A layout string: "tp=8,pp=4,dp=2,mbs=1,schedule=1f1b". No presets; a file
 * path is read as INI. stages=a:b:c sets stage_layers. */
int spec_layout_parse(const char *text, spec_layout *out, char err[SPEC_ERR_LEN]);

/* Apply one key=value to a spec (used by the parsers and by plan files).
 * Returns SPEC_ERR with a message for an unknown key or a bad value. */
int spec_model_set(spec_model *m, const char *key, const char *value, char err[SPEC_ERR_LEN]);
int spec_cluster_set(spec_cluster *c, const char *key, const char *value, char err[SPEC_ERR_LEN]);
int spec_layout_set(spec_layout *l, const char *key, const char *value, char err[SPEC_ERR_LEN]);

/* Consistency checks, each with one-line messages naming the field. */
int spec_model_check(const spec_model *m, char err[SPEC_ERR_LEN]);
int spec_cluster_check(const spec_cluster *c, char err[SPEC_ERR_LEN]);
/* Checks the layout against the model and the global batch (sequences):
 * heads % tp, ffn % tp, vocab % tp, layers split over pp*v stages,
 * global_batch % (dp * mbs), v > 1 only with interleaved, zero in 0..3, and
 * stage_layers summing to layers. gpus < 0 skips the dp*tp*pp == gpus check. */
int spec_layout_check(const spec_layout *l, const spec_model *m, int64_t global_batch,
                      int gpus, char err[SPEC_ERR_LEN]);

/* Layers held by (virtual) stage `stage` in 0 .. pp*v-1, uniform or from
 * stage_layers; and the index of its first layer. Uniform stages give the
 * first (layers % (pp*v)) stages one extra layer. */
int spec_layout_stage_layers(const spec_layout *l, const spec_model *m, int stage);
int spec_layout_stage_first(const spec_layout *l, const spec_model *m, int stage);

/* Names of the enums, and parsing them back (returns -1 if unknown). */
const char *spec_gpu_name(spec_gpu_kind g);
const char *spec_schedule_name(spec_schedule s);
const char *spec_recompute_name(spec_recompute r);
const char *spec_precision_name(spec_precision p);
const char *spec_attn_name(int flash); /* the layout key attn's value: explicit, flash */
int spec_gpu_from_name(const char *s);
int spec_schedule_from_name(const char *s);
int spec_recompute_from_name(const char *s);
int spec_precision_from_name(const char *s);

/* Micro-batches per step per pipeline: global_batch / (dp * mbs). */
static inline int64_t spec_layout_n_micro(const spec_layout *l, int64_t global_batch)
{
    return global_batch / ((int64_t)l->dp * l->mbs);
}

/* One-line human form, "dp4 tp8 pp2 mbs1 1f1b rc=none z0 sp0", into buf. */
void spec_layout_format(const spec_layout *l, char *buf, size_t len);

/* A comma-separated list of integers in 1..4096 ("1,2,4") into out. Returns
 * the count, or -1 when s is empty, malformed or longer than max. */
int spec_parse_int_list(const char *s, int *out, int max);

/* Total devices of a cluster. */
static inline int64_t spec_cluster_devices(const spec_cluster *c)
{
    return (int64_t)c->nodes * c->gpus_per_node;
}

#endif /* TRIAD_SPEC_H */
