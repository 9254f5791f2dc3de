/* train.h — the training loop: micro-batches with gradient accumulation,
 * global-norm clipping, AdamW with warmup + cosine decay, metrics. */
#ifndef TRIAD_TRAIN_H
#define TRIAD_TRAIN_H

#include <stdint.h>

#include "../common/spec.h"

typedef struct {
    spec_model model;
    spec_layout layout;
    int64_t global_batch;     /* sequences per optimizer step */
    const char *data;         /* data spec (data.h) */
    int steps;                /* total steps of the job */
    double lr;                /* peak learning rate */
    int warmup;               /* linear warmup steps */
    double min_lr_frac;       /* cosine decays to lr * min_lr_frac at the last step */
    double weight_decay;      /* AdamW decoupled decay, 2-D weights only */
    double beta1, beta2, eps;
    double clip;              /* global gradient norm clip; <= 0 disables */
    uint64_t seed;            /* initialisation */
    const char *metrics_path; /* CSV, or NULL */
    const char *dump_dir;     /* reference dumps, or NULL */
    const char *final_dir;    /* final weights (one rank writes), or NULL */
    const char *ckpt_dir;     /* checkpoints (checkpoint.h), or NULL */
    int ckpt_every;           /* steps between checkpoints (0: none) */
    int ckpt_keep;            /* complete checkpoints kept */
    int resume;               /* continue from the newest complete checkpoint */
    int exit_after;           /* stop after this step as if interrupted (0: no) */
    int inject_nan;           /* testing: put a NaN into one gradient at this step (0: no) */
    int quiet;                /* no progress lines */
    const char *comm;         /* auto | mpi | nccl (exec_pick_comm) */
    double bucket_mb;         /* data-parallel gradient bucket, MB (1e6 bytes) of fp32 gradients */
} exec_train_opts;

void exec_train_opts_default(exec_train_opts *o);

/* Learning rate at step (1-based): linear warmup to lr over `warmup` steps,
 * then cosine to lr * min_lr_frac at step `steps`. */
double exec_train_lr(const exec_train_opts *o, int step);

/* Run the job. Returns a process exit status (0 ok, 1 failure, 2 bad input). */
int exec_train_run(const exec_train_opts *o);

#endif
