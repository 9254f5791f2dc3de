/* test_planfile.c — plan files: round trip, no silent overwrite, errors with
 * the file and line. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "assert_close.h"
#include "../../common/planfile.h"

static char g_dir[] = "/tmp/triad_plan_XXXXXX";
static char g_path[512];

static int setup(void **state)
{
    (void)state;
    memcpy(g_dir + strlen(g_dir) - 6, "XXXXXX", 6);
    if (!mkdtemp(g_dir))
        return -1;
    snprintf(g_path, sizeof g_path, "%s/plan.ini", g_dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    DIR *d = opendir(g_dir);
    struct dirent *e;
    char p[1024];
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(p, sizeof p, "%s/%s", g_dir, e->d_name);
        unlink(p);
    }
    if (d)
        closedir(d);
    rmdir(g_dir);
    return 0;
}

static void write_text(const char *text)
{
    FILE *f = fopen(g_path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int count_files(void)
{
    DIR *d = opendir(g_dir);
    struct dirent *e;
    int n = 0;
    while (d && (e = readdir(d)))
        n += e->d_name[0] != '.';
    if (d)
        closedir(d);
    return n;
}

static void test_round_trip(void **state)
{
    (void)state;
    planfile p, q;
    memset(&p, 0, sizeof p);
    char err[SPEC_ERR_LEN];
    assert_int_equal(spec_model_parse("gpt2-124m", &p.model, err), SPEC_OK);
    assert_int_equal(spec_cluster_parse("dgx-h100-80gb,nodes=2,inter_lat_us=7.25", &p.cluster, err), SPEC_OK);
    assert_int_equal(spec_layout_parse("tp=2,pp=4,dp=2,mbs=2,schedule=gpipe,recompute=selective,zero=1,sp=1,"
                                       "precision=fp32,attn=flash,stages=4:3:3:2",
                                       &p.layout, err), SPEC_OK);
    p.global_batch = 32;
    p.pred_step_time_s = 1.25;
    p.pred_mem_peak_bytes = 12345678901.0;
    p.pred_tokens_per_s = 26214.4;
    assert_int_equal(planfile_write(g_path, &p, "test plan\nsecond line", 0, err), SPEC_OK);
    assert_int_equal(count_files(), 1); /* no temporary left behind */
    assert_int_equal(planfile_read(g_path, &q, err), SPEC_OK);
    assert_int_equal(q.layout.flash, 1);
    assert_int_equal(q.model.layers, 12);
    assert_int_equal(q.model.hidden, 768);
    assert_int_equal(q.model.heads, 12);
    assert_int_equal(q.model.ffn, 3072);
    assert_int_equal(q.model.vocab, p.model.vocab);
    assert_int_equal(q.model.seq, 1024);
    assert_int_equal(q.cluster.gpu, SPEC_GPU_H100_80GB);
    assert_int_equal(q.cluster.nodes, 2);
    assert_int_equal(q.cluster.gpus_per_node, 8);
    assert_close(q.cluster.inter_lat_us, 7.25, 0, 0);
    assert_close(q.cluster.intra_gbps, p.cluster.intra_gbps, 0, 0);
    assert_close(q.cluster.inter_gbps, p.cluster.inter_gbps, 0, 0);
    assert_close(q.cluster.mem_gb, p.cluster.mem_gb, 0, 0);
    assert_close(q.cluster.peak_tflops, p.cluster.peak_tflops, 0, 0);
    assert_close(q.cluster.hbm_gbps, p.cluster.hbm_gbps, 0, 0);
    assert_int_equal(q.layout.tp, 2);
    assert_int_equal(q.layout.pp, 4);
    assert_int_equal(q.layout.dp, 2);
    assert_int_equal(q.layout.mbs, 2);
    assert_int_equal(q.layout.schedule, SPEC_SCHED_GPIPE);
    assert_int_equal(q.layout.recompute, SPEC_RECOMPUTE_SELECTIVE);
    assert_int_equal(q.layout.zero, 1);
    assert_int_equal(q.layout.sp, 1);
    assert_int_equal(q.layout.precision, SPEC_PREC_FP32);
    int stages[4] = {4, 3, 3, 2};
    assert_int_equal(q.layout.n_stage_layers, 4);
    for (int i = 0; i < 4; i++)
        assert_int_equal(q.layout.stage_layers[i], stages[i]);
    assert_int_equal(q.global_batch, 32);
    assert_close(q.pred_step_time_s, 1.25, 0, 0);
    assert_close(q.pred_mem_peak_bytes, 12345678901.0, 0, 0);
    assert_close(q.pred_tokens_per_s, 26214.4, 1e-9, 0);

    /* uniform stages write no stages= line and read back as uniform */
    p.layout.n_stage_layers = 0;
    assert_int_equal(planfile_write(g_path, &p, NULL, 1, err), SPEC_OK);
    assert_int_equal(planfile_read(g_path, &q, err), SPEC_OK);
    assert_int_equal(q.layout.n_stage_layers, 0);
    FILE *f = fopen(g_path, "r");
    char line[256];
    while (fgets(line, sizeof line, f))
        assert_null(strstr(line, "stages"));
    fclose(f);
}

static void test_no_overwrite(void **state)
{
    (void)state;
    planfile p, q;
    memset(&p, 0, sizeof p);
    char err[SPEC_ERR_LEN];
    assert_int_equal(spec_model_parse("tiny", &p.model, err), SPEC_OK);
    assert_int_equal(spec_cluster_parse("cpu", &p.cluster, err), SPEC_OK);
    spec_layout_default(&p.layout);
    p.global_batch = 8;
    write_text("precious\n");
    assert_int_equal(planfile_write(g_path, &p, NULL, 0, err), SPEC_ERR);
    assert_non_null(strstr(err, "exists"));
    FILE *f = fopen(g_path, "r");
    char line[64] = {0};
    assert_non_null(fgets(line, sizeof line, f));
    fclose(f);
    assert_string_equal(line, "precious\n"); /* untouched */
    assert_int_equal(planfile_write(g_path, &p, NULL, 1, err), SPEC_OK);
    assert_int_equal(planfile_read(g_path, &q, err), SPEC_OK);
    assert_int_equal(q.model.layers, 4);
    assert_int_equal(q.global_batch, 8);
    /* a directory that does not exist */
    char bad[600];
    snprintf(bad, sizeof bad, "%s/no/such/dir/plan.ini", g_dir);
    assert_int_equal(planfile_write(bad, &p, NULL, 0, err), SPEC_ERR);
    assert_non_null(strstr(err, "cannot write"));
}

static const char *k_good = "[model]\nlayers = 4\nhidden = 64\nheads = 4\nvocab = 64\nseq = 32\n"
                            "[layout]\ntp = 2\n"
                            "[train]\nglobal_batch = 8\n";

static void test_errors_with_line(void **state)
{
    (void)state;
    planfile q;
    char err[SPEC_ERR_LEN], text[1024];
    write_text(k_good);
    assert_int_equal(planfile_read(g_path, &q, err), SPEC_OK);
    assert_int_equal(q.model.ffn, 256); /* default 4 * hidden */
    assert_int_equal(q.layout.tp, 2);

    struct {
        const char *append, *needle, *line;
    } bad[] = {
        {"[layout]\ntpp = 2\n", "unknown key 'tpp'", ":12:"},
        {"[layut]\ntp = 2\n", "unknown section [layut]", ":12:"},
        {"[train]\nglobal_batch = -3\n", "global_batch='-3'", ":12:"},
        {"[train]\nepochs = 3\n", "unknown key 'epochs' in [train]", ":12:"},
        {"[model]\nhidden = 6x4\n", "hidden='6x4'", ":12:"},
        {"[layout]\nschedule = foo\n", "schedule='foo'", ":12:"},
        {"[prediction]\nstep_time_s = nan\n", "step_time_s='nan'", ":12:"},
        {"[layout]\ntp = 3\n", "tp=3 does not divide heads=4", "plan.ini: "},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(text, sizeof text, "%s%s", k_good, bad[i].append);
        write_text(text);
        assert_int_equal(planfile_read(g_path, &q, err), SPEC_ERR);
        if (!strstr(err, bad[i].needle) || !strstr(err, bad[i].line))
            print_error("case %zu gave '%s'\n", i, err);
        assert_non_null(strstr(err, bad[i].needle));
        assert_non_null(strstr(err, bad[i].line));
    }
    /* missing sections */
    write_text("[model]\nlayers = 4\nhidden = 64\nheads = 4\nvocab = 64\nseq = 32\n[train]\nglobal_batch = 8\n");
    assert_int_equal(planfile_read(g_path, &q, err), SPEC_ERR);
    assert_non_null(strstr(err, "missing [layout]"));
    write_text("[layout]\ntp = 1\n[train]\nglobal_batch = 8\n");
    assert_int_equal(planfile_read(g_path, &q, err), SPEC_ERR);
    assert_non_null(strstr(err, "missing [model]"));
    /* a file that is not there */
    unlink(g_path);
    assert_int_equal(planfile_read(g_path, &q, err), SPEC_ERR);
    assert_non_null(strstr(err, "cannot open"));
    /* a line that is not key = value */
    snprintf(text, sizeof text, "%sjust words\n", k_good);
    write_text(text);
    assert_int_equal(planfile_read(g_path, &q, err), SPEC_ERR);
    assert_non_null(strstr(err, ":11:"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_overwrite, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors_with_line, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
