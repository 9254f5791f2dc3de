/* ckpt_manifest.h — the parser of a checkpoint's MANIFEST (the format is in
 * checkpoint.h). Pure: no MPI, no files, so it can be fuzzed alone. Every
 * field is checked (ranges, shard file names of the form rank<N>.bin, each
 * tensor's shard shape consistent with its whole shape and the saved tp),
 * so a loader can index with the values without further checks. */
#ifndef TRIAD_CKPT_MANIFEST_H
#define TRIAD_CKPT_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

#include "../common/spec.h"

typedef struct {
    char file[32];
    int tp_rank, pp_rank, dp_rank, has_params;
    int64_t lo, hi, bytes; /* moments [lo, hi) of the stage's flat vector; file size */
    uint32_t crc;
    int verified;          /* the loader's: size and CRC checked, and ... */
    int fd;                /* ... the file open for reading (valid only when verified) */
} ckpt_shard;

typedef struct {
    int stage;
    char name[32];
    int layer;
    int64_t offset;
    int ndim;
    int64_t ldims[2], gdims[2]; /* tp shard's shape, whole shape (dims[1] = 1 for vectors) */
} ckpt_tensor;

typedef struct {
    int step;
    int64_t global_batch;
    int64_t model[6]; /* layers hidden heads ffn vocab seq */
    int dp, tp, pp, zero;
    ckpt_shard *shards;
    int n_shards;
    ckpt_tensor *tensors;
    int n_tensors;
} ckpt_manifest;

/* Parse text (n bytes, need not be NUL-terminated). 0, or -1 with err
 * naming the line. */
int ckpt_manifest_parse(const char *text, size_t n, ckpt_manifest *mf, char err[SPEC_ERR_LEN]);
void ckpt_manifest_free(ckpt_manifest *mf);

#endif
