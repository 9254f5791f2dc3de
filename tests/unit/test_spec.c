/* test_spec.c — specs and presets (the rank map and plan files have their
 * own tests: test_rankmap.c, test_planfile.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "assert_close.h"
#include "../../common/spec.h"

static void test_presets_parse(void **state)
{
    (void)state;
    char err[SPEC_ERR_LEN];
    for (int i = 0; i < spec_model_preset_count(); i++) {
        spec_model m;
        assert_int_equal(spec_model_parse(spec_model_preset_at(i)->name, &m, err), SPEC_OK);
        assert_int_equal(m.hidden % m.heads, 0);
    }
    for (int i = 0; i < spec_cluster_preset_count(); i++) {
        spec_cluster c;
        assert_int_equal(spec_cluster_parse(spec_cluster_preset_at(i)->name, &c, err), SPEC_OK);
    }
    spec_model m;
    assert_int_equal(spec_model_parse("tiny", &m, err), SPEC_OK);
    assert_int_equal(m.layers, 4);
    assert_int_equal(m.hidden, 64);
    assert_int_equal(m.heads, 4);
    assert_int_equal(m.vocab, 64);
    assert_int_equal(m.seq, 32);
    assert_int_equal(m.ffn, 256);
}

static void test_overrides_and_inline(void **state)
{
    (void)state;
    char err[SPEC_ERR_LEN];
    spec_model m;
    assert_int_equal(spec_model_parse("gpt3-175b,seq=4096", &m, err), SPEC_OK);
    assert_int_equal(m.seq, 4096);
    assert_int_equal(m.layers, 96);
    assert_int_equal(spec_model_parse("layers=2,hidden=8,heads=2,vocab=10,seq=4", &m, err), SPEC_OK);
    assert_int_equal(m.ffn, 32); /* default 4 * hidden */
    spec_cluster c;
    assert_int_equal(spec_cluster_parse("dgx-h100-80gb,nodes=4,inter_gbps=40", &c, err), SPEC_OK);
    assert_int_equal(c.nodes, 4);
    assert_close(c.inter_gbps, 40.0, 0, 0);
    assert_close(c.peak_tflops, 989.0, 0, 0);
    spec_layout l;
    assert_int_equal(spec_layout_parse("tp=2,pp=2,dp=2,mbs=4,schedule=gpipe,recompute=full,zero=1,sp=1", &l, err),
                     SPEC_OK);
    assert_int_equal(l.tp * l.pp * l.dp, 8);
    assert_int_equal(l.schedule, SPEC_SCHED_GPIPE);
    assert_int_equal(l.recompute, SPEC_RECOMPUTE_FULL);
}

static void test_ini_file(void **state)
{
    (void)state;
    char path[] = "/tmp/triad_spec_XXXXXX.ini";
    int fd = mkstemps(path, 4);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fprintf(f, "# a model\n[model]\nlayers = 6\nhidden = 128\nheads = 8\nvocab = 256\nseq = 64\n");
    fclose(f);
    spec_model m;
    char err[SPEC_ERR_LEN];
    assert_int_equal(spec_model_parse(path, &m, err), SPEC_OK);
    assert_int_equal(m.layers, 6);
    assert_int_equal(m.ffn, 512);
    f = fopen(path, "w");
    fprintf(f, "[model]\nlayers = 6\nhiden = 128\n");
    fclose(f);
    assert_int_equal(spec_model_parse(path, &m, err), SPEC_ERR);
    assert_non_null(strstr(err, "hiden"));
    assert_non_null(strstr(err, ":3:")); /* the line number */
    unlink(path);
}

/* Every class of bad input is refused with the field named. */
static void test_errors_name_the_field(void **state)
{
    (void)state;
    struct {
        const char *text, *needle;
    } bad_models[] = {
        {"gpt9", "unknown preset 'gpt9'"},
        {"tiny,layerz=3", "unknown key 'layerz'"},
        {"tiny,hidden=abc", "hidden='abc'"},
        {"tiny,hidden=", "hidden=''"},
        {"tiny,seq=12abc", "seq='12abc'"},
        {"tiny,seq=-4", "seq='-4'"},
        {"tiny,seq=0", "seq='0'"},
        {"tiny,seq=1e400", "seq='1e400'"},
        {"tiny,seq=nan", "seq='nan'"},
        {"tiny,heads=3", "heads=3 does not divide hidden=64"},
        {"tiny,layers=99999999999999999999", "layers="},
        {"", "empty"},
        {"layers=2", "hidden is missing"},
        {"tiny,=4", "not key=value"},
    };
    char err[SPEC_ERR_LEN];
    spec_model m;
    for (size_t i = 0; i < sizeof bad_models / sizeof bad_models[0]; i++) {
        assert_int_equal(spec_model_parse(bad_models[i].text, &m, err), SPEC_ERR);
        if (!strstr(err, bad_models[i].needle))
            print_error("'%s' gave '%s'\n", bad_models[i].text, err);
        assert_non_null(strstr(err, bad_models[i].needle));
    }
    spec_cluster c;
    assert_int_equal(spec_cluster_parse("dgx-a100-80gb,gpu=tpu", &c, err), SPEC_ERR);
    assert_non_null(strstr(err, "gpu='tpu'"));
    assert_int_equal(spec_cluster_parse("dgx-a100-80gb,mem_gb=-1", &c, err), SPEC_ERR);
    assert_non_null(strstr(err, "mem_gb='-1'"));
    assert_int_equal(spec_cluster_parse("dgx-a100-80gb,mem_gb=inf", &c, err), SPEC_ERR);
    spec_layout l;
    assert_int_equal(spec_layout_parse("schedule=foo", &l, err), SPEC_ERR);
    assert_non_null(strstr(err, "schedule='foo'"));
    assert_int_equal(spec_layout_parse("zero=4", &l, err), SPEC_ERR);
    assert_non_null(strstr(err, "zero='4'"));
    assert_int_equal(spec_layout_parse("stages=2::2", &l, err), SPEC_ERR);
    /* layout checks against the model and batch */
    assert_int_equal(spec_model_parse("tiny", &m, err), SPEC_OK);
    assert_int_equal(spec_layout_parse("tp=3", &l, err), SPEC_OK);
    assert_int_equal(spec_layout_check(&l, &m, 8, -1, err), SPEC_ERR);
    assert_non_null(strstr(err, "tp=3 does not divide heads=4"));
    assert_int_equal(spec_layout_parse("dp=4,mbs=4", &l, err), SPEC_OK);
    assert_int_equal(spec_layout_check(&l, &m, 8, -1, err), SPEC_ERR);
    assert_non_null(strstr(err, "global batch 8 is not divisible by dp*mbs = 16"));
    assert_int_equal(spec_layout_parse("dp=2,tp=2", &l, err), SPEC_OK);
    assert_int_equal(spec_layout_check(&l, &m, 8, 8, err), SPEC_ERR);
    assert_non_null(strstr(err, "dp*tp*pp = 4"));
    assert_int_equal(spec_layout_parse("pp=8", &l, err), SPEC_OK);
    assert_int_equal(spec_layout_check(&l, &m, 8, -1, err), SPEC_ERR);
    assert_non_null(strstr(err, "model has 4 layers"));
    assert_int_equal(spec_layout_parse("pp=2,v=2", &l, err), SPEC_OK);
    assert_int_equal(spec_layout_check(&l, &m, 8, -1, err), SPEC_ERR);
    assert_non_null(strstr(err, "interleaved"));
    assert_int_equal(spec_layout_parse("pp=2,stages=1:2", &l, err), SPEC_OK);
    assert_int_equal(spec_layout_check(&l, &m, 8, -1, err), SPEC_ERR);
    assert_non_null(strstr(err, "sum to 3"));
}

static void test_stage_layers(void **state)
{
    (void)state;
    spec_model m;
    spec_layout l;
    char err[SPEC_ERR_LEN];
    assert_int_equal(spec_model_parse("tiny,layers=10", &m, err), SPEC_OK);
    assert_int_equal(spec_layout_parse("pp=4", &l, err), SPEC_OK);
    int expect[4] = {3, 3, 2, 2}, first[4] = {0, 3, 6, 8};
    for (int s = 0; s < 4; s++) {
        assert_int_equal(spec_layout_stage_layers(&l, &m, s), expect[s]);
        assert_int_equal(spec_layout_stage_first(&l, &m, s), first[s]);
    }
    assert_int_equal(spec_layout_parse("pp=2,stages=7:3", &l, err), SPEC_OK);
    assert_int_equal(spec_layout_check(&l, &m, 4, -1, err), SPEC_OK);
    assert_int_equal(spec_layout_stage_layers(&l, &m, 0), 7);
    assert_int_equal(spec_layout_stage_first(&l, &m, 1), 7);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_presets_parse),      cmocka_unit_test(test_overrides_and_inline),
        cmocka_unit_test(test_ini_file),           cmocka_unit_test(test_errors_name_the_field),
        cmocka_unit_test(test_stage_layers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
