/* planfile.h — the plan file: an INI a person can read and edit, written by
 * `triad plan --out` and read by `triad train --plan` and `triad simulate
 * --plan`.
 *
 *   # triad plan, written <date> by triad plan ...
 *   [model]     layers=..., hidden=..., heads=..., ffn=..., vocab=..., seq=...
 *   [cluster]   gpu=..., nodes=..., gpus_per_node=..., ...
 *   [layout]    tp, pp, dp, mbs, schedule, v, recompute, zero, sp, precision,
 *               stages=4:4:4:4 (layers per stage, pipeline order)
 *   [train]     global_batch=...
 *   [prediction] step_time_s=..., mem_peak_bytes=..., tokens_per_s=...  (informative)
 */
#ifndef TRIAD_PLANFILE_H
#define TRIAD_PLANFILE_H

#include "spec.h"

typedef struct {
    spec_model model;
    spec_cluster cluster;
    spec_layout layout;
    int64_t global_batch;
    double pred_step_time_s;     /* 0 when absent */
    double pred_mem_peak_bytes;  /* 0 when absent */
    double pred_tokens_per_s;    /* 0 when absent */
} planfile;

/* Read a plan. Returns SPEC_OK, or SPEC_ERR with "plan.ini:12: unknown key
 * 'tpp' in [layout]" (or a missing file, or a failed check) in err. */
int planfile_read(const char *path, planfile *out, char err[SPEC_ERR_LEN]);

/* Write a plan. Refuses (SPEC_ERR) to overwrite an existing file unless
 * overwrite is non-zero; writes to a temporary name and renames. `comment`
 * (may be NULL) is written as '#' lines at the top. */
int planfile_write(const char *path, const planfile *p, const char *comment, int overwrite,
                   char err[SPEC_ERR_LEN]);

#endif /* TRIAD_PLANFILE_H */
