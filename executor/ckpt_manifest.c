/* ckpt_manifest.c — checkpoint MANIFEST parser (see ckpt_manifest.h). */
#include "ckpt_manifest.h"
#include "model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DIM_MAX ((int64_t)1 << 31)

static int parse_line(const char *s, int lineno, ckpt_manifest *mf, int *have, char err[SPEC_ERR_LEN])
{
    char word[32], name[64], tail[8];
    long long a[9];
    unsigned long long crc;
    int i1, i2;
    if (lineno == 1) {
        if (sscanf(s, "triad checkpoint %d %7s", &i1, tail) != 1 || i1 != 2) {
            snprintf(err, SPEC_ERR_LEN, "line 1: not a triad checkpoint (version 2) manifest");
            return -1;
        }
        return 0;
    }
    if (sscanf(s, "%31s", word) != 1)
        return 0; /* blank */
    if (!strcmp(word, "step")) {
        if (sscanf(s, "step %d %7s", &i1, tail) != 1 || i1 < 0)
            goto bad;
        mf->step = i1, have[0] = 1;
    } else if (!strcmp(word, "global_batch")) {
        if (sscanf(s, "global_batch %lld %7s", &a[0], tail) != 1 || a[0] < 1)
            goto bad;
        mf->global_batch = a[0], have[1] = 1;
    } else if (!strcmp(word, "model")) {
        if (sscanf(s, "model layers=%lld,hidden=%lld,heads=%lld,ffn=%lld,vocab=%lld,seq=%lld %7s", &a[0], &a[1],
                   &a[2], &a[3], &a[4], &a[5], tail) != 6)
            goto bad;
        for (int k = 0; k < 6; k++) {
            if (a[k] < 1 || a[k] > DIM_MAX)
                goto bad;
            mf->model[k] = a[k];
        }
        have[2] = 1;
    } else if (!strcmp(word, "layout")) {
        if (sscanf(s, "layout %lld %lld %lld %lld %7s", &a[0], &a[1], &a[2], &a[3], tail) != 4 || a[0] < 1 ||
            a[1] < 1 || a[2] < 1 || a[0] > 1 << 20 || a[1] > 1 << 20 || a[2] > SPEC_MAX_PP || a[3] < 0 || a[3] > 3)
            goto bad;
        mf->dp = (int)a[0], mf->tp = (int)a[1], mf->pp = (int)a[2], mf->zero = (int)a[3], have[3] = 1;
    } else if (!strcmp(word, "shard")) {
        int rk, len = 0;
        if (!have[3] || sscanf(s, "shard %63s %lld %lld %lld %lld %lld %lld %lld %llx %7s", name, &a[0], &a[1],
                               &a[2], &a[3], &a[4], &a[5], &a[6], &crc, tail) != 9)
            goto bad;
        if (sscanf(name, "rank%d.bin%n", &rk, &len) != 1 || len != (int)strlen(name) || rk < 0 ||
            a[0] < 0 || a[0] >= mf->tp || a[1] < 0 || a[1] >= mf->pp || a[2] < 0 || a[2] >= mf->dp ||
            (a[3] != 0 && a[3] != 1) || a[4] < 0 || a[5] < a[4] || a[5] > DIM_MAX * DIM_MAX || a[6] < 0 ||
            crc > 0xffffffffull)
            goto bad;
        ckpt_shard *t = realloc(mf->shards, sizeof *t * (size_t)(mf->n_shards + 1));
        if (!t)
            goto bad;
        mf->shards = t;
        ckpt_shard *x = &t[mf->n_shards++];
        memset(x, 0, sizeof *x);
        snprintf(x->file, sizeof x->file, "%s", name);
        x->tp_rank = (int)a[0], x->pp_rank = (int)a[1], x->dp_rank = (int)a[2], x->has_params = (int)a[3];
        x->lo = a[4], x->hi = a[5], x->bytes = a[6], x->crc = (uint32_t)crc;
    } else if (!strcmp(word, "tensor")) {
        int nd;
        if (!have[3] || sscanf(s, "tensor %d %31s %d %lld %d %lld %lld %lld %lld %7s", &i1, name, &i2, &a[0], &nd,
                               &a[1], &a[2], &a[3], &a[4], tail) != 9)
            goto bad;
        if (i1 < 0 || i1 >= mf->pp || i2 < -1 || a[0] < 0 || a[0] > DIM_MAX * DIM_MAX || (nd != 1 && nd != 2))
            goto bad;
        for (int k = 1; k <= 4; k++)
            if (a[k] < 1 || a[k] > DIM_MAX)
                goto bad;
        if (nd == 1 && (a[2] != 1 || a[4] != 1))
            goto bad;
        /* the shard's shape must be the whole shape cut by tp along the
         * tensor's split dimension, so indexing the whole tensor from a
         * shard cannot go out of bounds */
        int split = exec_param_tp_split_dim(name);
        for (int d = 0; d < 2; d++) {
            int64_t want = a[1 + d] * (d == split ? mf->tp : 1);
            if (a[3 + d] != want)
                goto bad;
        }
        ckpt_tensor *t = realloc(mf->tensors, sizeof *t * (size_t)(mf->n_tensors + 1));
        if (!t)
            goto bad;
        mf->tensors = t;
        ckpt_tensor *x = &t[mf->n_tensors++];
        memset(x, 0, sizeof *x);
        x->stage = i1, x->layer = i2, x->offset = a[0], x->ndim = nd;
        snprintf(x->name, sizeof x->name, "%s", name);
        x->ldims[0] = a[1], x->ldims[1] = a[2], x->gdims[0] = a[3], x->gdims[1] = a[4];
    } else {
        snprintf(err, SPEC_ERR_LEN, "line %d: unknown entry '%s'", lineno, word);
        return -1;
    }
    return 0;
bad:
    snprintf(err, SPEC_ERR_LEN, "line %d: malformed or out-of-range '%s' entry", lineno, word);
    return -1;
}

int ckpt_manifest_parse(const char *text, size_t n, ckpt_manifest *mf, char err[SPEC_ERR_LEN])
{
    memset(mf, 0, sizeof *mf);
    int have[4] = {0, 0, 0, 0}, lineno = 0;
    char line[512];
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && text[j] != '\n')
            j++;
        lineno++;
        if (j - i >= sizeof line || memchr(text + i, 0, j - i)) {
            snprintf(err, SPEC_ERR_LEN, "line %d: too long or not text", lineno);
            ckpt_manifest_free(mf);
            return -1;
        }
        memcpy(line, text + i, j - i);
        line[j - i] = 0;
        if (parse_line(line, lineno, mf, have, err)) {
            ckpt_manifest_free(mf);
            return -1;
        }
        i = j + 1;
    }
    static const char *need[4] = {"step", "global_batch", "model", "layout"};
    for (int k = 0; k < 4; k++)
        if (!have[k]) {
            if (lineno == 0)
                snprintf(err, SPEC_ERR_LEN, "empty manifest");
            else
                snprintf(err, SPEC_ERR_LEN, "no '%s' line", need[k]);
            ckpt_manifest_free(mf);
            return -1;
        }
    if (mf->n_tensors == 0) {
        snprintf(err, SPEC_ERR_LEN, "no tensor lines");
        ckpt_manifest_free(mf);
        return -1;
    }
    return 0;
}

void ckpt_manifest_free(ckpt_manifest *mf)
{
    free(mf->shards);
    free(mf->tensors);
    mf->shards = NULL, mf->tensors = NULL;
    mf->n_shards = mf->n_tensors = 0;
}
