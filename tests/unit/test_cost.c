/* test_cost.c — the cost model against hand-computed values from the
 * papers (Narayanan et al. 2021, Korthikanti et al. 2022) and exact
 * alpha-beta arithmetic. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <string.h>

#include "assert_close.h"
#include "../../costmodel/cost.h"
#include "../../costmodel/shapes.h"
#include "../../costmodel/profile_impl.h"

static spec_model model(const char *name)
{
    spec_model m;
    char err[SPEC_ERR_LEN];
    assert_int_equal(spec_model_parse(name, &m, err), SPEC_OK);
    return m;
}

static spec_layout layout(const char *s)
{
    spec_layout l;
    char err[SPEC_ERR_LEN];
    assert_int_equal(spec_layout_parse(s, &l, err), SPEC_OK);
    return l;
}

/* Model FLOPs, GPT-3 175B, B = 1536, s = 2048: 72 B s l h^2 (1 + s/(6h) +
 * V/(12 l h)); hardware FLOPs with full recompute: Megatron's eq. (3),
 * 96 B s l h^2 (1 + s/(6h) + V/(16 l h)). */
static void test_flops_175b(void **state)
{
    (void)state;
    spec_model m = model("gpt3-175b");
    double B = 1536, s = 2048, l = 96, h = 12288, V = 51200;
    double mf = 72 * B * s * l * h * h * (1 + s / (6 * h) + V / (12 * l * h));
    double hf = 96 * B * s * l * h * h * (1 + s / (6 * h) + V / (16 * l * h));
    assert_close(cost_model_flops(&m, 1536), mf, 1e-12, 0);
    assert_close(cost_hardware_flops(&m, SPEC_RECOMPUTE_FULL, 1536), hf, 1e-12, 0);
    /* independent check: the 6 N D rule (N = 174.6e9 parameters, D =
     * 1536 x 2048 tokens) gives 3.295e18; the exact count adds attention
     * (s/6h = 2.8%) and differs from 6ND by under 5% */
    assert_close(mf, 6.0 * 174.6e9 * 1536 * 2048, 0.05, 0);
    /* one block forward: 24 b s h^2 + 4 b s^2 h */
    assert_close(cost_layer_fwd_flops(&m, 1), 24 * s * h * h + 4 * s * s * h, 1e-12, 0);
}

/* Parameters of one full model (tp = pp = 1) equal the closed form
 * 12 l h^2 (1 + 13/(12h) + (V + s)/(12 l h)) + 2h (final LayerNorm). */
static void test_param_count(void **state)
{
    (void)state;
    const char *names[] = {"gpt3-175b", "gpt2-124m", "megatron-1t", "tiny"};
    for (int i = 0; i < 4; i++) {
        spec_model m = model(names[i]);
        spec_layout l = layout("");
        double h = (double)m.hidden, L = (double)m.layers, V = (double)m.vocab, s = (double)m.seq;
        double expect = 12 * L * h * h * (1 + 13 / (12 * h) + (V + s) / (12 * L * h)) + 2 * h;
        assert_close((double)cost_shapes_param_elems(&m, &l, 0), expect, 1e-12, 0);
    }
    /* with tp = 8, pp = 8 the shards cover every block weight once */
    spec_model m = model("gpt3-175b");
    spec_layout l = layout("tp=8,pp=8");
    double sum = 0;
    for (int r = 0; r < 8; r++)
        sum += (double)cost_shapes_param_elems(&m, &l, r);
    /* 96 blocks x (12 h^2 / 8 + replicated LN (4h) and row-parallel biases
     * (2h) + column-parallel biases (3h + 4h)/8)
     * + wte/8 twice (stage 0 and the tied copy on stage 7) + wpe + final LN */
    double h = 12288, per = 12 * h * h / 8 + 6 * h + 7 * h / 8;
    assert_close(sum, 96 * per + 2 * 51200.0 / 8 * h + 2048 * h + 2 * h, 1e-12, 0);
}

/* Korthikanti et al. 2022: GPT-3 175B, s = 2048, b = 1, a = 96, h = 12288,
 * 5as/h = 80, sbh = 25,165,824:
 *   no parallelism: sbh (34 + 80) = 2,868,903,936 B
 *   tp = 8:         sbh (10 + 24/8 + 80/8) = 23 sbh = 578,813,952 B
 *   tp = 8, sp:     sbh/8 (34 + 80) = 358,612,992 B
 *   selective, sp:  sbh/8 * 34 = 106,954,752 B
 *   full:           2 sbh = 50,331,648 B */
static void test_korthikanti(void **state)
{
    (void)state;
    spec_model m = model("gpt3-175b");
    assert_close(cost_act_korthikanti_bytes(&m, 1, 1, 0, SPEC_RECOMPUTE_NONE), 2868903936.0, 1e-12, 0);
    assert_close(cost_act_korthikanti_bytes(&m, 1, 8, 0, SPEC_RECOMPUTE_NONE), 578813952.0, 1e-12, 0);
    assert_close(cost_act_korthikanti_bytes(&m, 1, 8, 1, SPEC_RECOMPUTE_NONE), 358612992.0, 1e-12, 0);
    assert_close(cost_act_korthikanti_bytes(&m, 1, 8, 1, SPEC_RECOMPUTE_SELECTIVE), 106954752.0, 1e-12, 0);
    assert_close(cost_act_korthikanti_bytes(&m, 1, 1, 0, SPEC_RECOMPUTE_FULL), 50331648.0, 1e-12, 0);
}

/* The executor's inventory (shapes.h) is Korthikanti's set without dropout:
 * 34 sbh minus the two 1-byte dropout masks (2 sbh) = 32 sbh, 5 a s^2 b
 * minus the dropout mask and output (3 a s^2 b) = 2 a s^2 b, plus the fp32
 * LayerNorm statistics the executor keeps in the working precision
 * (4 tensors of s b elements). In bf16, tp = 1. */
static void test_inventory_vs_paper(void **state)
{
    (void)state;
    spec_model m = model("gpt3-175b");
    spec_layout l = layout("precision=bf16");
    shapes_tensor t[32];
    int n = cost_shapes_layer_acts(&m, &l, SPEC_RECOMPUTE_NONE, t, 32);
    double ours = 2.0 * (double)cost_shapes_sum_elems(t, n);
    double s = 2048, h = 12288, a = 96;
    double paper = cost_act_korthikanti_bytes(&m, 1, 1, 0, SPEC_RECOMPUTE_NONE);
    assert_close(ours, paper - 2 * s * h - 3 * a * s * s + 4 * 2 * s, 1e-12, 0);
    /* full recompute keeps the block input only: Korthikanti's 2 sbh */
    n = cost_shapes_layer_acts(&m, &l, SPEC_RECOMPUTE_FULL, t, 32);
    assert_close(2.0 * (double)cost_shapes_sum_elems(t, n),
                 cost_act_korthikanti_bytes(&m, 1, 1, 0, SPEC_RECOMPUTE_FULL), 1e-12, 0);
}

/* Ring all-reduce of 1 GB over 8 devices of one DGX A100 node:
 * 2 (7/8) 1e9 / (300e9 x nvlink_eff) + 2 x 7 x 3 us. */
static void test_collectives(void **state)
{
    (void)state;
    spec_cluster c;
    char err[SPEC_ERR_LEN];
    assert_int_equal(spec_cluster_parse("dgx-a100-80gb", &c, err), SPEC_OK);
    const cost_profile *p = cost_profile_builtin(c.gpu);
    double eff = 0.77, bw = 300e9 * eff;
    assert_close(cost_collective_s(COST_ALLREDUCE, 8, 1e9, 0, &c, p), 1.75e9 / bw + 14 * 3e-6, 1e-12, 0);
    assert_close(cost_collective_s(COST_ALLGATHER, 8, 1e9, 0, &c, p), 0.875e9 / bw + 7 * 3e-6, 1e-12, 0);
    /* across nodes: 25 GB/s per GPU x ib_eff, 5 us */
    assert_close(cost_collective_s(COST_REDUCESCATTER, 4, 1e9, 1, &c, p), 0.75e9 / (25e9 * 0.88) + 3 * 5e-6,
                 1e-12, 0);
    assert_close(cost_collective_s(COST_P2P, 2, 1e6, 1, &c, p), 1e6 / (25e9 * 0.88) + 5e-6, 1e-12, 0);
    assert_close(cost_collective_s(COST_ALLREDUCE, 1, 1e9, 0, &c, p), 0.0, 0, 0);
    assert_close(cost_busbw_factor(COST_ALLREDUCE, 8), 1.75, 1e-15, 0);
    assert_close(cost_busbw_factor(COST_ALLGATHER, 8), 0.875, 1e-15, 0);
    assert_close(cost_busbw_factor(COST_P2P, 2), 1.0, 1e-15, 0);
}

static void test_in_flight(void **state)
{
    (void)state;
    spec_layout l = layout("pp=4,schedule=1f1b");
    int expect8[4] = {4, 3, 2, 1}, expect2[4] = {2, 2, 2, 1};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(cost_in_flight(&l, i, 8), expect8[i]);
        assert_int_equal(cost_in_flight(&l, i, 2), expect2[i]);
    }
    l = layout("pp=4,schedule=gpipe");
    assert_int_equal(cost_in_flight(&l, 0, 8), 8);
    assert_int_equal(cost_in_flight(&l, 3, 8), 8);
    /* interleaved, p = 4, v = 2, m = 8: rank 0 holds (3*2 + 1*4 + 1) = 11
     * chunk micro-batches = 6 whole micro-batches (rounded up) */
    l = layout("pp=4,schedule=interleaved,v=2");
    assert_int_equal(cost_in_flight(&l, 0, 8), 6);
    assert_int_equal(cost_in_flight(&l, 3, 8), 3);
    assert_int_equal(cost_in_flight_chunks(&l, 0, 8), 11);
    assert_int_equal(cost_in_flight_chunks(&l, 3, 8), 5); /* (2 - 1) * 4 + 1 */
    /* m == p: every forward first (Megatron-LM), all m v chunk-micro-batches */
    assert_int_equal(cost_in_flight_chunks(&l, 3, 4), 8);
    assert_int_equal(cost_in_flight(&l, 3, 4), 4);
}

/* The breakdown sums to the step time; memory decides what fits; ZeRO-1
 * divides the optimizer state by dp. */
static void test_predict_175b(void **state)
{
    (void)state;
    spec_model m = model("gpt3-175b");
    spec_cluster c;
    char err[SPEC_ERR_LEN];
    assert_int_equal(spec_cluster_parse("dgx-a100-80gb", &c, err), SPEC_OK);
    spec_layout l = layout("tp=8,pp=8,dp=16,recompute=full");
    c = cost_cluster_for_layout(&c, &l);
    cost_result r;
    assert_int_equal(cost_predict(&m, &c, &l, 1536, NULL, &r, err), SPEC_OK);
    double sum = r.compute_s + r.tp_comm_s + r.pp_comm_s + r.dp_comm_exposed_s + r.bubble_s + r.optimizer_s;
    assert_close(sum, r.step_time_s, 1e-12, 0);
    assert_true(r.fits);
    assert_int_equal(r.n_micro, 96);
    /* the bubble is (p - 1) of (m + p - 1) stage times: 7/103 of the
     * pipeline part */
    assert_close(r.bubble_s / (r.compute_s + r.tp_comm_s + r.pp_comm_s + r.bubble_s), 7.0 / 103.0, 1e-9, 0);
    /* MFU from its definition */
    assert_close(r.mfu, cost_model_flops(&m, 1536) / r.step_time_s / (1024 * 312e12), 1e-12, 0);
    /* no parallelism at all: 175B x 16 B = 2.8 TB, cannot fit 80 GB */
    spec_layout one = layout("");
    assert_int_equal(cost_predict(&m, &c, &one, 8, NULL, &r, err), SPEC_OK);
    assert_false(r.fits);
    assert_true(r.mem_peak_bytes > 2.79e12);
    /* ZeRO-1 shards the 12 B/param optimizer state over dp = 16 */
    cost_mem a, b;
    spec_layout z0 = layout("tp=8,pp=8,dp=16"), z1 = layout("tp=8,pp=8,dp=16,zero=1");
    cost_memory_rank(&m, &z0, 1536, 3, &a);
    cost_memory_rank(&m, &z1, 1536, 3, &b);
    assert_close((double)b.optim_bytes, (double)((a.param_elems + 15) / 16) * 12, 0, 0);
    assert_int_equal(a.param_bytes, b.param_bytes);
}

/* Bad layouts are refused with the field named. */
static void test_predict_rejects(void **state)
{
    (void)state;
    spec_model m = model("tiny");
    spec_cluster c;
    char err[SPEC_ERR_LEN];
    assert_int_equal(spec_cluster_parse("dgx-a100-80gb", &c, err), SPEC_OK);
    cost_result r;
    spec_layout l = layout("tp=3");
    assert_int_equal(cost_predict(&m, &c, &l, 8, NULL, &r, err), SPEC_ERR);
    assert_non_null(strstr(err, "tp=3"));
    l = layout("dp=3");
    assert_int_equal(cost_predict(&m, &c, &l, 8, NULL, &r, err), SPEC_ERR);
    assert_non_null(strstr(err, "global batch 8"));
}

/* Korthikanti et al. 2022, Table 4: one transformer layer of their 22B
 * model (h 6144, 64 heads, s 2048, micro-batch 4, tp 8) on DGX A100,
 * forward / backward milliseconds (backward includes any recomputation):
 * baseline 7.7 / 11.9, sp 7.2 / 11.8, full recompute 7.7 / 19.5,
 * selective 7.7 / 13.2, selective + sp 7.2 / 13.1. The model's block
 * times (built-in A100 profile, Megatron-LM mode) must land within 4% of
 * each, and the recomputation overheads they imply (sp -3%, full +39%,
 * selective +7%, selective + sp +4%) within 3 points. */
static void test_korthikanti_table4(void **state)
{
    (void)state;
    spec_model m = model("layers=48,hidden=6144,heads=64,ffn=24576,vocab=51200,seq=2048");
    spec_cluster c;
    char err[SPEC_ERR_LEN];
    assert_int_equal(spec_cluster_parse("dgx-a100-80gb", &c, err), SPEC_OK);
    const char *lay[] = {"tp=8,mbs=4", "tp=8,mbs=4,sp=1", "tp=8,mbs=4,recompute=full",
                         "tp=8,mbs=4,recompute=selective", "tp=8,mbs=4,sp=1,recompute=selective"};
    const double fwd_ms[] = {7.7, 7.2, 7.7, 7.7, 7.2}, bwd_ms[] = {11.9, 11.8, 19.5, 13.2, 13.1};
    double base = 0;
    for (int i = 0; i < 5; i++) {
        spec_layout l = layout(lay[i]);
        cost_block b;
        cost_block_times(&m, &c, &l, l.recompute, NULL, &b);
        double f = 1e3 * (b.fwd_s + b.tp_fwd_s), bw = 1e3 * (b.bwd_s + b.recompute_s + b.tp_bwd_s);
        print_message("%-38s fwd %5.2f ms (paper %4.1f)  bwd %5.2f ms (paper %4.1f)\n", lay[i], f, fwd_ms[i], bw,
                      bwd_ms[i]);
        assert_close(f, fwd_ms[i], 0.04, 0);
        assert_close(bw, bwd_ms[i], 0.04, 0);
        if (i == 0)
            base = f + bw;
        double paper = (fwd_ms[i] + bwd_ms[i]) / (fwd_ms[0] + bwd_ms[0]) - 1.0;
        assert_close((f + bw) / base - 1.0, paper, 0, 0.03);
    }
}

/* Launches are asynchronous: a block costs its device time unless issuing
 * its kernels takes the host longer, and then exactly the host time. */
static void test_async_launch(void **state)
{
    (void)state;
    spec_model m = model("gpt3-175b");
    spec_cluster c;
    char err[SPEC_ERR_LEN];
    assert_int_equal(spec_cluster_parse("dgx-a100-80gb", &c, err), SPEC_OK);
    spec_layout l = layout("tp=8,mbs=1");
    cost_profile p = *cost_profile_builtin(SPEC_GPU_A100_80GB);
    cost_block a, b;
    p.params.launch_s = 1e-9;
    cost_block_times(&m, &c, &l, l.recompute, &p, &a);
    p.params.launch_s = 2e-9; /* still far below the device time: nothing changes */
    cost_block_times(&m, &c, &l, l.recompute, &p, &b);
    assert_close(b.fwd_s, a.fwd_s, 0, 0);
    assert_close(b.bwd_s, a.bwd_s, 0, 0);
    p.params.launch_s = 1e-3; /* 30 kernels x 1 ms: the host is the bottleneck */
    cost_block_times(&m, &c, &l, l.recompute, &p, &b);
    assert_close(b.fwd_s, 30 * 1e-3, 1e-12, 0);
    assert_close(b.bwd_s, 60 * 1e-3, 1e-12, 0);
    assert_true(a.fwd_s < 30 * 1e-3);
}

/* Backward tp collectives: serial, or overlapped with the column-parallel
 * GEMMs (exposed = what the GEMM does not cover, plus the SMs NCCL
 * holds meanwhile), by hand from the same collective and GEMM times. */
static void test_tp_overlap(void **state)
{
    (void)state;
    spec_model m = model("layers=48,hidden=6144,heads=64,ffn=24576,vocab=51200,seq=2048");
    spec_cluster c;
    char err[SPEC_ERR_LEN];
    assert_int_equal(spec_cluster_parse("dgx-a100-80gb", &c, err), SPEC_OK);
    cost_profile p = *cost_profile_builtin(SPEC_GPU_A100_80GB);
    int64_t bs = 4 * 2048, h = 6144, f = 24576, t = 8;
    double bytes = 2.0 * (double)bs * (double)h;
    double ar = cost_collective_s(COST_ALLREDUCE, 8, bytes, 0, &c, &p);
    double ag = cost_collective_s(COST_ALLGATHER, 8, bytes, 0, &c, &p);
    double rs = cost_collective_s(COST_REDUCESCATTER, 8, bytes, 0, &c, &p);
    double wq = cost_gemm_s(3 * h / t, h, bs, &c, &p, SPEC_PREC_BF16), wf = cost_gemm_s(f / t, h, bs, &c, &p, SPEC_PREC_BF16);
    double dq = cost_gemm_s(bs, h, 3 * h / t, &c, &p, SPEC_PREC_BF16), df = cost_gemm_s(bs, h, f / t, &c, &p, SPEC_PREC_BF16);
    cost_block b;
    spec_layout l = layout("tp=8,mbs=4");
    p.params.tp_bwd_overlap = 0;
    cost_block_times(&m, &c, &l, l.recompute, &p, &b);
    assert_close(b.tp_bwd_s, 2 * ar, 1e-12, 0);
    assert_close(b.tp_fwd_s, 2 * ar, 1e-12, 0);
    p.params.tp_bwd_overlap = 1, p.params.comm_sm_frac = 0;
    cost_block_times(&m, &c, &l, l.recompute, &p, &b);
    assert_close(b.tp_bwd_s, fmax(0, ar - wq) + fmax(0, ar - wf), 1e-12, 0);
    p.params.comm_sm_frac = 0.15;
    cost_block_times(&m, &c, &l, l.recompute, &p, &b);
    assert_close(b.tp_bwd_s, fmax(0, ar - wq) + fmax(0, ar - wf) + 0.15 * (fmin(ar, wq) + fmin(ar, wf)), 1e-12, 0);
    /* full recompute redoes the forward's two all-reduces, never hidden */
    l = layout("tp=8,mbs=4,recompute=full");
    cost_block_times(&m, &c, &l, l.recompute, &p, &b);
    assert_close(b.tp_bwd_s, fmax(0, ar - wq) + fmax(0, ar - wf) + 0.15 * (fmin(ar, wq) + fmin(ar, wf)) + 2 * ar, 1e-12, 0);
    /* sp: the row-parallel output-gradient all-gather is exposed; the
     * column-parallel input all-gather hides under the data gradient, the
     * reduce-scatter under the weight gradient */
    l = layout("tp=8,mbs=4,sp=1");
    cost_block_times(&m, &c, &l, l.recompute, &p, &b);
    double e = 0, dg[2] = {dq, df}, wg[2] = {wq, wf};
    for (int i = 0; i < 2; i++)
        e += ag + fmax(0, ag - dg[i]) + 0.15 * fmin(ag, dg[i]) + fmax(0, rs - wg[i]) + 0.15 * fmin(rs, wg[i]);
    assert_close(b.tp_bwd_s, e, 1e-12, 0);
    p.params.tp_bwd_overlap = 0;
    cost_block_times(&m, &c, &l, l.recompute, &p, &b);
    assert_close(b.tp_bwd_s, 2 * (2 * ag + rs), 1e-12, 0);
}

/* The optimizer step reads and writes 36 bytes per parameter of the
 * rank's (sharded) state: grad norm 2, Adam 2 + 12 + 12, master to bf16
 * 4 + 2, zero grads 2. */
static void test_optimizer_bytes(void **state)
{
    (void)state;
    spec_model m = model("gpt3-175b");
    spec_cluster c;
    char err[SPEC_ERR_LEN];
    assert_int_equal(spec_cluster_parse("dgx-a100-80gb", &c, err), SPEC_OK);
    spec_layout l = layout("tp=8,pp=8,dp=4,zero=1");
    cost_comm cm;
    cost_comm_times(&m, &c, &l, NULL, &cm);
    int64_t P = 0;
    for (int r = 0; r < 8; r++)
        if (cost_shapes_param_elems(&m, &l, r) > P)
            P = cost_shapes_param_elems(&m, &l, r);
    assert_close(cm.optimizer_s, 36.0 * (double)((P + 3) / 4) / (2039e9 * 0.80), 1e-12, 0);
}

/* ZeRO memory and traffic of `tiny` (4 blocks, h 64, ffn 256, V 64, s 32)
 * on dp 2, fp32, by hand. A block: LayerNorms 4*64, qkv 64*192 + 192, attproj
 * 64*64 + 64, fc 64*256 + 256, fcproj 256*64 + 64 = 49984; extras wte 64*64,
 * wpe 32*64, lnf 2*64 = 6272; P = 4 * 49984 + 6272 = 206208, slice S =
 * 103104. ZeRO-1: whole gradients P, the slice's mean gradient S in scratch,
 * m and v of S. ZeRO-2: one block's window + the extras + S of gradients, a
 * block-sized landing buffer (min(S, 49984)) in scratch. Traffic: ZeRO-1
 * one reduce-scatter of P; ZeRO-2 one of the extras per step and one of
 * each block per micro-batch, all exposed without dp_overlap and only the
 * excess over the block's backward with it. */
static void test_zero_memory_and_traffic(void **state)
{
    (void)state;
    spec_model m = model("tiny");
    spec_layout z0 = layout("dp=2,precision=fp32"), z1 = layout("dp=2,zero=1,precision=fp32"),
                z2 = layout("dp=2,zero=2,precision=fp32");
    cost_mem a, b, d;
    cost_memory_rank(&m, &z0, 8, 0, &a);
    cost_memory_rank(&m, &z1, 8, 0, &b);
    cost_memory_rank(&m, &z2, 8, 0, &d);
    assert_int_equal(a.param_elems, 206208);
    assert_int_equal(a.grad_bytes, 4 * 206208);
    assert_int_equal(b.grad_bytes, 4 * 206208);
    assert_int_equal(d.grad_bytes, 4 * (49984 + 6272 + 103104));
    assert_int_equal(a.optim_bytes, 8 * 206208);
    assert_int_equal(b.optim_bytes, 8 * 103104);
    assert_int_equal(d.optim_bytes, 8 * 103104);
    assert_int_equal(b.scratch_bytes - a.scratch_bytes, 4 * 103104);
    assert_int_equal(d.scratch_bytes - a.scratch_bytes, 4 * 49984);
    assert_int_equal(cost_shapes_grad_elems(&m, &z2, 0), 49984 + 6272);
    /* ZeRO-3 as the executor runs it: the weights' slice, one block's
     * window they are gathered into and the extras whole; the gradients
     * and the landing buffer as ZeRO-2's */
    spec_layout z3 = layout("dp=2,zero=3,precision=fp32");
    cost_mem e;
    cost_memory_rank(&m, &z3, 8, 0, &e);
    assert_int_equal(e.param_bytes, 4 * (103104 + 49984 + 6272));
    assert_int_equal(e.grad_bytes, 4 * (103104 + 49984 + 6272));
    assert_int_equal(e.optim_bytes, 8 * 103104);
    assert_int_equal(e.scratch_bytes, d.scratch_bytes);
    assert_int_equal(cost_shapes_weight_elems(&m, &z3, 0), 49984 + 6272);
    assert_int_equal(cost_shapes_weight_elems(&m, &z2, 0), 206208);
    spec_layout z2one = layout("zero=2,precision=fp32"); /* dp 1: nothing to partition */
    assert_int_equal(cost_shapes_grad_elems(&m, &z2one, 0), 206208);

    spec_cluster c;
    char err[SPEC_ERR_LEN];
    assert_int_equal(spec_cluster_parse("dgx-a100-80gb", &c, err), SPEC_OK);
    cost_comm c1, c2;
    cost_comm_times(&m, &c, &z1, NULL, &c1);
    cost_comm_times(&m, &c, &z2, NULL, &c2);
    assert_close(c1.zero_rs_s, cost_collective_s(COST_REDUCESCATTER, 2, 4.0 * 206208, 0, &c, NULL), 1e-12, 0);
    assert_close(c2.zero_rs_s, cost_collective_s(COST_REDUCESCATTER, 2, 4.0 * 6272, 0, &c, NULL), 1e-12, 0);
    double rs = cost_collective_s(COST_REDUCESCATTER, 2, 4.0 * 49984, 0, &c, NULL);
    assert_close(c2.zero2_rs_layer_s, rs, 1e-12, 0);
    assert_close(c2.zero_ag_s, c1.zero_ag_s, 1e-12, 0);
    assert_close(c1.zero2_bwd_layer_s, 0, 0, 0);
    cost_block blk;
    cost_block_times(&m, &c, &z2, z2.recompute, NULL, &blk); /* the A100 profile overlaps (dp_overlap 1) */
    assert_close(c2.zero2_bwd_layer_s, fmax(0.0, rs - (blk.bwd_s + blk.recompute_s + blk.tp_bwd_s)), 1e-12, 0);
    cost_profile p = *cost_profile_builtin(c.gpu);
    p.params.dp_overlap = 0;
    cost_comm_times(&m, &c, &z2, &p, &c2);
    assert_close(c2.zero2_bwd_layer_s, c2.zero2_rs_layer_s, 1e-12, 0);
    /* without overlap the step pays every reduce-scatter: 8 micro-batches
     * x 4 blocks more of the block's than ZeRO-1, and the extras' in place
     * of the whole vector's */
    cost_result r1, r2;
    assert_int_equal(cost_predict(&m, &c, &z1, 16, &p, &r1, err), SPEC_OK);
    assert_int_equal(cost_predict(&m, &c, &z2, 16, &p, &r2, err), SPEC_OK);
    assert_int_equal(r2.n_micro, 8);
    cost_comm_times(&m, &c, &z1, &p, &c1);
    assert_close(r2.dp_comm_exposed_s - r1.dp_comm_exposed_s, 8 * 4 * c2.zero2_rs_layer_s + c2.zero_rs_s - c1.zero_rs_s,
                 1e-9, 0);
    /* ZeRO-3 without overlap: besides ZeRO-2's reduce-scatters, each block
     * gathered twice per micro-batch (8 x 4 x 2 gathers of 49984 weights),
     * and after the step only the extras' 6272 in place of the whole
     * vector's */
    cost_comm c3;
    cost_comm_times(&m, &c, &z3, &p, &c3);
    double ag = cost_collective_s(COST_ALLGATHER, 2, 4.0 * 49984, 0, &c, &p);
    assert_close(c3.zero3_ag_layer_s, ag, 1e-12, 0);
    assert_close(c3.zero3_fwd_layer_s, ag, 1e-12, 0);
    assert_close(c3.zero3_bwd_layer_s, ag + c2.zero2_rs_layer_s, 1e-12, 0);
    assert_close(c3.zero3_edge_s, 0, 0, 0);
    assert_close(c3.zero2_bwd_layer_s, 0, 0, 0);
    assert_close(c3.zero_rs_s, c2.zero_rs_s, 1e-12, 0);
    assert_close(c3.zero_ag_s, cost_collective_s(COST_ALLGATHER, 2, 4.0 * 6272, 0, &c, &p), 1e-12, 0);
    cost_result r3;
    assert_int_equal(cost_predict(&m, &c, &z3, 16, &p, &r3, err), SPEC_OK);
    assert_close(r3.dp_comm_exposed_s - r2.dp_comm_exposed_s, 8 * 4 * 2 * ag + c3.zero_ag_s - c2.zero_ag_s, 1e-9, 0);
    /* with overlap (the A100 profile): the excess over compute, and the
     * first gathers of forward and backward */
    cost_comm_times(&m, &c, &z3, NULL, &c3);
    assert_close(c3.zero3_edge_s, 2.0 * c3.zero3_ag_layer_s, 1e-12, 0);
    assert_close(c3.zero3_bwd_layer_s,
                 fmax(0.0, c3.zero3_ag_layer_s + c3.zero2_rs_layer_s - (blk.bwd_s + blk.recompute_s + blk.tp_bwd_s)),
                 1e-12, 0);
}

/* Fused attention (the H100 profile's flash_attention = 1, or attn=flash):
 * per block the s x s probabilities give way to one log-sum-exp per row,
 * kept also under selective recomputation (there is nothing s x s for it to
 * drop), and scratch holds neither their gradient nor their recomputed copy
 * (with full recomputation, the recomputed log-sum-exp instead). Exact
 * element counts by hand; the A100 profile and the executor's explicit
 * attention keep the probabilities; the executor with attn=flash predicts
 * what the H100 profile does. */
static void test_fused_attention_memory(void **state)
{
    (void)state;
    char err[SPEC_ERR_LEN];
    spec_model m;
    spec_cluster h, a;
    spec_layout l;
    assert_int_equal(spec_model_parse("gpt3-1.3b,seq=4096", &m, err), SPEC_OK);
    assert_int_equal(spec_cluster_parse("dgx-h100-80gb", &h, err), SPEC_OK);
    assert_int_equal(spec_cluster_parse("dgx-a100-80gb", &a, err), SPEC_OK);
    const char *lays[] = {"tp=2,pp=2,dp=2,mbs=2", "tp=2,pp=2,dp=2,mbs=2,recompute=selective",
                          "tp=4,mbs=1,recompute=full"};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(spec_layout_parse(lays[i], &l, err), SPEC_OK);
        int64_t gb = 64;
        for (int r = 0; r < l.pp; r++) {
            cost_mem plain, fused, a100;
            cost_memory_rank(&m, &l, gb, r, &plain);
            cost_memory_rank_profile(&m, &h, &l, gb, r, NULL, &fused);
            cost_memory_rank_profile(&m, &a, &l, gb, r, NULL, &a100);
            assert_int_equal(a100.total_bytes, plain.total_bytes);
            double rows = (double)l.mbs * (double)(m.heads / l.tp) * (double)m.seq, S = (double)m.seq;
            /* the probabilities and their gradient in bf16 (2 bytes), the
             * log-sum-exp fp32 (4 bytes, as every row statistic) */
            double per_block = l.recompute == SPEC_RECOMPUTE_NONE        ? 2 * rows * S - 4 * rows
                               : l.recompute == SPEC_RECOMPUTE_SELECTIVE ? -4 * rows
                                                                         : 0.0;
            double layers = (double)cost_shapes_rank_layers(&m, &l, r);
            double act = per_block * layers * plain.in_flight;
            double scratch = l.recompute == SPEC_RECOMPUTE_NONE        ? 2 * rows * S
                             : l.recompute == SPEC_RECOMPUTE_SELECTIVE ? 4 * rows * S
                                                                       : 4 * rows * S - 4 * rows;
            assert_close((double)(plain.act_bytes - fused.act_bytes), act, 0, 0);
            assert_close((double)(plain.scratch_bytes - fused.scratch_bytes), scratch, 0, 0);
            assert_close((double)(plain.total_bytes - fused.total_bytes), act + scratch, 0, 0);
            spec_layout lf = l;
            lf.flash = 1;
            cost_mem own;
            cost_memory_rank(&m, &lf, gb, r, &own);
            assert_int_equal(own.total_bytes, fused.total_bytes);
        }
    }
}

/* The shipped profile CSVs hold the same parameters as the built-in ones. */
static void test_profile_file_matches_builtin(void **state)
{
    (void)state;
    const char *files[] = {"profiles/dgx-a100-80gb.csv", "profiles/dgx-a100-40gb.csv", "profiles/dgx-h100-80gb.csv",
                           "profiles/dgx-h200-141gb.csv"};
    spec_gpu_kind kinds[] = {SPEC_GPU_A100_80GB, SPEC_GPU_A100_40GB, SPEC_GPU_H100_80GB, SPEC_GPU_H200_141GB};
    for (int i = 0; i < 4; i++) {
        cost_profile *p = NULL;
        char err[SPEC_ERR_LEN];
        int rc = cost_profile_load(files[i], &p, err);
        if (rc)
            print_error("%s\n", err);
        assert_int_equal(rc, SPEC_OK);
        const profile_params *a = profile_params_of(p), *b = profile_params_of(cost_profile_builtin(kinds[i]));
        /* every field, the measurement conditions (0 in both) included */
        assert_int_equal(sizeof *a % sizeof(double), 0);
        const double *x = (const double *)a, *y = (const double *)b;
        for (size_t k = 0; k < sizeof *a / sizeof(double); k++) {
            if (x[k] != y[k])
                print_error("%s: parameter %zu is %g, built in %g\n", files[i], k, x[k], y[k]);
            assert_true(x[k] == y[k]);
        }
        cost_profile_free(p);
    }
    cost_profile_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fused_attention_memory),
        cmocka_unit_test(test_flops_175b),      cmocka_unit_test(test_param_count),
        cmocka_unit_test(test_korthikanti),     cmocka_unit_test(test_inventory_vs_paper),
        cmocka_unit_test(test_collectives),     cmocka_unit_test(test_in_flight),
        cmocka_unit_test(test_predict_175b),    cmocka_unit_test(test_predict_rejects),
        cmocka_unit_test(test_profile_file_matches_builtin), cmocka_unit_test(test_korthikanti_table4),
        cmocka_unit_test(test_async_launch),    cmocka_unit_test(test_tp_overlap),
        cmocka_unit_test(test_optimizer_bytes), cmocka_unit_test(test_zero_memory_and_traffic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
