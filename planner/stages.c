/* stages.c — the stage-partition MILP (GLPK) and its DP oracle (see
 * stages.h for the problem and why counts are an exact formulation). */
#include "stages.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glpk.h>

double plan_stage_time(const plan_stage_problem *pr, int s, const int *counts)
{
    double t = pr->t_extra_s[s];
    for (int r = 0; r < pr->n_rc; r++)
        t += counts[r] * pr->t_block_s[r];
    return t;
}

double plan_stage_mem(const plan_stage_problem *pr, int s, const int *counts)
{
    double m = pr->mem_extra_bytes[s] + pr->in_flight[s] * pr->act_extra_bytes[s];
    for (int r = 0; r < pr->n_rc; r++)
        m += counts[r] * (pr->static_block_bytes + pr->in_flight[s] * pr->act_block_bytes[r]);
    return m;
}

static int check_problem(const plan_stage_problem *pr, char err[SPEC_ERR_LEN])
{
    if (pr->p < 1 || pr->p > SPEC_MAX_PP || pr->layers < pr->p || pr->n_rc < 1 ||
        pr->n_rc > PLAN_MAX_RC) {
        snprintf(err, SPEC_ERR_LEN, "stages: bad problem (p=%d, layers=%d, options=%d)", pr->p,
                 pr->layers, pr->n_rc);
        return SPEC_ERR;
    }
    return SPEC_OK;
}

/* The stage whose cheapest-memory single block still overflows the least,
 * for the explanation of an infeasible problem. */
static void explain_infeasible(const plan_stage_problem *pr, plan_stage_solution *sol)
{
    int L = pr->layers, p = pr->p;
    double worst = -DBL_MAX;
    int ws = 0;
    /* the most even split with the lightest option */
    int best_r = 0;
    for (int r = 1; r < pr->n_rc; r++)
        if (pr->act_block_bytes[r] < pr->act_block_bytes[best_r])
            best_r = r;
    for (int s = 0; s < p; s++) {
        int c[PLAN_MAX_RC] = {0};
        c[best_r] = L / p + (s < L % p);
        double over = plan_stage_mem(pr, s, c) - pr->mem_cap_bytes;
        if (over > worst) {
            worst = over;
            ws = s;
        }
    }
    sol->worst_stage = ws;
    sol->worst_over_bytes = worst;
}

static void fill_layers(const plan_stage_problem *pr, plan_stage_solution *sol)
{
    for (int s = 0; s < pr->p; s++) {
        sol->stage_layers[s] = 0;
        for (int r = 0; r < pr->n_rc; r++)
            sol->stage_layers[s] += sol->counts[s][r];
    }
}

int plan_stages_milp(const plan_stage_problem *pr, plan_stage_solution *sol, char err[SPEC_ERR_LEN])
{
    memset(sol, 0, sizeof *sol);
    if (check_problem(pr, err))
        return SPEC_ERR;
    int p = pr->p, R = pr->n_rc;
    int nv = p * R + 1; /* n[s][r] then T */
    int T = nv;
    glp_term_out(GLP_OFF);
    glp_prob *lp = glp_create_prob();
    int *ia = NULL, *ja = NULL;
    double *ar = NULL;
    int rc = SPEC_OK;
    glp_set_obj_dir(lp, GLP_MIN);
    glp_add_cols(lp, nv);
    for (int s = 0; s < p; s++)
        for (int r = 0; r < R; r++) {
            int j = 1 + s * R + r;
            glp_set_col_kind(lp, j, GLP_IV);
            glp_set_col_bnds(lp, j, GLP_DB, 0.0, (double)pr->layers);
        }
    glp_set_col_kind(lp, T, GLP_CV);
    glp_set_col_bnds(lp, T, GLP_LO, 0.0, 0.0);
    glp_set_obj_coef(lp, T, 1.0);
    /* rows: 1 total; p at-least-one; p time; p memory */
    int nrows = 1 + 3 * p;
    glp_add_rows(lp, nrows);
    int cap = 1 + (p * R) * 4 + p + 8;
    ia = malloc((size_t)cap * sizeof *ia);
    ja = malloc((size_t)cap * sizeof *ja);
    ar = malloc((size_t)cap * sizeof *ar);
    int k = 0;
    glp_set_row_bnds(lp, 1, GLP_FX, pr->layers, pr->layers);
    for (int s = 0; s < p; s++)
        for (int r = 0; r < R; r++) {
            k++;
            ia[k] = 1, ja[k] = 1 + s * R + r, ar[k] = 1.0;
        }
    for (int s = 0; s < p; s++) {
        int row_one = 2 + s, row_t = 2 + p + s, row_m = 2 + 2 * p + s;
        glp_set_row_bnds(lp, row_one, GLP_LO, 1.0, 0.0);
        /* sum_r n t_r - T <= -t_extra */
        glp_set_row_bnds(lp, row_t, GLP_UP, 0.0, -pr->t_extra_s[s]);
        double fixed = pr->mem_extra_bytes[s] + pr->in_flight[s] * pr->act_extra_bytes[s];
        glp_set_row_bnds(lp, row_m, GLP_UP, 0.0, (pr->mem_cap_bytes - fixed) / 1e9);
        for (int r = 0; r < R; r++) {
            int j = 1 + s * R + r;
            k++, ia[k] = row_one, ja[k] = j, ar[k] = 1.0;
            k++, ia[k] = row_t, ja[k] = j, ar[k] = pr->t_block_s[r];
            /* memory row in GB keeps the coefficients well scaled */
            k++, ia[k] = row_m, ja[k] = j,
            ar[k] = (pr->static_block_bytes + pr->in_flight[s] * pr->act_block_bytes[r]) / 1e9;
        }
        k++, ia[k] = row_t, ja[k] = T, ar[k] = -1.0;
    }
    glp_load_matrix(lp, k, ia, ja, ar);
    glp_iocp parm;
    glp_init_iocp(&parm);
    parm.presolve = GLP_ON;
    parm.msg_lev = GLP_MSG_OFF;
    parm.mip_gap = 0.0;
    int ret = glp_intopt(lp, &parm);
    int status = glp_mip_status(lp);
    if (ret == GLP_ENOPFS || ret == GLP_ENODFS || (ret == 0 && status == GLP_NOFEAS)) {
        sol->feasible = 0;
        explain_infeasible(pr, sol);
        goto done;
    }
    if (ret != 0) {
        snprintf(err, SPEC_ERR_LEN, "stages: GLPK glp_intopt failed with code %d (%s)", ret,
                 ret == GLP_EBOUND ? "GLP_EBOUND" : ret == GLP_EFAIL ? "GLP_EFAIL"
                 : ret == GLP_EMIPGAP ? "GLP_EMIPGAP" : ret == GLP_ETMLIM ? "GLP_ETMLIM"
                 : ret == GLP_ESTOP ? "GLP_ESTOP" : ret == GLP_EROOT ? "GLP_EROOT" : "other");
        rc = SPEC_ERR;
        goto done;
    }
    if (status != GLP_OPT) {
        snprintf(err, SPEC_ERR_LEN, "stages: GLPK MIP status %d is not optimal (%s)", status,
                 status == GLP_FEAS ? "GLP_FEAS" : status == GLP_UNDEF ? "GLP_UNDEF" : "other");
        rc = SPEC_ERR;
        goto done;
    }
    sol->feasible = 1;
    for (int s = 0; s < p; s++)
        for (int r = 0; r < R; r++)
            sol->counts[s][r] = (int)lround(glp_mip_col_val(lp, 1 + s * R + r));
    fill_layers(pr, sol);
    /* the objective from the integer solution itself (exact, no LP round-off) */
    sol->t_max_s = 0;
    for (int s = 0; s < p; s++) {
        double t = plan_stage_time(pr, s, sol->counts[s]);
        if (t > sol->t_max_s)
            sol->t_max_s = t;
    }
done:
    free(ia);
    free(ja);
    free(ar);
    glp_delete_prob(lp);
    return rc;
}

/* Best composition of a stage holding c blocks: the fastest recompute mix
 * that fits (R <= 3: enumerate two counts, the third is implied). */
static double best_stage(const plan_stage_problem *pr, int s, int c, int *best_counts)
{
    double best = INFINITY;
    int R = pr->n_rc;
    int lim1 = R > 1 ? c : 0;
    for (int a = 0; a <= c; a++) {
        for (int b = 0; b <= (R > 1 ? c - a : 0) && b <= lim1; b++) {
            int cnt[PLAN_MAX_RC] = {0};
            if (R == 1) {
                if (a != c)
                    continue;
                cnt[0] = c;
            } else if (R == 2) {
                if (a + b != c)
                    continue;
                cnt[0] = a, cnt[1] = b;
            } else {
                cnt[0] = a, cnt[1] = b, cnt[2] = c - a - b;
            }
            if (plan_stage_mem(pr, s, cnt) > pr->mem_cap_bytes)
                continue;
            double t = plan_stage_time(pr, s, cnt);
            if (t < best) {
                best = t;
                memcpy(best_counts, cnt, sizeof cnt);
            }
        }
    }
    return best;
}

int plan_stages_dp(const plan_stage_problem *pr, plan_stage_solution *sol, char err[SPEC_ERR_LEN])
{
    memset(sol, 0, sizeof *sol);
    if (check_problem(pr, err))
        return SPEC_ERR;
    int p = pr->p, L = pr->layers;
    /* bt[s][c]: best time of stage s with c blocks; f[s][j]: best max over
     * stages 0..s holding j blocks; arg for reconstruction */
    double *bt = malloc(sizeof(double) * p * (L + 1));
    int *bc = malloc(sizeof(int) * p * (L + 1) * PLAN_MAX_RC);
    double *f = malloc(sizeof(double) * p * (L + 1));
    int *arg = malloc(sizeof(int) * p * (L + 1));
    for (int i = 0; i < p * (L + 1); i++)
        f[i] = INFINITY, arg[i] = -1;
    for (int s = 0; s < p; s++)
        for (int c = 0; c <= L; c++)
            bt[s * (L + 1) + c] = c == 0 ? INFINITY : best_stage(pr, s, c, &bc[(s * (L + 1) + c) * PLAN_MAX_RC]);
    for (int s = 0; s < p; s++)
        for (int j = 0; j <= L; j++) {
            f[s * (L + 1) + j] = INFINITY;
            arg[s * (L + 1) + j] = -1;
            for (int c = 1; c <= j; c++) {
                double prev = s == 0 ? (j == c ? 0.0 : INFINITY) : f[(s - 1) * (L + 1) + j - c];
                double v = fmax(prev, bt[s * (L + 1) + c]);
                if (v < f[s * (L + 1) + j]) {
                    f[s * (L + 1) + j] = v;
                    arg[s * (L + 1) + j] = c;
                }
            }
        }
    double best = f[(p - 1) * (L + 1) + L];
    if (!isfinite(best)) {
        sol->feasible = 0;
        explain_infeasible(pr, sol);
    } else {
        sol->feasible = 1;
        sol->t_max_s = best;
        int j = L;
        for (int s = p - 1; s >= 0; s--) {
            int c = arg[s * (L + 1) + j];
            memcpy(sol->counts[s], &bc[(s * (L + 1) + c) * PLAN_MAX_RC], sizeof(int) * PLAN_MAX_RC);
            j -= c;
        }
        fill_layers(pr, sol);
    }
    free(bt);
    free(bc);
    free(f);
    free(arg);
    return SPEC_OK;
}
