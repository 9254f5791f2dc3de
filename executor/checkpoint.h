/* checkpoint.h — checkpoints that are either whole or ignored, and that
 * resume on any layout.
 *
 * A checkpoint of step N is a folder DIR/step_<N>. Every rank that holds
 * something nobody else holds writes one shard file, rank<R>.bin, as raw
 * little-endian fp32: its stage's parameters (tp-sharded, written by dp
 * rank 0 only, the others hold copies) followed by the AdamW moments m and
 * v it holds (the whole local vector, or with ZeRO-1 or -2 the flat range
 * [lo, hi) of its dp shard). Files go to DIR/step_<N>.tmp and are fsynced;
 * rank 0 then gathers every shard's description and CRC-32 and writes
 * MANIFEST, last:
 *
 *   triad checkpoint 2
 *   step N
 *   global_batch B
 *   model layers=..,hidden=..,heads=..,ffn=..,vocab=..,seq=..
 *   layout dp tp pp zero
 *   shard FILE TP_RANK PP_RANK DP_RANK HAS_PARAMS LO HI BYTES CRC
 *   tensor STAGE NAME LAYER OFFSET NDIM LOCAL0 LOCAL1 GLOBAL0 GLOBAL1
 *
 * A tensor line places tensor NAME of block LAYER (-1: embedding, final
 * LayerNorm, tied head copy) at OFFSET in stage STAGE's flat vector, with
 * its tp-shard shape and its whole shape; which slice a tp rank holds
 * follows from the name (exec_param_global_index). Then the folder is
 * renamed into place; older checkpoints beyond `keep` are deleted only
 * after that.
 *
 * Loading reads only the MANIFEST and the slices a rank needs: for each of
 * its tensors it rebuilds the whole tensor from the saved tp shards (and,
 * for moments, the saved dp shards) and takes its own slice, so a job
 * checkpointed as dp2.tp2.pp2 resumes as tp4, dp8 or one rank. Every shard
 * file read is checked against its size and CRC first; a damaged one is
 * refused with one line.
 *
 * The data position and the RNG need no saving: every sample is a pure
 * function of (source, global sample index) and the index follows from the
 * step and the global batch (which must therefore be the same on resume).
 */
#ifndef TRIAD_CHECKPOINT_H
#define TRIAD_CHECKPOINT_H

#include "../common/spec.h"
#include "comm.h"
#include "model.h"

/* What one rank contributes to (or takes from) a checkpoint. */
typedef struct {
    comm_group *world;   /* every rank of the job; NULL for one process */
    int rank, dp_rank;
    float *m, *v;        /* the AdamW moments this rank holds ... */
    int64_t lo, hi;      /* ... elements [lo, hi) of its stage's flat vector */
    int moments_sharded; /* ZeRO-1: every dp rank holds a different range */
    int64_t global_batch;
} exec_ckpt_ctx;

/* Collective over ctx->world: write step `step`. Returns 0, or -1 with err
 * on every rank when any rank failed. */
int exec_ckpt_save(const char *dir, int step, const exec_model *md, const exec_ckpt_ctx *ctx, int keep,
                   char err[SPEC_ERR_LEN]);

/* Newest complete checkpoint in dir: 0 and *step, with md's parameters and
 * ctx's moments filled in for md's layout; 1 when there is none; -1 with
 * err (damaged, other model, other global batch). Not collective: the
 * caller agrees on the outcome across ranks. */
int exec_ckpt_load_latest(const char *dir, exec_model *md, const exec_ckpt_ctx *ctx, int *step,
                          char err[SPEC_ERR_LEN]);

/* CRC-32 (IEEE 802.3) of a buffer, continuing from crc (0 to start). */
uint32_t exec_crc32(uint32_t crc, const void *buf, size_t n);

#endif
