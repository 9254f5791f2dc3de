/* test_profile.c — measured profiles (`triad profile` output): the loader
 * reads kernel rows and refuses bad ones; the cost model sums measured
 * kernels in the executor's call order (exact sums of chosen times); the
 * pipeline's send slots and their memory. */
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
#include "../../costmodel/cost.h"
#include "../../costmodel/profile_impl.h"
#include "../../costmodel/shapes.h"
#include "../../costmodel/sim.h"

static char path[64];

static const char *write_csv(const char *text)
{
    snprintf(path, sizeof path, "/tmp/triad_test_profile_%d.csv", (int)getpid());
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

/* tiny at tp=1, mbs=1: N = 32 rows, C = 64, heads 4 of 16, ffn 256, vocab
 * 64. Every kernel gets a distinct power of two (in microseconds), so a
 * wrong multiplicity or a missing kernel changes the sum. */
static const char *PROFILE =
    "# hand-written\n"
    "kind,name,value,m,n,k,op,group,bytes,time_s\n"
    "param,dropout,0,,,,,,,\n"
    "gemm,,,32,192,64,,,,1e-6\n"      /* qkv */
    "gemm,,,32,64,64,,,,2e-6\n"       /* attention projection */
    "gemm,,,32,256,64,,,,4e-6\n"      /* fc */
    "gemm,,,32,64,256,,,,8e-6\n"      /* fc projection */
    "gemm,,,32,64,64000,,,,0.5\n"     /* a far shape that must not be picked */
    "kernel,matmul_bwd,,32,192,64,,,,16e-6\n"
    "kernel,matmul_bwd,,32,64,64,,,,32e-6\n"
    "kernel,matmul_bwd,,32,256,64,,,,64e-6\n"
    "kernel,matmul_bwd,,32,64,256,,,,128e-6\n"
    "kernel,attention_fwd,,4,32,16,,,,256e-6\n"
    "kernel,attention_bwd,,4,32,16,,,,512e-6\n"
    "kernel,attention_flash_fwd,,4,32,16,,,,13e-6\n"
    "kernel,attention_flash_bwd,,4,32,16,,,,17e-6\n"
    "kernel,layernorm_fwd,,32,64,1,,,,1024e-6\n"
    "kernel,layernorm_bwd,,32,64,1,,,,2048e-6\n"
    "kernel,gelu_fwd,,8192,1,1,,,,4096e-6\n"
    "kernel,gelu_bwd,,8192,1,1,,,,8192e-6\n"
    "kernel,add,,2048,1,1,,,,16384e-6\n"
    "kernel,encoder_fwd,,32,64,1,,,,3e-6\n"
    "kernel,encoder_bwd,,32,64,1,,,,5e-6\n"
    "kernel,xent_fwd,,32,64,1,,,,7e-6\n"
    "kernel,xent_bwd,,32,64,1,,,,11e-6\n"
    "kernel,adamw,,1000,1,1,,,,1e-3\n"
    "kernel,grad_norm,,1000,1,1,,,,1e-4\n"
    "kernel,zero_grad,,1000,1,1,,,,3e-5\n"
    "kernel,scale,,1000,1,1,,,,7e-5\n";

static void test_measured_block_is_the_executor_sum(void **state)
{
    (void)state;
    char err[SPEC_ERR_LEN];
    cost_profile *p = NULL;
    assert_int_equal(cost_profile_load(write_csv(PROFILE), &p, err), SPEC_OK);
    assert_true(profile_has_kernels(p));
    spec_model m;
    spec_cluster c;
    spec_layout l;
    assert_int_equal(spec_model_parse("tiny", &m, err), SPEC_OK);
    assert_int_equal(spec_cluster_parse("cpu", &c, err), SPEC_OK);
    assert_int_equal(spec_layout_parse("mbs=1,precision=fp32", &l, err), SPEC_OK);
    cost_block b;
    cost_block_times(&m, &c, &l, SPEC_RECOMPUTE_NONE, p, &b);
    /* forward: 2 LayerNorms, 4 GEMMs, attention, GELU, 4 adds (2 bias, 2 residual) */
    double fwd = 2 * 1024e-6 + (1 + 2 + 4 + 8) * 1e-6 + 256e-6 + 4096e-6 + 4 * 16384e-6;
    double bwd = (16 + 32 + 64 + 128) * 1e-6 + 512e-6 + 2 * 2048e-6 + 8192e-6;
    assert_close(b.fwd_s, fwd, 1e-12, 0);
    assert_close(b.bwd_s, bwd, 1e-12, 0);
    assert_close(b.recompute_s, 0, 0, 0);
    cost_block_times(&m, &c, &l, SPEC_RECOMPUTE_SELECTIVE, p, &b);
    assert_close(b.recompute_s, 256e-6, 1e-12, 0);
    cost_block_times(&m, &c, &l, SPEC_RECOMPUTE_FULL, p, &b);
    assert_close(b.recompute_s, fwd, 1e-12, 0);
    /* attn=flash: the fused kernels in place of the explicit ones, and
     * selective recomputation redoes nothing (the log-sum-exp is kept) */
    spec_layout lf = l;
    lf.flash = 1;
    cost_block_times(&m, &c, &lf, SPEC_RECOMPUTE_NONE, p, &b);
    assert_close(b.fwd_s, fwd - 256e-6 + 13e-6, 1e-12, 0);
    assert_close(b.bwd_s, bwd - 512e-6 + 17e-6, 1e-12, 0);
    cost_block_times(&m, &c, &lf, SPEC_RECOMPUTE_SELECTIVE, p, &b);
    assert_close(b.recompute_s, 0, 0, 0);

    /* one stage holds the embedding and the head (head GEMM 32 x 64 x 64
     * is the attention projection's shape: 2e-6; its backward 32e-6) */
    cost_extra e;
    cost_extra_times(&m, &c, &l, 0, p, &e);
    assert_close(e.fwd_s, 3e-6 + 1024e-6 + 2e-6 + 7e-6, 1e-12, 0);
    assert_close(e.bwd_s, 5e-6 + 11e-6 + 32e-6 + 2048e-6, 1e-12, 0);

    /* the optimizer step: zeroing, norm and AdamW, each scaled with the
     * parameters from the measured 1000; with dp also the mean (scale) */
    cost_comm cm;
    cost_comm_times(&m, &c, &l, p, &cm);
    double P = (double)cost_shapes_param_elems(&m, &l, 0);
    assert_close(cm.optimizer_s, (1e-3 + 1e-4 + 3e-5) * P / 1000.0, 1e-12, 0);
    spec_layout l2 = l;
    l2.dp = 2;
    cost_comm_times(&m, &c, &l2, p, &cm);
    assert_close(cm.optimizer_s, (1e-3 + 1e-4 + 3e-5 + 7e-5) * P / 1000.0, 1e-12, 0);
    l2.zero = 1; /* ZeRO-1: norm, AdamW and mean over the half this rank holds; zeroing over all */
    cost_comm_times(&m, &c, &l2, p, &cm);
    assert_close(cm.optimizer_s, 3e-5 * P / 1000.0 + (1e-3 + 1e-4 + 7e-5) * (double)((int64_t)(P + 1) / 2) / 1000.0,
                 1e-12, 0);

    /* the nearest shape scales by work: twice the rows, twice the time */
    assert_close(profile_kernel_time(p, "layernorm_fwd", SPEC_PREC_FP32, 64, 64, 1), 2048e-6, 1e-12, 0);
    assert_close(profile_kernel_time(p, "no_such", SPEC_PREC_FP32, 1, 1, 1), -1, 0, 0);
    cost_profile_free(p);
    unlink(path);
}

/* The MLP's GEMM + GELU and its backward through the GELU, one op each in
 * the executor (a GPU fuses them): a profile with their rows is summed
 * with them in place of the parts (fc GEMM + gelu_fwd, fc projection's
 * matmul_bwd + gelu_bwd); PROFILE, without them, sums the parts. And under
 * a profile with kernel rows ZeRO-2/3's per-block collectives are charged
 * whole even with dp_overlap 1: triad's executor blocks on them. */
static void test_fused_mlp_rows_and_blocking_zero(void **state)
{
    (void)state;
    char err[SPEC_ERR_LEN], text[8192];
    snprintf(text, sizeof text, "%s%s", PROFILE,
             "kernel,matmul_gelu_fwd,,32,256,64,,,,19e-6\n"
             "kernel,matmul_gelu_bwd,,32,64,256,,,,23e-6\n"
             "param,dp_overlap,1,,,,,,,\n");
    cost_profile *p = NULL;
    assert_int_equal(cost_profile_load(write_csv(text), &p, err), SPEC_OK);
    spec_model m;
    spec_cluster c;
    spec_layout l;
    assert_int_equal(spec_model_parse("tiny", &m, err), SPEC_OK);
    assert_int_equal(spec_cluster_parse("cpu", &c, err), SPEC_OK);
    assert_int_equal(spec_layout_parse("mbs=1,precision=fp32", &l, err), SPEC_OK);
    cost_block b;
    cost_block_times(&m, &c, &l, SPEC_RECOMPUTE_NONE, p, &b);
    double fwd = 2 * 1024e-6 + (1 + 2 + 8) * 1e-6 + 19e-6 + 256e-6 + 4 * 16384e-6;
    double bwd = (16 + 32 + 64) * 1e-6 + 23e-6 + 512e-6 + 2 * 2048e-6;
    assert_close(b.fwd_s, fwd, 1e-12, 0);
    assert_close(b.bwd_s, bwd, 1e-12, 0);

    spec_layout z2, z3;
    assert_int_equal(spec_layout_parse("dp=2,zero=2,mbs=1,precision=fp32", &z2, err), SPEC_OK);
    assert_int_equal(spec_layout_parse("dp=2,zero=3,mbs=1,precision=fp32", &z3, err), SPEC_OK);
    cost_comm c2, c3;
    cost_comm_times(&m, &c, &z2, p, &c2);
    cost_comm_times(&m, &c, &z3, p, &c3);
    assert_true(c2.zero2_rs_layer_s > 0);
    assert_close(c2.zero2_bwd_layer_s, c2.zero2_rs_layer_s, 1e-15, 0);
    assert_true(c3.zero3_ag_layer_s > 0);
    assert_close(c3.zero3_fwd_layer_s, c3.zero3_ag_layer_s, 1e-15, 0);
    assert_close(c3.zero3_bwd_layer_s, c3.zero3_ag_layer_s + c3.zero2_rs_layer_s, 1e-15, 0);
    assert_close(c3.zero3_edge_s, 0, 0, 0);
    cost_profile_free(p);
    unlink(path);
}

/* Rows carry the math they were timed in (dtype). A layout is predicted
 * from the rows of its own precision only: untagged GEMM, matmul_bwd and
 * attention rows are fp32 (what profiles held before dtype), untagged
 * element-wise rows serve both; a precision the profile never timed is
 * refused with a line naming it. triad's executor stores fp32 in either
 * math, so a bf16 layout's memory equals the fp32 one's to the byte. */
static void test_rows_by_precision(void **state)
{
    (void)state;
    char err[SPEC_ERR_LEN];
    cost_profile *p = NULL;
    /* PROFILE's rows (untagged: fp32) plus bf16 GEMM and attention rows at 1/8 of their times */
    char text[8192];
    snprintf(text, sizeof text, "%s",
             "kind,name,value,m,n,k,op,group,bytes,time_s,dtype\n"
             "gemm,,,32,192,64,,,,1e-6,\n"
             "gemm,,,32,64,64,,,,2e-6,\n"
             "gemm,,,32,256,64,,,,4e-6,\n"
             "gemm,,,32,64,256,,,,8e-6,\n"
             "gemm,,,32,192,64,,,,0.125e-6,bf16\n"
             "gemm,,,32,64,64,,,,0.25e-6,bf16\n"
             "gemm,,,32,256,64,,,,0.5e-6,bf16\n"
             "gemm,,,32,64,256,,,,1e-6,bf16\n"
             "kernel,matmul_bwd,,32,192,64,,,,16e-6,fp32\n"
             "kernel,matmul_bwd,,32,64,64,,,,32e-6,fp32\n"
             "kernel,matmul_bwd,,32,256,64,,,,64e-6,fp32\n"
             "kernel,matmul_bwd,,32,64,256,,,,128e-6,fp32\n"
             "kernel,matmul_bwd,,32,192,64,,,,2e-6,bf16\n"
             "kernel,matmul_bwd,,32,64,64,,,,4e-6,bf16\n"
             "kernel,matmul_bwd,,32,256,64,,,,8e-6,bf16\n"
             "kernel,matmul_bwd,,32,64,256,,,,16e-6,bf16\n"
             "kernel,attention_fwd,,4,32,16,,,,256e-6,\n"
             "kernel,attention_bwd,,4,32,16,,,,512e-6,\n"
             "kernel,attention_fwd,,4,32,16,,,,32e-6,bf16\n"
             "kernel,attention_bwd,,4,32,16,,,,64e-6,bf16\n"
             "kernel,layernorm_fwd,,32,64,1,,,,1024e-6,\n"
             "kernel,layernorm_bwd,,32,64,1,,,,2048e-6,\n"
             "kernel,gelu_fwd,,8192,1,1,,,,4096e-6,\n"
             "kernel,gelu_bwd,,8192,1,1,,,,8192e-6,\n"
             "kernel,add,,2048,1,1,,,,16384e-6,\n");
    assert_int_equal(cost_profile_load(write_csv(text), &p, err), SPEC_OK);
    assert_true(cost_profile_has_precision(p, SPEC_PREC_FP32));
    assert_true(cost_profile_has_precision(p, SPEC_PREC_BF16));
    spec_model m;
    spec_cluster c;
    spec_layout l32, l16;
    assert_int_equal(spec_model_parse("tiny", &m, err), SPEC_OK);
    assert_int_equal(spec_cluster_parse("cpu", &c, err), SPEC_OK);
    assert_int_equal(spec_layout_parse("mbs=1,precision=fp32", &l32, err), SPEC_OK);
    assert_int_equal(spec_layout_parse("mbs=1,precision=bf16", &l16, err), SPEC_OK);
    double ew_f = 2 * 1024e-6 + 4096e-6 + 4 * 16384e-6, ew_b = 2 * 2048e-6 + 8192e-6;
    cost_block b;
    cost_block_times(&m, &c, &l32, SPEC_RECOMPUTE_NONE, p, &b);
    assert_close(b.fwd_s, ew_f + 15e-6 + 256e-6, 1e-12, 0);
    assert_close(b.bwd_s, ew_b + 240e-6 + 512e-6, 1e-12, 0);
    cost_block_times(&m, &c, &l16, SPEC_RECOMPUTE_NONE, p, &b);
    assert_close(b.fwd_s, ew_f + 15e-6 / 8 + 32e-6, 1e-12, 0);
    assert_close(b.bwd_s, ew_b + 30e-6 + 64e-6, 1e-12, 0);
    assert_close(profile_gemm_time(p, SPEC_PREC_BF16, 32, 192, 64), 0.125e-6, 1e-15, 0);
    assert_close(profile_gemm_time(p, SPEC_PREC_FP32, 32, 192, 64), 1e-6, 1e-15, 0);
    /* element-wise rows serve both maths */
    assert_close(profile_kernel_time(p, "add", SPEC_PREC_BF16, 2048, 1, 1), 16384e-6, 1e-12, 0);
    /* memory: what triad's executor stores in each precision — bf16: fp32
     * weights (4 bytes), their bf16 copy (2), fp32 gradients (4) and
     * moments (8), bf16 activations; fp32: 4 + 4 + 8 and fp32 activations */
    cost_result r32, r16;
    assert_int_equal(cost_predict(&m, &c, &l32, 8, p, &r32, err), SPEC_OK);
    assert_int_equal(cost_predict(&m, &c, &l16, 8, p, &r16, err), SPEC_OK);
    cost_mem e32, e16;
    cost_memory_rank_exec(&m, &l32, 8, 0, &e32);
    cost_memory_rank_exec(&m, &l16, 8, 0, &e16);
    assert_int_equal(r32.mem_peak_bytes, e32.total_bytes);
    assert_int_equal(r16.mem_peak_bytes, e16.total_bytes);
    assert_int_equal(e32.param_bytes, 4 * e32.param_elems);
    assert_int_equal(e16.param_bytes, 6 * e16.param_elems);
    assert_int_equal(e16.grad_bytes, e32.grad_bytes);
    assert_int_equal(e16.optim_bytes, e32.optim_bytes);
    assert_true(e16.act_bytes < e32.act_bytes && e16.act_bytes > e32.act_bytes / 2); /* the row statistics stay fp32 */
    assert_true(r16.step_time_s < r32.step_time_s);
    cost_profile_free(p);

    /* untagged GEMMs are fp32: a bf16 layout is refused, naming the precision */
    assert_int_equal(cost_profile_load(write_csv(PROFILE), &p, err), SPEC_OK);
    assert_false(cost_profile_has_precision(p, SPEC_PREC_BF16));
    assert_int_equal(cost_predict(&m, &c, &l16, 8, p, &r16, err), SPEC_ERR);
    assert_non_null(strstr(err, "precision=bf16"));
    assert_int_equal(cost_predict(&m, &c, &l32, 8, p, &r32, err), SPEC_OK);
    cost_profile_free(p);
    /* a datasheet profile has no rows: every precision */
    assert_true(cost_profile_has_precision(cost_profile_builtin(SPEC_GPU_H100_80GB), SPEC_PREC_BF16));
    assert_true(cost_profile_has_precision(NULL, SPEC_PREC_FP32));

    /* a dtype that is no precision is refused with file:line and the value */
    assert_int_equal(cost_profile_load(write_csv("kind,name,m,n,k,time_s,dtype\ngemm,,1,1,1,1e-6,fp16\n"), &p,
                                       err), SPEC_ERR);
    assert_null(p);
    assert_non_null(strstr(err, "'dtype'='fp16'"));
    assert_non_null(strstr(err, ":2:"));
    unlink(path);
}

static void test_loader_refuses_bad_kernel_rows(void **state)
{
    (void)state;
    char err[SPEC_ERR_LEN];
    cost_profile *p = NULL;
    assert_int_equal(cost_profile_load(write_csv("kind,name,m,n,k,time_s\nkernel,softmax_fast,1,1,1,1e-6\n"),
                                       &p, err), SPEC_ERR);
    assert_null(p);
    assert_non_null(strstr(err, "softmax_fast"));
    assert_non_null(strstr(err, ":2:"));
    assert_int_equal(cost_profile_load(write_csv("kind,name,m,n,k,time_s\nkernel,add,1,1,1,-3\n"), &p, err),
                     SPEC_ERR);
    assert_non_null(strstr(err, "time_s"));
    assert_int_equal(cost_profile_load(write_csv("kind,name,m,n,k,time_s\nkernel,add,1,1,1,nan\n"), &p, err),
                     SPEC_ERR);
    assert_int_equal(cost_profile_load(write_csv("kind,name,m,n,k,time_s\nkernel,add,,1,1,1e-6\n"), &p, err),
                     SPEC_ERR);
    assert_non_null(strstr(err, "'m'"));
    unlink(path);
}

/* Send slots: GPipe 2 + 2, 1F1B pp - s activations, interleaved 2 + 2
 * (test_comm_schedule replays them without deadlock); never more than the
 * messages there are. */
/* The machine's speed between two profiles (triad report's re-check): the
 * median of the time ratios of matching rows, the j-th of two equal rows
 * (add at 8192, twice) with the j-th; rows only one side has, collectives
 * and rows of another math do not count. Ratios here: gemm 2, 3 (the bf16
 * row has no partner), add 1.5 and 4 (not 0.75 and 8: the second add pairs
 * with the second), layernorm 5 -> median of {1.5, 2, 3, 4, 5} = 3. */
static void test_speed_ratio(void **state)
{
    (void)state;
    char err[SPEC_ERR_LEN];
    cost_profile *a = NULL, *b = NULL;
    assert_int_equal(cost_profile_load(write_csv("kind,name,value,m,n,k,op,group,bytes,time_s,dtype\n"
                                                 "gemm,matmul_fwd,,32,192,64,,,,1e-6,fp32\n"
                                                 "gemm,matmul_fwd,,32,64,64,,,,2e-6,fp32\n"
                                                 "kernel,add,,8192,1,1,,,,2e-6,\n"
                                                 "kernel,add,,8192,1,1,,,,1e-6,\n"
                                                 "kernel,layernorm_fwd,,32,64,1,,,,1e-6,\n"
                                                 "kernel,gelu_fwd,,32,256,1,,,,1e-6,\n"
                                                 "collective,,,,,,allreduce,2,4096,1e-5,\n"),
                                       &a, err),
                     SPEC_OK);
    assert_int_equal(cost_profile_load(write_csv("kind,name,value,m,n,k,op,group,bytes,time_s,dtype\n"
                                                 "gemm,matmul_fwd,,32,192,64,,,,2e-6,fp32\n"
                                                 "gemm,matmul_fwd,,32,64,64,,,,6e-6,fp32\n"
                                                 "gemm,matmul_fwd,,32,64,64,,,,1e-6,bf16\n"
                                                 "kernel,add,,8192,1,1,,,,3e-6,\n"
                                                 "kernel,add,,8192,1,1,,,,4e-6,\n"
                                                 "kernel,layernorm_fwd,,32,64,1,,,,5e-6,\n"
                                                 "kernel,xent_fwd,,32,64,1,,,,9e-6,\n"
                                                 "collective,,,,,,allreduce,2,4096,9e-5,\n"),
                                       &b, err),
                     SPEC_OK);
    int n = 0;
    assert_close(cost_profile_speed_ratio(a, b, &n), 3.0, 1e-12, 0);
    assert_int_equal(n, 5);
    assert_close(cost_profile_speed_ratio(b, a, &n), 1.0 / 3.0, 1e-12, 0);
    assert_int_equal(n, 5);
    assert_true(isnan(cost_profile_speed_ratio(a, NULL, &n)));
    assert_int_equal(n, 0);
    cost_profile_free(a);
    cost_profile_free(b);
    remove(path);
}

static void test_pipe_send_slots(void **state)
{
    (void)state;
    assert_int_equal(cost_pipe_send_slots(SPEC_SCHED_1F1B, 4, 0, 8, 1, 0), 4);
    assert_int_equal(cost_pipe_send_slots(SPEC_SCHED_1F1B, 4, 2, 8, 1, 0), 2);
    assert_int_equal(cost_pipe_send_slots(SPEC_SCHED_1F1B, 4, 0, 8, 1, 1), 2);
    assert_int_equal(cost_pipe_send_slots(SPEC_SCHED_1F1B, 4, 0, 3, 1, 0), 3);
    assert_int_equal(cost_pipe_send_slots(SPEC_SCHED_GPIPE, 4, 0, 8, 1, 0), 2);
    assert_int_equal(cost_pipe_send_slots(SPEC_SCHED_GPIPE, 4, 0, 1, 1, 1), 1);
    assert_int_equal(cost_pipe_send_slots(SPEC_SCHED_INTERLEAVED, 4, 1, 8, 2, 0), 2);
    assert_int_equal(cost_pipe_send_slots(SPEC_SCHED_INTERLEAVED, 4, 1, 8, 2, 1), 2);
    assert_int_equal(cost_pipe_send_slots(SPEC_SCHED_INTERLEAVED, 2, 0, 1, 1, 1), 1);
    spec_model m;
    spec_layout l;
    char err[SPEC_ERR_LEN];
    assert_int_equal(spec_model_parse("tiny", &m, err), SPEC_OK);
    assert_int_equal(spec_layout_parse("pp=2,mbs=2,schedule=1f1b,precision=fp32", &l, err), SPEC_OK);
    /* stage 0 of 2, 8 micro-batches: 2 receive + 2 activation + 2 gradient slots of 2 x 32 x 64 */
    assert_int_equal(cost_pipe_buffer_elems(&m, &l, 0, 8), 6 * 2 * 32 * 64);
    /* stage 1: 1 activation slot (it never sends one, but the count is the bound) */
    assert_int_equal(cost_pipe_buffer_elems(&m, &l, 1, 8), 5 * 2 * 32 * 64);
    assert_int_equal(spec_layout_parse("mbs=2,precision=fp32", &l, err), SPEC_OK);
    assert_int_equal(cost_pipe_buffer_elems(&m, &l, 0, 8), 0);
    /* and the memory model adds them to the stage's scratch */
    cost_mem a, b;
    assert_int_equal(spec_layout_parse("pp=2,mbs=2,schedule=1f1b,precision=fp32", &l, err), SPEC_OK);
    cost_memory_rank(&m, &l, 16, 0, &a);
    spec_layout l2 = l;
    l2.schedule = SPEC_SCHED_GPIPE; /* gpipe: 2 + 2 + 2 slots, but 8 micro-batches in flight */
    cost_memory_rank(&m, &l2, 16, 0, &b);
    assert_int_equal(a.scratch_bytes, b.scratch_bytes);
}

/* A profile taken with more ranks than cores says what the comm layer's
 * sleeping waits cost (wait_coll_s, wake_s); the simulator charges every
 * collective of an op at least wait_coll_s and every wait for a transfer a
 * wake-up. With 1 s and 0.25 s every kernel is negligible and the step is
 * the count: tiny at tp 2, pp 2, one micro-batch, 2 blocks a stage, 2
 * all-reduces a block forward and 2 backward; stage 0's forward adds the
 * vocabulary-parallel embedding's, stage 1's the cross-entropy's 2 (row
 * max, then sum-exp and target) and its backward the final LayerNorm's: 20
 * on the critical path F0 F1 B1 B0. Two of those ops waited (F1, B0). Then
 * stage 0's step end: the tied embedding's all-reduce, the loss over pp,
 * the gradient norm over tp and pp: 4 more. A layout of 2 ranks on the 2
 * cores pays none of it. */
/* tiny's step under PROFILE measured by 4 ranks on 2 cores, with the
 * waits (1 s a collective after compute, 0.25 s a wake-up) or without */
static double step_of(const char *layout, int waits)
{
    char err[SPEC_ERR_LEN], text[8192];
    spec_model m;
    spec_cluster c;
    spec_layout l;
    assert_int_equal(spec_model_parse("tiny", &m, err), SPEC_OK);
    assert_int_equal(spec_cluster_parse("cpu,gpus_per_node=4", &c, err), SPEC_OK);
    assert_int_equal(spec_layout_parse(layout, &l, err), SPEC_OK);
    snprintf(text, sizeof text, "%sparam,ranks,4,,,,,,,\nparam,cores,2,,,,,,,\n%s", PROFILE,
             waits ? "param,wait_coll_s,1,,,,,,,\nparam,wake_s,0.25,,,,,,,\n" : "");
    cost_profile *p = NULL;
    assert_int_equal(cost_profile_load(write_csv(text), &p, err), SPEC_OK);
    assert_close(profile_params_of(p)->wait_coll_s, waits ? 1.0 : 0.0, 0, 0);
    cost_result r;
    assert_int_equal(cost_sim_run(&m, &c, &l, 1, p, NULL, NULL, &r, err), SPEC_OK);
    cost_profile_free(p);
    return r.step_time_s;
}

static void test_sleeping_waits_counted(void **state)
{
    (void)state;
    double plain = step_of("tp=2,pp=2,mbs=1,precision=fp32", 0);
    double waits = step_of("tp=2,pp=2,mbs=1,precision=fp32", 1);
    assert_true(plain < 1.0); /* 0.22 s */
    assert_true(waits >= 20 + 2 * 0.25 + 4);
    assert_true(waits <= 20 + 2 * 0.25 + 4 + plain);
    /* 2 ranks on the profile's 2 cores spin in their waits: nothing charged */
    assert_close(step_of("pp=2,mbs=1,precision=fp32", 1), step_of("pp=2,mbs=1,precision=fp32", 0), 0, 0);
    /* a negative or non-numeric wait is refused */
    char err[SPEC_ERR_LEN], text[8192];
    cost_profile *p = NULL;
    snprintf(text, sizeof text, "%sparam,wait_coll_s,-1,,,,,,,\n", PROFILE);
    assert_int_equal(cost_profile_load(write_csv(text), &p, err), SPEC_ERR);
    snprintf(text, sizeof text, "%sparam,wake_s,nan,,,,,,,\n", PROFILE);
    assert_int_equal(cost_profile_load(write_csv(text), &p, err), SPEC_ERR);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_measured_block_is_the_executor_sum),
        cmocka_unit_test(test_fused_mlp_rows_and_blocking_zero),
        cmocka_unit_test(test_loader_refuses_bad_kernel_rows),
        cmocka_unit_test(test_rows_by_precision),
        cmocka_unit_test(test_pipe_send_slots),
        cmocka_unit_test(test_speed_ratio),
        cmocka_unit_test(test_sleeping_waits_counted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
