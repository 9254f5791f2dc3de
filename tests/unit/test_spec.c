/* test_spec.c — specs and presets (the rank map and plan files have their
 * own tests: test_rankmap.c, test_planfile.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
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
    assert_int_equal(l.flash, 0); /* explicit attention unless asked */
    assert_int_equal(spec_layout_parse("attn=flash", &l, err), SPEC_OK);
    assert_int_equal(l.flash, 1);
    assert_int_equal(spec_layout_parse("attn=explicit", &l, err), SPEC_OK);
    assert_int_equal(l.flash, 0);
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
        {"tiny,seq=1\n2", "seq='1?2'"}, /* the error stays one line */
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
    assert_int_equal(spec_layout_parse("attn=fast", &l, err), SPEC_ERR);
    assert_non_null(strstr(err, "attn='fast'"));
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
    assert_int_equal(spec_layout_parse("pp=2,schedule=interleaved", &l, err), SPEC_OK); /* v=1 */
    assert_int_equal(spec_layout_check(&l, &m, 8, -1, err), SPEC_ERR);
    assert_non_null(strstr(err, "needs v >= 2 chunks per rank (v=1"));
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

/* The value column of row `id` of tests/data/hardware.csv (fields may be
 * quoted and hold commas): its number `which_number` (0 = first); NaN when
 * the table is not found. */
static double hardware_value(const char *id, int which_number)
{
    const char *paths[] = {"tests/data/hardware.csv", "../tests/data/hardware.csv",
                           "../../tests/data/hardware.csv"};
    FILE *f = NULL;
    for (size_t i = 0; i < 3 && !f; i++)
        f = fopen(paths[i], "r");
    if (!f)
        return NAN;
    char line[2048];
    double out = NAN;
    while (fgets(line, sizeof line, f)) {
        char fields[4][256];
        int nf = 0, q = 0;
        size_t k = 0;
        for (char *c = line; *c && nf < 4; c++) {
            if (*c == '"')
                q = !q;
            else if (*c == ',' && !q) {
                fields[nf][k] = 0;
                nf++;
                k = 0;
            } else if (k < 255)
                fields[nf][k++] = *c;
        }
        if (nf < 4 || strcmp(fields[0], id))
            continue;
        /* "312" -> 312; "8 x 200" -> which_number 1 gives 200 */
        char *c = fields[3];
        for (int n = 0; n <= which_number; n++) {
            while (*c && !(*c >= '0' && *c <= '9'))
                c++;
            out = strtod(c, &c);
        }
        break;
    }
    fclose(f);
    return out;
}

/* Cluster presets carry the numbers of the sourced hardware table. */
static void test_clusters_match_hardware_table(void **state)
{
    (void)state;
    char err[SPEC_ERR_LEN];
    spec_cluster a40, a80, h100;
    assert_int_equal(spec_cluster_parse("dgx-a100-40gb", &a40, err), SPEC_OK);
    assert_int_equal(spec_cluster_parse("dgx-a100-80gb", &a80, err), SPEC_OK);
    assert_int_equal(spec_cluster_parse("dgx-h100-80gb", &h100, err), SPEC_OK);
    double v = hardware_value("a100_bf16_dense", 0);
    if (isnan(v))
        skip(); /* run from outside the repository */
    assert_close(a40.peak_tflops, v, 0, 0);
    assert_close(a80.peak_tflops, v, 0, 0);
    assert_close(a40.hbm_gbps, hardware_value("a100_40gb_hbm_bw", 0), 0, 0);
    assert_close(a80.hbm_gbps, hardware_value("a100_80gb_hbm_bw", 0), 0, 0);
    assert_close(a80.intra_gbps, hardware_value("a100_nvlink", 0) / 2, 0, 0); /* bidirectional */
    assert_close(a80.inter_gbps, hardware_value("dgx_a100_ib", 1) / 8, 0, 0);  /* Gb/s -> GB/s */
    assert_close(h100.peak_tflops, hardware_value("h100_bf16_dense", 0), 0, 0);
    assert_close(h100.hbm_gbps, hardware_value("h100_hbm_bw", 0), 0, 0);
    assert_close(h100.intra_gbps, hardware_value("h100_nvlink", 0) / 2, 0, 0);
    assert_close(h100.inter_gbps, hardware_value("dgx_h100_ib", 1) / 8, 0, 0);
    assert_close(a40.mem_gb, 40, 0, 0);
    assert_close(h100.mem_gb, 80, 0, 0);
    assert_int_equal(h100.gpus_per_node, 8);
    assert_int_equal(h100.nodes, 1);
    /* gpu= without numbers takes the datasheet defaults */
    spec_cluster c;
    assert_int_equal(spec_cluster_parse("dgx-h100-80gb,gpu=h200-141gb", &c, err), SPEC_OK);
    assert_int_equal(c.gpu, SPEC_GPU_H200_141GB);
    assert_close(c.mem_gb, 141, 0, 0);
    assert_close(c.hbm_gbps, 4800, 0, 0);
    assert_close(c.peak_tflops, 989, 0, 0);
    /* the cpu preset: one rank per online core, memory shared among them */
    assert_int_equal(spec_cluster_parse("cpu", &c, err), SPEC_OK);
    assert_int_equal(c.gpu, SPEC_GPU_CPU);
    assert_int_equal(c.gpus_per_node, (int)sysconf(_SC_NPROCESSORS_ONLN));
    double phys_gb = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE) / 1e9;
    assert_close(c.mem_gb * c.gpus_per_node, phys_gb, 1e-9, 0);
}

static void test_names_and_format(void **state)
{
    (void)state;
    for (int g = 0; g < SPEC_GPU_COUNT; g++)
        assert_int_equal(spec_gpu_from_name(spec_gpu_name((spec_gpu_kind)g)), g);
    for (int s = 0; s <= SPEC_SCHED_INTERLEAVED; s++)
        assert_int_equal(spec_schedule_from_name(spec_schedule_name((spec_schedule)s)), s);
    for (int r = 0; r <= SPEC_RECOMPUTE_FULL; r++)
        assert_int_equal(spec_recompute_from_name(spec_recompute_name((spec_recompute)r)), r);
    for (int p = 0; p <= SPEC_PREC_FP32; p++)
        assert_int_equal(spec_precision_from_name(spec_precision_name((spec_precision)p)), p);
    assert_int_equal(spec_schedule_from_name("1F1B"), -1); /* names are lowercase */
    assert_int_equal(spec_gpu_from_name(""), -1);
    assert_string_equal(spec_schedule_name(SPEC_SCHED_1F1B), "1f1b");

    spec_layout l;
    char err[SPEC_ERR_LEN], buf[128];
    spec_layout_default(&l);
    spec_layout_format(&l, buf, sizeof buf);
    assert_string_equal(buf, "dp1 tp1 pp1 mbs1 1f1b rc=none z0 sp0");
    assert_int_equal(spec_layout_parse("dp=4,tp=8,pp=2,mbs=1,schedule=interleaved,v=3,recompute=selective,zero=1,sp=1",
                                       &l, err), SPEC_OK);
    spec_layout_format(&l, buf, sizeof buf);
    assert_string_equal(buf, "dp4 tp8 pp2 mbs1 interleaved v3 rc=selective z1 sp1");
    assert_int_equal(spec_layout_n_micro(&l, 64), 16);
}

/* A key given twice: the last one wins; presets then overrides apply in order. */
static void test_last_wins_and_interleaved(void **state)
{
    (void)state;
    char err[SPEC_ERR_LEN];
    spec_model m;
    assert_int_equal(spec_model_parse("tiny,seq=16,seq=48", &m, err), SPEC_OK);
    assert_int_equal(m.seq, 48);
    spec_layout l;
    assert_int_equal(spec_layout_parse("tp=2,tp=4", &l, err), SPEC_OK);
    assert_int_equal(l.tp, 4);
    /* interleaved: 8 layers over pp=2 v=2 -> 4 virtual stages of 2 */
    assert_int_equal(spec_model_parse("tiny,layers=8", &m, err), SPEC_OK);
    assert_int_equal(spec_layout_parse("pp=2,v=2,schedule=interleaved", &l, err), SPEC_OK);
    assert_int_equal(spec_layout_check(&l, &m, 4, 2, err), SPEC_OK);
    for (int s = 0; s < 4; s++) {
        assert_int_equal(spec_layout_stage_layers(&l, &m, s), 2);
        assert_int_equal(spec_layout_stage_first(&l, &m, s), 2 * s);
    }
    /* 9 virtual stages for 8 layers: refused */
    assert_int_equal(spec_layout_parse("pp=3,v=3,schedule=interleaved", &l, err), SPEC_OK);
    assert_int_equal(spec_layout_check(&l, &m, 4, -1, err), SPEC_ERR);
    assert_non_null(strstr(err, "8 layers"));
    /* vocab must divide by tp: 50257 does not divide by 2 */
    assert_int_equal(spec_model_parse("gpt2-124m,vocab=50257", &m, err), SPEC_OK);
    assert_int_equal(spec_layout_parse("tp=2", &l, err), SPEC_OK);
    assert_int_equal(spec_layout_check(&l, &m, 8, -1, err), SPEC_ERR);
    assert_non_null(strstr(err, "vocab"));
    /* inline INI-like keys outside any section are read too */
    char path[] = "/tmp/triad_layout_XXXXXX.ini";
    int fd = mkstemps(path, 4);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fprintf(f, "tp = 2\n[anything]\npp = 2\nstages = 3:5\n");
    fclose(f);
    assert_int_equal(spec_layout_parse(path, &l, err), SPEC_OK);
    assert_int_equal(l.tp, 2);
    assert_int_equal(l.pp, 2);
    assert_int_equal(l.n_stage_layers, 2);
    assert_int_equal(spec_layout_stage_layers(&l, &m, 1), 5);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_presets_parse),      cmocka_unit_test(test_overrides_and_inline),
        cmocka_unit_test(test_ini_file),           cmocka_unit_test(test_errors_name_the_field),
        cmocka_unit_test(test_stage_layers),
        cmocka_unit_test(test_clusters_match_hardware_table), cmocka_unit_test(test_names_and_format),
        cmocka_unit_test(test_last_wins_and_interleaved),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
