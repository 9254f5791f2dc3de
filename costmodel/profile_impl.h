/* profile_impl.h — the inside of a cost_profile, shared by profile.c and
 * cost.c only (not part of the public contract). */
#ifndef TRIAD_PROFILE_IMPL_H
#define TRIAD_PROFILE_IMPL_H

#include "profile.h"

/* Efficiencies and overheads of one device kind (see profile.c for sources). */
typedef struct {
    double gemm_eff_max;      /* fraction of peak reached by large GEMMs */
    double gemm_dim_half;     /* dimension scale d of eff = max / (1 + d/m + d/n + d/k) */
    double hbm_eff;           /* fraction of HBM bandwidth reached by element-wise kernels */
    double nvlink_eff;        /* achievable fraction of intra-node bandwidth (busbw) */
    double ib_eff;            /* achievable fraction of inter-node bandwidth (busbw) */
    double launch_s;          /* host time to issue one kernel, seconds */
    double kernel_gap_s;      /* device idle between back-to-back kernels when the host runs ahead */
    double kernels_per_layer; /* forward kernels per block */
    double dropout;           /* 1: the modelled framework applies dropout (Megatron-LM runs), 0: none */
    double tp_bwd_overlap;    /* 1: backward tp collectives of column-parallel GEMMs overlap their
                                 weight-gradient GEMMs (Megatron-LM), 0: serial */
    double comm_sm_frac;      /* fraction of the SMs a collective's kernels hold while it overlaps a GEMM */
    double flash_attention;   /* 1: fused causal attention (no s x s matrix in memory), 0: explicit softmax */
    double attn_eff;          /* fraction of peak the fused attention kernels reach (flash_attention = 1) */
    double dp_overlap;        /* 1: data-parallel buckets reduce while backward computes (NCCL on its own
                                 stream), 0: the gradient reduction is exposed (MPI on busy CPU cores) */
    double ranks, cores;      /* measured profiles: ranks that ran at once on `cores` cores (0: not stated) */
    double wait_coll_s;       /* more ranks than cores: what a collective after compute costs beyond its
                                 lockstep time, its ranks sleeping between polls (0: not measured) */
    double wake_s;            /* more ranks than cores: a receive that waited for a computing rank, from the
                                 send to the receiver's return (0: not measured) */
} profile_params;

/* prec: the math the row was timed in (SPEC_PREC_*), or PROFILE_ANY_PREC for a
 * kernel whose work does not depend on it (element-wise, fp32 storage). */
#define PROFILE_ANY_PREC (-1)
typedef struct { double m, n, k, time_s; int prec; } profile_gemm;
typedef struct { int op, n; double bytes, time_s; } profile_coll;
/* A measured executor kernel other than a forward GEMM (triad profile):
 * name and its own dimensions (see executor/cmd_profile.c). */
typedef struct { char name[24]; double m, n, k, time_s; int prec; } profile_kernel;

struct cost_profile {
    char name[256];
    int builtin;
    profile_params params;
    profile_gemm *gemm;
    int n_gemm, cap_gemm;
    profile_coll *coll;
    int n_coll, cap_coll;
    profile_kernel *kern;
    int n_kern, cap_kern;
};

const profile_params *profile_sheet(spec_gpu_kind g);
const profile_params *profile_params_of(const cost_profile *p);
/* Measured GEMM time in math `prec` (rows timed in another math are not
 * used). -1 when the profile has none. */
double profile_gemm_time(const cost_profile *p, spec_precision prec, double m, double n, double k);
double profile_coll_time(const cost_profile *p, int op, int n, double bytes);
/* Measured time of kernel `name` at (m, n, k) in math `prec`: the exact
 * row, else the nearest row of that name by log-distance scaled by m n k.
 * -1 when the profile has no row of that name and math. */
double profile_kernel_time(const cost_profile *p, const char *name, spec_precision prec, double m, double n,
                           double k);
/* 1 when the profile measured the executor's kernels (then the cost model
 * sums them in the executor's call order instead of using its curves). */
int profile_has_kernels(const cost_profile *p);

#endif
