/* test_exec_ckpt.c — layout-independent checkpoints (executor/checkpoint.c,
 * executor/ckpt_manifest.c).
 *
 * - The tp slicing rule (exec_param_global_index) is a bijection: the
 *   shards of every rank together cover each element of the whole tensor
 *   exactly once, for every tensor kind and tp in {1, 2, 4}.
 * - A checkpoint written by one process (tp1 pp1) and read back as tp2 and
 *   as pp2 gives every rank exactly the saved values of its slice (params
 *   and both moments; distinct values per element, compared for equality),
 *   and a ZeRO-1 style moment range takes just its part.
 * - The manifest parser refuses what would make the loader read out of
 *   bounds or outside the folder: shard names other than rank<N>.bin, a
 *   shard shape inconsistent with the whole shape and tp, out-of-range
 *   ranks and stages, a wrong version, missing lines.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../executor/checkpoint.h"
#include "../../executor/ckpt_manifest.h"
#include "../../executor/model.h"

static spec_model tiny(void)
{
    spec_model m;
    char err[SPEC_ERR_LEN];
    assert_int_equal(spec_model_parse("tiny", &m, err), SPEC_OK);
    return m;
}

static spec_layout layout(const char *s)
{
    spec_layout l;
    char err[SPEC_ERR_LEN];
    assert_int_equal(spec_layout_parse(s, &l, err), SPEC_OK);
    return l;
}

static void test_global_index_is_bijection(void **state)
{
    (void)state;
    spec_model m = tiny();
    for (int tp = 1; tp <= 4; tp *= 2) {
        char ls[64];
        snprintf(ls, sizeof ls, "tp=%d,mbs=1", tp);
        spec_layout l = layout(ls);
        for (int st = 0; st < 1; st++) {
            exec_param *p = NULL;
            int np = exec_param_table(&m, &l, st, &p);
            assert_true(np > 0);
            for (int i = 0; i < np; i++) {
                int64_t g[2];
                exec_param_global_shape(p[i].shape.name, &p[i].shape, tp, g);
                int64_t whole = g[0] * g[1];
                int sharded = exec_param_tp_sharded(p[i].shape.name);
                assert_int_equal(whole, p[i].shape.elems * (sharded ? tp : 1));
                unsigned char *hit = calloc((size_t)whole, 1);
                for (int r = 0; r < (sharded ? tp : 1); r++)
                    for (int64_t k = 0; k < p[i].shape.elems; k++) {
                        uint64_t gi = exec_param_global_index(p[i].shape.name, &p[i].shape, m.hidden, tp, r, k);
                        assert_true(gi < (uint64_t)whole);
                        hit[gi]++;
                    }
                for (int64_t k = 0; k < whole; k++)
                    assert_int_equal(hit[k], 1);
                free(hit);
            }
            free(p);
        }
    }
}

/* value of element gi of tensor i (by name and layer) in buffer `which` */
static float value_of(const char *name, int layer, int which, uint64_t gi)
{
    uint64_t h = 1469598103934665603ull;
    for (const char *s = !strcmp(name, "wte_head") ? "wte" : name; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    /* integers below 2^20 plus quarters: exact in fp32, distinct per element */
    return (float)((gi * 7 + h % 101 + (uint64_t)(layer + 1) * 13) % 1000003) + 0.25f * (float)which;
}

static void fill(exec_model *md, float *m, float *v)
{
    for (int i = 0; i < md->n_p; i++) {
        const exec_param *q = &md->p[i];
        for (int64_t k = 0; k < q->shape.elems; k++) {
            uint64_t gi = exec_param_global_index(q->shape.name, &q->shape, md->m.hidden, md->l.tp, md->tp_rank, k);
            md->params[q->offset + k] = value_of(q->shape.name, q->layer, 0, gi);
            m[q->offset + k] = value_of(q->shape.name, q->layer, 1, gi);
            v[q->offset + k] = value_of(q->shape.name, q->layer, 2, gi);
        }
    }
}

static void test_save_one_load_other_layouts(void **state)
{
    (void)state;
    char dir[] = "/tmp/triad_ckpt_unit_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char err[SPEC_ERR_LEN];
    spec_model m = tiny();
    spec_layout l1 = layout("mbs=1,precision=fp32");
    exec_model a;
    assert_int_equal(exec_model_init(&a, &m, &l1, 0, 0, 1, 1, err), 0);
    float *am = calloc((size_t)a.n_params, sizeof(float)), *av = calloc((size_t)a.n_params, sizeof(float));
    fill(&a, am, av);
    exec_ckpt_ctx c = {NULL, 0, 0, am, av, 0, a.n_params, 0, 8};
    assert_int_equal(exec_ckpt_save(dir, 3, &a, &c, 2, err), 0);

    const char *targets[] = {"mbs=1,tp=2,precision=fp32", "mbs=1,pp=2,precision=fp32", "mbs=1,tp=4,pp=2,precision=fp32"};
    for (int t = 0; t < 3; t++) {
        spec_layout l = layout(targets[t]);
        for (int pr = 0; pr < l.pp; pr++)
            for (int tr = 0; tr < l.tp; tr++) {
                exec_model b;
                assert_int_equal(exec_model_init(&b, &m, &l, tr, pr, 1, 99, err), 0);
                float *bm = calloc((size_t)b.n_params, sizeof(float)), *bv = calloc((size_t)b.n_params, sizeof(float));
                /* as a ZeRO-1 rank would: moments for the middle third only */
                int64_t lo = b.n_params / 3, hi = 2 * b.n_params / 3;
                exec_ckpt_ctx d = {NULL, 0, 0, bm + lo, bv + lo, lo, hi, 1, 8};
                int step = -1;
                assert_int_equal(exec_ckpt_load_latest(dir, &b, &d, &step, err), 0);
                assert_int_equal(step, 3);
                for (int i = 0; i < b.n_p; i++) {
                    const exec_param *q = &b.p[i];
                    for (int64_t k = 0; k < q->shape.elems; k++) {
                        uint64_t gi = exec_param_global_index(q->shape.name, &q->shape, m.hidden, l.tp, tr, k);
                        int64_t o = q->offset + k;
                        assert_true(b.params[o] == value_of(q->shape.name, q->layer, 0, gi));
                        int in = o >= lo && o < hi;
                        assert_true(bm[o] == (in ? value_of(q->shape.name, q->layer, 1, gi) : 0.0f));
                        assert_true(bv[o] == (in ? value_of(q->shape.name, q->layer, 2, gi) : 0.0f));
                    }
                }
                free(bm);
                free(bv);
                exec_model_free(&b);
            }
    }
    /* another global batch is refused */
    exec_ckpt_ctx e = c;
    e.global_batch = 16;
    int step;
    assert_int_equal(exec_ckpt_load_latest(dir, &a, &e, &step, err), -1);
    assert_non_null(strstr(err, "global batch 8"));
    /* a flipped byte in the shard is refused by its checksum */
    char path[256];
    snprintf(path, sizeof path, "%s/step_3/rank0.bin", dir);
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    fseek(f, 40, SEEK_SET);
    fputc(0x55, f);
    fclose(f);
    assert_int_equal(exec_ckpt_load_latest(dir, &a, &c, &step, err), -1);
    assert_non_null(strstr(err, "fails its checksum"));
    snprintf(path, sizeof path, "rm -rf '%s'", dir);
    assert_int_equal(system(path), 0);
    free(am);
    free(av);
    exec_model_free(&a);
}

static int parse(const char *text, char err[SPEC_ERR_LEN])
{
    ckpt_manifest mf;
    int rc = ckpt_manifest_parse(text, strlen(text), &mf, err);
    if (rc == 0)
        ckpt_manifest_free(&mf);
    return rc;
}

#define HEAD "triad checkpoint 2\nstep 4\nglobal_batch 8\nmodel layers=4,hidden=64,heads=4,ffn=256,vocab=64,seq=32\n" \
             "layout 1 2 1 0\n"

static void test_manifest_refusals(void **state)
{
    (void)state;
    char err[SPEC_ERR_LEN];
    assert_int_equal(parse(HEAD "shard rank1.bin 1 0 0 1 0 10 120 0000abcd\n"
                                "tensor 0 fcw 0 0 2 128 64 256 64\ntensor 0 ln1w 0 8192 1 64 1 64 1\n", err), 0);
    /* a shard name that leaves the folder, or is not rank<N>.bin */
    assert_int_equal(parse(HEAD "shard ../../etc/passwd 0 0 0 1 0 0 4 0\ntensor 0 ln1w 0 0 1 64 1 64 1\n", err), -1);
    assert_non_null(strstr(err, "line 6"));
    assert_int_equal(parse(HEAD "shard rank1.binx 0 0 0 1 0 0 4 0\ntensor 0 ln1w 0 0 1 64 1 64 1\n", err), -1);
    /* tp rank, stage out of range; moments range reversed */
    assert_int_equal(parse(HEAD "shard rank1.bin 2 0 0 1 0 0 4 0\ntensor 0 ln1w 0 0 1 64 1 64 1\n", err), -1);
    assert_int_equal(parse(HEAD "tensor 1 ln1w 0 0 1 64 1 64 1\n", err), -1);
    assert_int_equal(parse(HEAD "shard rank1.bin 0 0 0 1 9 3 4 0\ntensor 0 ln1w 0 0 1 64 1 64 1\n", err), -1);
    /* shard shape inconsistent with the whole shape and tp = 2 */
    assert_int_equal(parse(HEAD "tensor 0 fcw 0 0 2 256 64 256 64\n", err), -1);
    assert_int_equal(parse(HEAD "tensor 0 attprojw 0 0 2 64 64 64 64\n", err), -1);
    assert_int_equal(parse(HEAD "tensor 0 ln1w 0 0 1 32 1 64 1\n", err), -1);
    assert_int_equal(parse(HEAD "tensor 0 ln1w 0 0 3 64 1 64 1\n", err), -1);
    /* version, missing lines, unknown entries, trailing junk */
    assert_int_equal(parse("triad checkpoint 1\nstep 4\n", err), -1);
    assert_int_equal(parse("triad checkpoint 2\nstep 4\nlayout 1 1 1 0\ntensor 0 ln1w 0 0 1 64 1 64 1\n", err), -1);
    assert_non_null(strstr(err, "global_batch"));
    assert_int_equal(parse(HEAD "tensor 0 ln1w 0 0 1 64 1 64 1\nbogus 3\n", err), -1);
    assert_int_equal(parse(HEAD "tensor 0 ln1w 0 0 1 64 1 64 1 7\n", err), -1);
    assert_int_equal(parse(HEAD, err), -1); /* no tensors */
    assert_int_equal(parse("", err), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_global_index_is_bijection),
        cmocka_unit_test(test_save_one_load_other_layouts),
        cmocka_unit_test(test_manifest_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
