/* fuzz_ckpt.c — libFuzzer harness for the checkpoint MANIFEST parser
 * alone (executor/ckpt_manifest.c), so that every one of its executions
 * goes to it. What the loader relies on after a successful parse is
 * asserted: stages and tp ranks in range, shard shapes within the whole
 * shapes, shard names of the form rank<N>.bin. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../executor/ckpt_manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ckpt_manifest mf;
    char err[SPEC_ERR_LEN];
    if (ckpt_manifest_parse((const char *)data, size, &mf, err) != 0)
        return 0;
    for (int i = 0; i < mf.n_tensors; i++) {
        const ckpt_tensor *t = &mf.tensors[i];
        if (t->stage < 0 || t->stage >= mf.pp || t->ldims[0] > t->gdims[0] || t->ldims[1] > t->gdims[1] ||
            t->ldims[0] < 1 || t->ldims[1] < 1)
            abort();
    }
    for (int i = 0; i < mf.n_shards; i++) {
        const ckpt_shard *s = &mf.shards[i];
        if (s->tp_rank < 0 || s->tp_rank >= mf.tp || s->pp_rank < 0 || s->pp_rank >= mf.pp || s->lo > s->hi ||
            strncmp(s->file, "rank", 4) || strchr(s->file, '/'))
            abort();
    }
    ckpt_manifest_free(&mf);
    return 0;
}
