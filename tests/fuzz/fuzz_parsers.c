/* fuzz_parsers.c — libFuzzer harness for every parser triad exposes to its
 * users: model / cluster / layout specs, plan files, profile CSVs (gemm,
 * kernel and collective rows), token shard headers, Markov data specs and
 * checkpoint manifests. The first input byte picks the parser; the rest is the
 * text (or file contents). Built by `make fuzz` with ASan + UBSan; any
 * crash, leak-free abort or sanitizer report is a failure. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../common/planfile.h"
#include "../../common/spec.h"
#include "../../costmodel/profile.h"
#include "../../executor/ckpt_manifest.h"
#include "../../executor/data.h"

static const char *to_file(const uint8_t *data, size_t n, const char *suffix)
{
    static char path[64];
    snprintf(path, sizeof path, "/tmp/triad_fuzz_%d%s", (int)getpid(), suffix);
    FILE *f = fopen(path, "wb");
    if (!f)
        return NULL;
    fwrite(data, 1, n, f);
    fclose(f);
    return path;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int which = data[0] % 8;
    data++, size--;
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = 0;
    char err[SPEC_ERR_LEN];
    spec_model m;
    spec_cluster c;
    spec_layout l;
    switch (which) {
    case 0:
        if (!strchr(text, '/')) /* keep it a spec, not a path to some file */
            spec_model_parse(text, &m, err);
        break;
    case 1:
        if (!strchr(text, '/'))
            spec_cluster_parse(text, &c, err);
        break;
    case 2:
        if (!strchr(text, '/') && spec_layout_parse(text, &l, err) == SPEC_OK &&
            spec_model_parse("tiny", &m, err) == SPEC_OK) {
            spec_layout_check(&l, &m, 8, -1, err);
            for (int s = 0; s < l.pp * l.v && s < 64; s++)
                spec_layout_stage_layers(&l, &m, s);
        }
        break;
    case 3: {
        const char *p = to_file(data, size, ".ini");
        planfile pf;
        if (p) {
            planfile_read(p, &pf, err);
            unlink(p);
        }
        break;
    }
    case 4: {
        const char *p = to_file(data, size, ".csv");
        cost_profile *pr = NULL;
        if (p && cost_profile_load(p, &pr, err) == SPEC_OK)
            cost_profile_free(pr);
        if (p)
            unlink(p);
        break;
    }
    case 5: {
        const char *p = to_file(data, size, ".bin");
        exec_data *d = NULL;
        if (p && exec_data_open(p, 8, 256, &d, err) == 0) {
            int tok[8], tgt[8];
            exec_data_sample(d, 3, tok, tgt);
            exec_data_close(d);
        }
        if (p)
            unlink(p);
        break;
    }
    case 6: {
        ckpt_manifest mf;
        if (ckpt_manifest_parse((const char *)data, size, &mf, err) == 0) {
            /* what the loader relies on */
            for (int i = 0; i < mf.n_tensors; i++)
                if (mf.tensors[i].stage >= mf.pp || mf.tensors[i].ldims[0] > mf.tensors[i].gdims[0])
                    abort();
            ckpt_manifest_free(&mf);
        }
        break;
    }
    default: {
        /* data specs: markov:... (bounded so the table stays small) */
        exec_data *d = NULL;
        char spec[600];
        snprintf(spec, sizeof spec, "markov:%.500s", text);
        if (!strstr(text, "order=") && exec_data_open(spec, 4, 256, &d, err) == 0) {
            int tok[4], tgt[4];
            exec_data_sample(d, 1, tok, tgt);
            exec_data_close(d);
        }
        break;
    }
    }
    free(text);
    return 0;
}
