/* cmd_report.c — `triad report`: run every feasible layout of a job on this
 * machine, join the measurements with the predictions, write a comparison
 * table and plots.
 *
 * For each layout dp x tp x pp = N (every tp that divides heads, hidden, ffn
 * and vocab; every pp that divides the layers; every micro-batch size of
 * --mbs that divides the per-replica batch; GPipe and 1F1B when pp > 1 and
 * a replica has at least two micro-batches — with one they are the same op
 * order — and interleaved 1F1B with v = 2 chunks per rank where pp * 2
 * divides into the layers and pp the micro-batches; explicit attention, or with --attn fused attention (attn=flash)
 * too or instead) the
 * report predicts the step time with the event simulator and the memory
 * peak with the cost model, both from the profile given (a measured one from
 * `triad profile`, or the built-in sheet), then runs
 *   mpirun -np N triad train --model M --layout L --global-batch B ...
 * as a child process (or, with --measured DIR, reads the metrics a previous
 * report left there) and takes the median step time after the warm-up steps
 * and the measured memory peak. With --repeat K the whole list runs K times
 * in turn and each layout reports the lowest of its K medians: the passes
 * run one after the other, so a slow spell of a shared machine hits one
 * pass of a layout, not all, and its noise only ever slows a run down (the
 * same statistic as triad profile's passes, so prediction and measurement
 * both describe the undisturbed machine). Outputs, in --out DIR:
 *   comparison.csv   one row per layout (schema in the README)
 *   speed.csv        with a measured executor profile: the median ratio of
 *                    the profile's kernels timed again (at the smallest
 *                    micro-batch, before the first layout and after the
 *                    last) to their profiled times: the machine's drift
 *   step_time.svg    predicted and measured step time per layout
 *   ranking.svg      measured vs predicted, one point per layout, y = x
 *   runs/            each run's metrics CSV and log
 * The planner side of triad has no MPI, so the runs are separate processes:
 * exactly what a user would type.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <glob.h>
#include <math.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../common/cmds.h"
#include "../common/log.h"
#include "../common/spec.h"
#include "../costmodel/cost.h"
#include "../costmodel/profile.h"
#include "../costmodel/sim.h"

extern char **environ;

#define MAX_LAYOUTS 256
#define CONTENDERS 3 /* measured fastest layouts that --confirm runs again, besides the pick */

typedef struct {
    spec_layout l;
    char name[160]; /* for people: "dp2 tp1 pp2 mbs1 1f1b ..." */
    char arg[160];  /* for triad train --layout */
    double pred_s, meas_s;
    int64_t pred_mem, meas_mem;
    int pred_rank, meas_rank;
    int ok;
    int passes; /* runs read; meas_s is the fastest of them */
    double meas_hi; /* the slowest pass */
    double pass_s[2]; /* the first two passes' medians */
    double pred_comm_s, meas_comm_s; /* time not computing: closed form; rank 0 blocked in comm (NAN: not recorded) */
} report_row;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: triad report --model M --gpus N --global-batch B --out DIR [--profile FILE]\n"
            "                    [--steps 12] [--warmup-steps 3] [--mbs 1,2,4] [--data D (markov over the vocab)]\n"
            "                    [--repeat 2] [--confirm 2] [--measured DIR] [--device cpu|cuda|emu] [--attn explicit|flash|explicit,flash]\n"
            "                    [--precision fp32|bf16] [--schedules 1f1b,gpipe,interleaved] [--zero 0,1,2,3] [--force]\n"
            "\n"
            "Runs every feasible layout of the job on this machine (N ranks under mpirun, on the\n"
            "backend of --device, cpu by default: the one the profile measured), joins the\n"
            "measured step time and memory with triad's predictions and\n"
            "writes DIR/comparison.csv, DIR/step_time.svg and DIR/ranking.svg. --measured DIR\n"
            "reads the runs of an earlier report instead of running them. --repeat K runs the\n"
            "list K times in turn and reports each layout's fastest pass (median step); then\n"
            "--confirm C more passes run over the predicted fastest and the three measured\n"
            "fastest, so that the comparison that decides the pick is not one lucky pass. --attn\n"
            "picks the attention of the layouts (explicit by default; both doubles the list).\n"
            "--schedules: the pipeline schedules of the layouts with pp > 1 (all three by default;\n"
            "interleaved runs v=2 chunks per rank). --zero: the ZeRO stages of the layouts with\n"
            "dp > 1 (0 by default).\n"
            "--precision: the layouts' math (fp32 by default; bf16 on cuda or emu, predicted from\n"
            "the profile's bf16 rows). With a profile of triad's executor the report times its\n"
            "kernels again at tp=1 and the smallest micro-batch before the layouts and after them\n"
            "(DIR/speed.csv, DIR/runs/speed_*.csv): how much slower or faster the machine ran\n"
            "than when it was profiled, and the errors of the predictions at that speed.\n"
            "The mpirun command\n"
            "is $TRIAD_MPIRUN (default: mpirun --oversubscribe, all ranks on this machine, with\n"
            "Open MPI's ob1 engine unless OMPI_MCA_pml says otherwise); threads per rank are\n"
            "$OMP_NUM_THREADS (default: cores / N, at least 1).\n");
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of t[skip..n) (sorts that part), NAN when empty. */
static double median_from(double *t, int n, int skip)
{
    if (n <= skip)
        return NAN;
    int k = n - skip;
    qsort(t + skip, (size_t)k, sizeof *t, cmp_double);
    return t[skip + k / 2];
}

/* Median step time and time blocked in communication (NAN when the file
 * has no comm_s column) after `skip` warm-up steps, and the largest
 * measured memory peak, from a `triad train --metrics` CSV. */
static int read_metrics(const char *path, int skip, double *step_s, double *comm_s, int64_t *mem)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char line[4096];
    int col_t = -1, col_m = -1, col_c = -1, n = 0, cap = 0;
    double *t = NULL, *cs = NULL;
    *mem = 0;
    *comm_s = NAN;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#')
            continue;
        if (col_t < 0) { /* header */
            int i = 0;
            for (char *tok = strtok(line, ",\n"); tok; tok = strtok(NULL, ",\n"), i++) {
                if (!strcmp(tok, "step_time_s"))
                    col_t = i;
                if (!strcmp(tok, "mem_peak_bytes"))
                    col_m = i;
                if (!strcmp(tok, "comm_s"))
                    col_c = i;
            }
            if (col_t < 0 || col_m < 0)
                break;
            continue;
        }
        int i = 0;
        double ts = NAN, tc = NAN;
        long long mb = -1;
        for (char *tok = strtok(line, ",\n"); tok; tok = strtok(NULL, ",\n"), i++) {
            if (i == col_t)
                ts = strtod(tok, NULL);
            if (i == col_c)
                tc = strtod(tok, NULL);
            if (i == col_m)
                mb = strtoll(tok, NULL, 10);
        }
        if (mb > *mem)
            *mem = mb;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            double *nt = realloc(t, sizeof *t * (size_t)cap), *nc = nt ? realloc(cs, sizeof *cs * (size_t)cap) : NULL;
            if (nt)
                t = nt;
            if (nc)
                cs = nc;
            if (!nt || !nc)
                break;
        }
        t[n] = ts;
        cs[n++] = tc;
    }
    fclose(f);
    int rc = -1;
    if (n > skip && col_t >= 0) {
        *step_s = median_from(t, n, skip);
        if (col_c >= 0)
            *comm_s = median_from(cs, n, skip);
        rc = isfinite(*step_s) && *step_s > 0 && *mem > 0 ? 0 : -1;
    }
    free(t);
    free(cs);
    return rc;
}

/* Run one layout: mpirun -np N <this triad> train ..., stdout and stderr to
 * the log. Returns the exit status (or -1 when it could not start). */
/* mpirun -np n <this triad> args... (NULL-terminated, at most 20), its
 * output into logpath; waits. Returns the exit status (128 + the signal
 * that ended it), or -1 when it could not start. */
static int run_triad(const char *mpirun, int n, const char *const *args, const char *logpath)
{
    char self[4096];
    ssize_t k = readlink("/proc/self/exe", self, sizeof self - 1);
    if (k <= 0)
        return -1;
    self[k] = 0;
    char np[16];
    snprintf(np, sizeof np, "%d", n);
    /* the mpirun command may carry options: split it on spaces */
    char mcopy[1024];
    snprintf(mcopy, sizeof mcopy, "%s", mpirun);
    char *argv[64];
    int a = 0;
    for (char *tok = strtok(mcopy, " "); tok && a < 40; tok = strtok(NULL, " "))
        argv[a++] = tok;
    argv[a++] = "-np";
    argv[a++] = np;
    argv[a++] = self;
    for (int i = 0; args[i] && i < 20; i++)
        argv[a++] = (char *)args[i];
    argv[a] = NULL;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, logpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc) {
        log_msg("report: cannot start '%s': %s", argv[0], strerror(rc));
        return -1;
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

static int run_layout(const char *mpirun, int n, const char *model, const char *layout, long long batch,
                      const char *data, int steps, const char *metrics, const char *logpath, const char *device)
{
    char gb[32], st[16];
    snprintf(gb, sizeof gb, "%lld", batch);
    snprintf(st, sizeof st, "%d", steps);
    /* the backend the profile measured (--device) */
    const char *args[] = {"train", "--device", device, "--model", model, "--layout", layout, "--global-batch", gb,
                          "--data", data, "--steps", st, "--lr", "1e-3", "--metrics", metrics, "--quiet", NULL};
    return run_triad(mpirun, n, args, logpath);
}

/* v as comparison.csv writes it (%.6g): the order line ranks the file's
 * numbers, so that two predictions that agree to 6 digits tie there too. */
static double as_written(double v)
{
    char b[40];
    snprintf(b, sizeof b, "%.6g", v);
    return strtod(b, NULL);
}

/* Average ranks (1-based; tied values share the mean of their places) of
 * x[0..n) into r. n <= MAX_LAYOUTS. */
static void average_ranks(const double *x, int n, double *r)
{
    int idx[MAX_LAYOUTS];
    for (int i = 0; i < n; i++)
        idx[i] = i;
    for (int i = 1; i < n; i++) /* insertion sort by value: n is small */
        for (int j = i; j > 0 && x[idx[j]] < x[idx[j - 1]]; j--) {
            int t = idx[j];
            idx[j] = idx[j - 1], idx[j - 1] = t;
        }
    for (int i = 0; i < n;) {
        int j = i;
        while (j + 1 < n && x[idx[j + 1]] == x[idx[i]])
            j++;
        for (int q = i; q <= j; q++)
            r[idx[q]] = 0.5 * (double)(i + j) + 1.0;
        i = j + 1;
    }
}

/* Spearman's rank correlation of x and y: Pearson's correlation of their
 * average ranks (ties, such as a GPipe and a 1F1B layout predicted alike,
 * share a rank). NaN when n < 3 or either side is all ties. */
static double spearman_rho(const double *x, const double *y, int n)
{
    if (n < 3)
        return NAN;
    double rx[MAX_LAYOUTS], ry[MAX_LAYOUTS], mean = 0.5 * (double)(n + 1), sxy = 0, sxx = 0, syy = 0;
    average_ranks(x, n, rx);
    average_ranks(y, n, ry);
    for (int i = 0; i < n; i++) {
        sxy += (rx[i] - mean) * (ry[i] - mean);
        sxx += (rx[i] - mean) * (rx[i] - mean);
        syy += (ry[i] - mean) * (ry[i] - mean);
    }
    return sxx > 0 && syy > 0 ? sxy / sqrt(sxx * syy) : NAN;
}

/* Orders of rows[] pointers by the times as comparison.csv writes them;
 * equal ones keep the rows' order, so that the pick the contenders are
 * confirmed for is the pick the summary names and the file's first row of
 * its lowest prediction. */
static int cmp_written(const report_row *x, const report_row *y, double tx, double ty)
{
    tx = as_written(tx), ty = as_written(ty);
    int c = (tx > ty) - (tx < ty);
    return c ? c : (x > y) - (x < y);
}
static int cmp_pred(const void *a, const void *b)
{
    const report_row *x = *(report_row *const *)a, *y = *(report_row *const *)b;
    return cmp_written(x, y, x->pred_s, y->pred_s);
}
static int cmp_meas(const void *a, const void *b)
{
    const report_row *x = *(report_row *const *)a, *y = *(report_row *const *)b;
    return cmp_written(x, y, x->meas_s, y->meas_s);
}

static int write_plots(const char *dir, const report_row *rows, int n, const char *title)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/plot.dat", dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    /* sorted by measured time: the bars read as a ranking */
    const report_row *order[MAX_LAYOUTS];
    int k = 0;
    for (int i = 0; i < n; i++)
        if (rows[i].ok)
            order[k++] = &rows[i];
    qsort(order, (size_t)k, sizeof order[0], cmp_meas);
    fprintf(f, "# index layout predicted_ms measured_ms\n");
    for (int i = 0; i < k; i++) {
        char lab[160];
        const spec_layout *ol = &order[i]->l;
        snprintf(lab, sizeof lab, "dp%d tp%d pp%d mbs%d%s%s", ol->dp, ol->tp, ol->pp, ol->mbs,
                 ol->pp == 1 ? "" : ol->schedule == SPEC_SCHED_GPIPE ? " gpipe"
                                  : ol->schedule == SPEC_SCHED_INTERLEAVED ? " interl." : " 1f1b",
                 ol->zero == 1 ? " z1" : ol->zero == 2 ? " z2" : ol->zero == 3 ? " z3" : "");
        fprintf(f, "%d \"%s\" %.6g %.6g\n", i, lab, 1e3 * order[i]->pred_s, 1e3 * order[i]->meas_s);
    }
    fclose(f);
    snprintf(path, sizeof path, "%s/plot.gp", dir);
    f = fopen(path, "w");
    if (!f)
        return -1;
    fprintf(f,
            "set datafile separator whitespace\n"
            "set terminal svg size 1100,600 dynamic font 'sans,12' background '#ffffff'\n"
            "set output 'step_time.svg'\n"
            "set title \"%s: step time per layout, predicted vs measured (sorted by measured)\"\n"
            "set ylabel 'step time (ms)'\n"
            "set style data histogram\nset style histogram clustered gap 1\nset style fill solid 0.8 border -1\n"
            "set boxwidth 0.9\nset xtics rotate by -40 noenhanced\nset rmargin 12\nset key top left\nset grid ytics\n"
            "set yrange [0:*]\n"
            "plot 'plot.dat' using 3:xtic(2) title 'predicted (triad)' lc rgb '#4477aa', \\\n"
            "     '' using 4 title 'measured' lc rgb '#ee6677'\n"
            "set output 'ranking.svg'\n"
            "set terminal svg size 700,640 dynamic font 'sans,12' background '#ffffff'\n"
            "set title \"%s\\nmeasured vs predicted step time, one point per layout\"\n"
            "unset xtics\nset xtics\nset rmargin -1\nset xlabel 'predicted step time (ms)'\nset ylabel 'measured step time (ms)'\n"
            "set style data points\nset key top left\nset autoscale\nset xrange [0:*]\nset yrange [0:*]\n"
            "plot 'plot.dat' using 3:4 with points pt 7 ps 1.2 lc rgb '#ee6677' title 'layout', \\\n"
            "     x with lines lc rgb '#888888' dt 2 title 'measured = predicted', \\\n"
            "     1.15*x with lines lc rgb '#bbbbbb' dt 3 title '+-15%%', 0.85*x with lines lc rgb '#bbbbbb' dt 3 "
            "notitle\n",
            title, title);
    fclose(f);
    char cmd[4400];
    snprintf(cmd, sizeof cmd, "cd '%s' && gnuplot plot.gp 2> plot.log", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Remove the runs an earlier report left in `runs` (its layoutNN*.csv and
 * .log; replacing them is what --force asked for): a later --measured
 * would otherwise read an old pass as one of this report's. */
static void clear_runs(const char *runs)
{
    static const char *const pat[] = {"%s/layout[0-9][0-9]*.csv", "%s/layout[0-9][0-9]*.log"};
    for (int k = 0; k < 2; k++) {
        char p[4300];
        snprintf(p, sizeof p, pat[k], runs);
        glob_t g = {0};
        if (glob(p, 0, NULL, &g) == 0) {
            for (size_t i = 0; i < g.gl_pathc; i++)
                remove(g.gl_pathv[i]);
            globfree(&g);
        }
    }
}

/* What every run of a report shares. */
typedef struct {
    const char *mpirun;
    int gpus;
    const char *model, *data, *device;
    long long batch;
    int steps, warm;
    const char *measured; /* read the runs of an earlier report here (NULL: run them) */
    const char *runs;     /* where this report's runs go */
} report_run;

/* One pass of layout i (row w): run it (or read the earlier report's run),
 * fold its median step time into the fastest pass, its memory peak into
 * the largest. Pass p > 0 is in runs/layoutNN.r<p+1>.csv. Returns 0, 1 when
 * --measured has no such pass (an earlier report with fewer passes), -1
 * when the run failed (the row is dropped). */
static int take_pass(const report_run *r, report_row *w, int i, int pass, const char *what)
{
    char metrics[4300], logp[4300], sfx[16] = "";
    if (pass > 0)
        snprintf(sfx, sizeof sfx, ".r%d", pass + 1);
    snprintf(metrics, sizeof metrics, "%s/layout%02d%s.csv", r->measured ? r->measured : r->runs, i + 1, sfx);
    snprintf(logp, sizeof logp, "%s/layout%02d%s.log", r->runs, i + 1, sfx);
    if (r->measured && pass > 0 && access(metrics, R_OK))
        return 1;
    if (!r->measured) {
        fprintf(stderr, "triad: report: [%s] %s\n", what, w->name);
        remove(metrics);
        int rc = run_layout(r->mpirun, r->gpus, r->model, w->arg, r->batch, r->data, r->steps, metrics, logp,
                            r->device);
        if (rc) {
            log_msg("report: %s: the run failed (exit %d), see %s", w->name, rc, logp);
            w->ok = 0;
            return -1;
        }
    }
    double t, tc;
    int64_t mem;
    if (read_metrics(metrics, r->warm, &t, &tc, &mem)) {
        log_msg("report: %s: no usable metrics in '%s'", w->name, metrics);
        w->ok = 0;
        return -1;
    }
    int first = w->passes == 0;
    if (first || t < w->meas_s) { /* the fastest pass, and its time blocked in comm (NAN stays NAN) */
        w->meas_s = t;
        w->meas_comm_s = tc;
    }
    w->meas_hi = first ? t : fmax(w->meas_hi, t);
    if (w->passes < 2)
        w->pass_s[w->passes] = t;
    if (first || mem > w->meas_mem)
        w->meas_mem = mem;
    w->passes++;
    w->ok = 1;
    return 0;
}

/* A shared machine's speed moves between the profile and the report, and
 * moves every error one way with it. Re-time the profile's kernels now, at
 * tp=1 and micro-batch mbs, into runs/speed_<when>.csv — triad profile with its
 * default samples and passes, the statistic a profile is taken with (one
 * pass of 3 samples, which includes the first calls' warm-up, timed the
 * demo's kernels 1.41x a default profile taken the same minute): seconds —
 * and return the median ratio of the new times to the profile's
 * (cost_profile_speed_ratio; above 1: slower now), NAN when the profile
 * could not run. */
static double recheck_speed(const report_run *r, const cost_profile *prof, int mbs, const char *prec,
                            const char *when, int *shapes)
{
    char mb[16], path[4300], logp[4300], err[SPEC_ERR_LEN];
    snprintf(mb, sizeof mb, "%d", mbs);
    snprintf(path, sizeof path, "%s/speed_%s.csv", r->runs, when);
    snprintf(logp, sizeof logp, "%s/speed_%s.log", r->runs, when);
    *shapes = 0;
    fprintf(stderr, "triad: report: [machine speed, %s the layouts] the profile's kernels at mbs %d\n", when, mbs);
    const char *args[] = {"profile", "--device", r->device, "--model", r->model, "--mbs", mb, "--precision", prec,
                          "--tp", "1", "--kernels-only", "--out", path, "--force", NULL};
    if (run_triad(r->mpirun, r->gpus, args, logp)) {
        log_msg("report: re-timing the profile's kernels failed, see %s", logp);
        return NAN;
    }
    cost_profile *again = NULL;
    if (cost_profile_load(path, &again, err)) {
        log_msg("%s", err);
        return NAN;
    }
    double x = cost_profile_speed_ratio(prof, again, shapes);
    cost_profile_free(again);
    return x;
}

/* The layouts the report measures again (indices into rows, the measured
 * ones only): first the predicted fastest, then the CONTENDERS measured
 * fastest other than it, in the orders the summary ranks by. Returns how
 * many. */
static int pick_contenders(report_row *rows, int n, int *out)
{
    report_row *order[MAX_LAYOUTS];
    int m = 0, k = 0;
    for (int i = 0; i < n; i++)
        if (rows[i].ok)
            order[m++] = &rows[i];
    if (m == 0)
        return 0;
    qsort(order, (size_t)m, sizeof order[0], cmp_pred);
    const report_row *pick = order[0];
    out[k++] = (int)(pick - rows);
    qsort(order, (size_t)m, sizeof order[0], cmp_meas);
    for (int i = 0; i < m && k < CONTENDERS + 1; i++)
        if (order[i] != pick)
            out[k++] = (int)(order[i] - rows);
    return k;
}

int report_cmd_report(int argc, char **argv)
{
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},   {"gpus", required_argument, 0, 'g'},
        {"global-batch", required_argument, 0, 'b'}, {"out", required_argument, 0, 'o'},
        {"profile", required_argument, 0, 'p'}, {"steps", required_argument, 0, 's'},
        {"warmup-steps", required_argument, 0, 'w'}, {"mbs", required_argument, 0, 'u'},
        {"data", required_argument, 0, 'd'},    {"measured", required_argument, 0, 'M'},
        {"force", no_argument, 0, 'f'},         {"help", no_argument, 0, 'h'},
        {"repeat", required_argument, 0, 'r'},  {"device", required_argument, 0, 'D'},
        {"attn", required_argument, 0, 'A'},    {"precision", required_argument, 0, 'q'},
        {"confirm", required_argument, 0, 'C'}, {"schedules", required_argument, 0, 'S'},
        {"zero", required_argument, 0, 'Z'},
        {0, 0, 0, 0}};
    const char *model_s = NULL, *out = NULL, *profile_s = NULL, *mbs_s = "1,2,4", *measured = NULL, *zero_s = "0";
    const char *data = NULL; /* default: a Markov source over the model's vocabulary */
    const char *device = "cpu";
    long gpus = 0, steps = 12, warm = 3, repeat = 2, confirm = 2;
    long long batch = 0;
    int force = 0, attn_mask = 1; /* bit 0: explicit attention, bit 1: fused (attn=flash) */
    int sched_mask = 7;           /* bit 0: 1f1b, 1: gpipe, 2: interleaved (pp > 1) */
    spec_precision prec = SPEC_PREC_FP32;
    optind = 1;
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'm': model_s = optarg; break;
        case 'o': out = optarg; break;
        case 'p': profile_s = optarg; break;
        case 'u': mbs_s = optarg; break;
        case 'Z': zero_s = optarg; break;
        case 'd': data = optarg; break;
        case 'M': measured = optarg; break;
        case 'D':
            if (strcmp(optarg, "cpu") && strcmp(optarg, "cuda") && strcmp(optarg, "emu"))
                log_die_input("report: --device '%s' is not one of cpu, cuda, emu", optarg);
            device = optarg;
            break;
        case 'A':
            attn_mask = !strcmp(optarg, "explicit") ? 1 : !strcmp(optarg, "flash") ? 2
                        : (!strcmp(optarg, "explicit,flash") || !strcmp(optarg, "flash,explicit")) ? 3 : 0;
            if (!attn_mask)
                log_die_input("report: --attn '%s' is not one of explicit, flash, explicit,flash", optarg);
            break;
        case 'S': {
            sched_mask = 0;
            char list[128];
            snprintf(list, sizeof list, "%s", optarg);
            for (char *save = NULL, *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                int b = !strcmp(t, "1f1b") ? 1 : !strcmp(t, "gpipe") ? 2 : !strcmp(t, "interleaved") ? 4 : 0;
                if (!b)
                    log_die_input("report: --schedules '%s': '%s' is not one of 1f1b, gpipe, interleaved", optarg, t);
                sched_mask |= b;
            }
            if (!sched_mask)
                log_die_input("report: --schedules '%s' names no schedule", optarg);
            break;
        }
        case 'q': {
            int q = spec_precision_from_name(optarg);
            if (q < 0)
                log_die_input("report: --precision '%s' is not one of fp32, bf16", optarg);
            prec = (spec_precision)q;
            break;
        }
        case 'f': force = 1; break;
        case 'g': gpus = log_opt_long("report", "gpus", optarg, 1, 64); break;
        case 'b': batch = log_opt_long("report", "global-batch", optarg, 1, 1 << 20); break;
        case 's': steps = log_opt_long("report", "steps", optarg, 2, 100000); break;
        case 'w': warm = log_opt_long("report", "warmup-steps", optarg, 0, 100000); break;
        case 'r': repeat = log_opt_long("report", "repeat", optarg, 1, 100); break;
        case 'C': confirm = log_opt_long("report", "confirm", optarg, 0, 100); break;
        case 'h': usage(stdout); return 0;
        default:
            log_msg("report: unknown or incomplete option '%s' (see triad report --help)", argv[optind - 1]);
            return TRIAD_EXIT_INPUT;
        }
    }
    if (optind < argc)
        log_die_input("report: unexpected argument '%s'", argv[optind]);
    if (!model_s || !gpus || !batch || !out)
        log_die_input("report: missing %s (see triad report --help)",
                      !model_s ? "--model" : !gpus ? "--gpus" : !batch ? "--global-batch" : "--out");
    if (warm >= steps)
        log_die_input("report: --warmup-steps %ld leaves no measured step of --steps %ld", warm, steps);
    int mbs[16];
    int n_mbs = spec_parse_int_list(mbs_s, mbs, 16);
    if (n_mbs <= 0)
        log_die_input("report: --mbs '%s' is not a comma-separated list of integers in 1..4096", mbs_s);
    int zeros[4], n_zero = 0;
    {
        char list[64];
        snprintf(list, sizeof list, "%s", zero_s);
        for (char *save = NULL, *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            if (strlen(t) != 1 || t[0] < '0' || t[0] > '3' || n_zero == 4)
                log_die_input("report: --zero '%s': '%s' is not a ZeRO stage (0, 1, 2 or 3)", zero_s, t);
            zeros[n_zero++] = t[0] - '0';
        }
        if (n_zero == 0)
            log_die_input("report: --zero '%s' names no ZeRO stage", zero_s);
    }
    char err[SPEC_ERR_LEN];
    spec_model m;
    if (spec_model_parse(model_s, &m, err))
        log_die_input("%s", err);
    spec_cluster c;
    char cs[64];
    snprintf(cs, sizeof cs, "cpu,gpus_per_node=%ld", gpus); /* one machine: every group inside it */
    if (spec_cluster_parse(cs, &c, err))
        log_die_input("%s", err);
    cost_profile *prof = NULL;
    if (profile_s && cost_profile_load(profile_s, &prof, err))
        log_die_input("%s", err);
    const cost_profile *P = prof ? prof : cost_profile_builtin(c.gpu);
    if (prec == SPEC_PREC_BF16 && !strcmp(device, "cpu"))
        log_die_input("report: --precision bf16: the cpu backend trains in fp32 only (bf16 math runs on "
                      "--device cuda or emu)");
    if (prec == SPEC_PREC_BF16 && !cost_profile_is_executor(P))
        log_die_input("report: --precision bf16 needs --profile FILE measured by triad profile on the device");
    if (!cost_profile_has_precision(P, prec))
        log_die_input("report: --precision %s: profile '%s' timed no %s kernels (triad profile --precision %s)",
                      spec_precision_name(prec), cost_profile_name(P), spec_precision_name(prec),
                      spec_precision_name(prec));
    char data_default[96];
    if (!data) {
        snprintf(data_default, sizeof data_default, "markov:vocab=%d,order=1,seed=7", (int)m.vocab);
        data = data_default;
    }

    char path[4200];
    snprintf(path, sizeof path, "%s/comparison.csv", out);
    if (!force && access(path, F_OK) == 0)
        log_die_input("report: '%s' exists (pass --force to replace it)", path);
    if (mkdir(out, 0755) && errno != EEXIST)
        log_die("report: cannot create '%s': %s", out, strerror(errno));
    char runs[4200];
    snprintf(runs, sizeof runs, "%s/runs", out);
    if (!measured && mkdir(runs, 0755) && errno != EEXIST)
        log_die("report: cannot create '%s': %s", runs, strerror(errno));
    if (!measured)
        clear_runs(runs);

    /* threads per rank: the machine's cores shared among the ranks (unless
     * the user chose; triad's own start-up choice was for one process) */
    if (!getenv("OMP_NUM_THREADS") || getenv("TRIAD_THREADS_AUTO")) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        char th[16];
        snprintf(th, sizeof th, "%ld", cores / gpus > 0 ? cores / gpus : 1);
        setenv("OMP_NUM_THREADS", th, 1);
    }
    setenv("OMPI_MCA_rmaps_base_oversubscribe", "1", 0);
    /* The default mpirun starts every rank on this machine, where Open MPI's
     * ob1 engine carries it all (over shared memory): choosing it skips the
     * probing of the other engines, ~0.2 s of each run's ~0.8 s start here.
     * Left alone when the user names the mpirun or the engine. */
    if (!getenv("TRIAD_MPIRUN"))
        setenv("OMPI_MCA_pml", "ob1", 0);
    const char *mpirun = getenv("TRIAD_MPIRUN") ? getenv("TRIAD_MPIRUN") : "mpirun";

    /* ---- the feasible layouts ---- */
    static report_row rows[MAX_LAYOUTS];
    int n = 0;
    for (int tp = 1; tp <= gpus; tp++) {
        if (gpus % tp || m.heads % tp || m.hidden % tp || m.ffn % tp || m.vocab % tp)
            continue;
        for (int pp = 1; pp <= gpus / tp; pp++) {
            if ((gpus / tp) % pp || m.layers % pp)
                continue;
            int dp = (int)gpus / tp / pp;
            for (int i = 0; i < n_mbs; i++)
                for (int zi = 0; zi < n_zero; zi++) {
                    if (zeros[zi] > 0 && dp == 1)
                        continue; /* nothing to partition */
                    for (int k = 0; k < 2 * (pp > 1 ? 3 : 1); k++) {
                        int sch = k / 2, fa = k % 2;
                        if (!(attn_mask & (1 << fa)) || (pp > 1 && !(sched_mask & (1 << sch))))
                            continue;
                        spec_layout l;
                        spec_layout_default(&l);
                        l.tp = tp;
                        l.pp = pp;
                        l.dp = dp;
                        l.mbs = mbs[i];
                        l.schedule = sch == 0 ? SPEC_SCHED_1F1B : sch == 1 ? SPEC_SCHED_GPIPE : SPEC_SCHED_INTERLEAVED;
                        l.v = sch == 2 ? 2 : 1;
                        l.precision = prec;
                        l.flash = fa;
                        l.zero = zeros[zi];
                        if (spec_layout_check(&l, &m, batch, (int)gpus, err))
                            continue;
                        if (sch == 1 && spec_layout_n_micro(&l, batch) < 2)
                            continue; /* one micro-batch: GPipe is 1F1B */
                        cost_result r;
                        if (cost_predict(&m, &c, &l, batch, P, &r, err) || !r.fits)
                            continue;
                        if (n == MAX_LAYOUTS)
                            break;
                        report_row *w = &rows[n++];
                        memset(w, 0, sizeof *w);
                        w->l = l;
                        spec_layout_format(&l, w->name, sizeof w->name);
                        snprintf(w->arg, sizeof w->arg, "dp=%d,tp=%d,pp=%d,mbs=%d,schedule=%s,v=%d,zero=%d,precision=%s%s",
                                 dp, tp, pp, l.mbs, spec_schedule_name(l.schedule), l.v, l.zero,
                                 spec_precision_name(prec), fa ? ",attn=flash" : "");
                        w->pred_mem = r.mem_peak_bytes;
                        /* the closed form's step less its compute and optimizer:
                         * collectives, pipeline sends and bubble */
                        w->pred_comm_s = fmax(0.0, r.step_time_s - r.compute_s - r.optimizer_s);
                        cost_sim_opts so;
                        cost_sim_opts_default(&so);
                        cost_sim *sim = NULL;
                        cost_result sr;
                        if (cost_sim_run(&m, &c, &l, batch, P, &so, &sim, &sr, err)) {
                            log_msg("report: %s: %s", w->name, err);
                            n--;
                            continue;
                        }
                        w->pred_s = sr.step_time_s;
                        cost_sim_free(sim);
                    }
                }
        }
    }
    if (n == 0)
        log_die_input("report: no layout of %s fits %ld ranks with global batch %lld", m.name, gpus, batch);
    fprintf(stderr, "triad: report: %d feasible layouts of %s on %ld ranks (profile %s)\n", n, m.name, gpus,
            cost_profile_name(P));

    /* ---- run (or read) them: pass after pass, each layout's fastest median ---- */
    report_run run = {.mpirun = mpirun, .gpus = (int)gpus, .model = model_s, .data = data, .device = device,
                      .batch = batch, .steps = (int)steps, .warm = (int)warm, .measured = measured, .runs = runs};
    int failed = 0;
    /* the machine's speed against the profile's, before the runs and after */
    int recheck = prof && cost_profile_is_executor(prof) && !measured, n_before = 0, n_after = 0;
    int mbs_min = mbs[0];
    for (int i = 1; i < n_mbs; i++)
        mbs_min = mbs[i] < mbs_min ? mbs[i] : mbs_min;
    double speed_before = recheck ? recheck_speed(&run, prof, mbs_min, spec_precision_name(prec), "before", &n_before)
                                  : NAN;
    for (int pass = 0; pass < repeat; pass++)
        for (int i = 0; i < n; i++) {
            if (pass > 0 && !rows[i].ok)
                continue; /* failed before */
            char what[64];
            snprintf(what, sizeof what, "pass %d/%ld, %d/%d", pass + 1, repeat, i + 1, n);
            failed += take_pass(&run, &rows[i], i, pass, what) < 0;
        }

    /* ---- the contenders once more ---- */
    /* The measured fastest of many layouts is the one whose passes were
     * luckiest: on a shared machine the minimum over a list of noisy times
     * lies below the true best by about the noise. Before anything is
     * ranked, the layouts that decide the comparison (the predicted
     * fastest and the CONTENDERS measured fastest) run --confirm more
     * passes, alternating, so that the comparison among them rests on
     * more than one lucky pass. */
    int contender[CONTENDERS + 1], n_cont = 0;
    if (confirm > 0)
        n_cont = pick_contenders(rows, n, contender);
    for (int c = 0; c < confirm; c++)
        for (int j = 0; j < n_cont; j++) {
            report_row *w = &rows[contender[j]];
            if (!w->ok)
                continue;
            char what[64];
            snprintf(what, sizeof what, "confirm %d/%ld, %s %d/%d", c + 1, confirm,
                     j == 0 ? "the pick" : "contender", j + 1, n_cont);
            failed += take_pass(&run, w, contender[j], (int)repeat + c, what) < 0;
        }

    double speed_after = recheck ? recheck_speed(&run, prof, mbs_min, spec_precision_name(prec), "after", &n_after)
                                 : NAN;

    /* ---- ranks, errors, table ---- */
    report_row *order[MAX_LAYOUTS];
    int k = 0;
    for (int i = 0; i < n; i++)
        if (rows[i].ok)
            order[k++] = &rows[i];
    if (k == 0)
        log_die("report: no layout produced measurements (%d failed)", failed);
    qsort(order, (size_t)k, sizeof order[0], cmp_pred);
    for (int i = 0; i < k; i++)
        order[i]->pred_rank = i + 1;
    report_row *best_pred = order[0];
    qsort(order, (size_t)k, sizeof order[0], cmp_meas);
    for (int i = 0; i < k; i++)
        order[i]->meas_rank = i + 1;
    report_row *best_meas = order[0];

    char tmp[4300];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        log_die("report: cannot write '%s': %s", tmp, strerror(errno));
    fprintf(f, "layout,dp,tp,pp,mbs,schedule,predicted_step_time_s,measured_step_time_s,step_time_error_pct,"
               "predicted_mem_bytes,measured_mem_bytes,mem_error_pct,predicted_rank,measured_rank,"
               "measured_spread_pct,predicted_comm_s,measured_comm_s,measured_passes\n");
    double sum_err = 0, sum_signed = 0, worst_err = 0, worst_mem = 0, spread[MAX_LAYOUTS];
    double xs[MAX_LAYOUTS], ys[MAX_LAYOUTS]; /* predicted, measured step times of the measured layouts */
    double p1[MAX_LAYOUTS], p2[MAX_LAYOUTS]; /* their first and second passes */
    int n_xy = 0;
    int n_spread = 0;
    for (int i = 0; i < n; i++) {
        const report_row *w = &rows[i];
        if (!w->ok)
            continue;
        double e = 100.0 * (w->pred_s - w->meas_s) / w->meas_s;
        double em = 100.0 * (double)(w->pred_mem - w->meas_mem) / (double)w->meas_mem;
        sum_err += fabs(e);
        sum_signed += e;
        xs[n_xy] = as_written(w->pred_s), ys[n_xy++] = as_written(w->meas_s);
        worst_err = fmax(worst_err, fabs(e));
        worst_mem = fmax(worst_mem, fabs(em));
        /* how far this layout's passes lie apart, over the fastest: the machine's own noise */
        double sp = 100.0 * (w->meas_hi - w->meas_s) / w->meas_s;
        if (w->passes > 1) {
            spread[n_spread] = sp;
            p1[n_spread] = as_written(w->pass_s[0]), p2[n_spread] = as_written(w->pass_s[1]);
            n_spread++;
        }
        char mc[32] = ""; /* empty when the metrics did not record it */
        if (isfinite(w->meas_comm_s))
            snprintf(mc, sizeof mc, "%.6g", w->meas_comm_s);
        fprintf(f, "\"%s\",%d,%d,%d,%d,%s,%.6g,%.6g,%.2f,%lld,%lld,%.3f,%d,%d,%.2f,%.6g,%s,%d\n", w->name, w->l.dp,
                w->l.tp, w->l.pp, w->l.mbs, spec_schedule_name(w->l.schedule), w->pred_s, w->meas_s, e,
                (long long)w->pred_mem, (long long)w->meas_mem, em, w->pred_rank, w->meas_rank, sp, w->pred_comm_s, mc,
                w->passes);
    }
    if (fclose(f) || rename(tmp, path))
        log_die("report: cannot write '%s'", path);
    char title[200];
    snprintf(title, sizeof title, "%s, %ld ranks, batch %lld", m.name, gpus, batch);
    int plots = write_plots(out, rows, n, title);

    double gap = 100.0 * (best_pred->meas_s - best_meas->meas_s) / best_meas->meas_s;
    printf("report: %s\n", path);
    printf("  layouts: %d measured%s; step time error mean %.1f%%, worst %.1f%%; memory error worst %.2f%%\n", k,
           failed ? " (some failed, see the log lines above)" : "", sum_err / k, worst_err, worst_mem);
    printf("  triad's pick: %s, measured %.1f ms (rank %d of %d)\n", best_pred->name, 1e3 * best_pred->meas_s,
           best_pred->meas_rank, k);
    printf("  measured fastest: %s, %.1f ms; the pick is %.1f%% slower\n", best_meas->name, 1e3 * best_meas->meas_s,
           gap);
    if (n_cont > 1)
        printf("    (the pick and the %d measured fastest ran %ld more passes each before this comparison)\n",
               n_cont - 1, confirm);
    /* What a planner needs is the order; a machine that ran faster or
     * slower as a whole since the profile moves every error one way (the
     * signed mean) and leaves the order as it was. */
    double rho = spearman_rho(xs, ys, n_xy);
    if (isfinite(rho))
        printf("  order: rank correlation (Spearman) %.2f between predicted and measured; signed mean error %+.1f%%\n"
               "    (below 0: predicted faster than measured)\n",
               rho, sum_signed / k);
    if (recheck) {
        /* The machine's own drift: a prediction made at the profile's
         * speed, scaled by how much slower the kernels ran around the
         * layouts, separates the model's error from the machine's. */
        char csv[4300];
        snprintf(csv, sizeof csv, "%s/speed.csv", out);
        FILE *sf = fopen(csv, "w");
        if (sf) {
            fprintf(sf, "when,speed_ratio,shapes\nbefore,%.6g,%d\nafter,%.6g,%d\n", speed_before, n_before,
                    speed_after, n_after);
            fclose(sf);
        }
        double s = isfinite(speed_before) && isfinite(speed_after) ? 0.5 * (speed_before + speed_after)
                   : isfinite(speed_before)                        ? speed_before
                                                                    : speed_after;
        if (isfinite(s)) {
            double se = 0, ss = 0;
            for (int i = 0; i < k; i++) {
                double e = 100.0 * (order[i]->pred_s * s - order[i]->meas_s) / order[i]->meas_s;
                se += fabs(e);
                ss += e;
            }
            printf("  machine speed: the profile's kernels, timed again, took %.2fx their profiled times before the\n"
                   "    layouts and %.2fx after (median of %d shapes; above 1: slower now); the predictions at\n"
                   "    that speed (x%.2f): step time error mean %.1f%%, signed %+.1f%%\n",
                   speed_before, speed_after, n_before > n_after ? n_before : n_after, s, se / k, ss / k);
            if (fabs(s - 1.0) > 0.10)
                printf("    the machine ran %.0f%% %s than when it was profiled: profile again just before a\n"
                       "    report to compare times; the order (above) is what the drift leaves alone\n",
                       100.0 * fabs(s - 1.0), s > 1.0 ? "slower" : "faster");
        }
    }
    if (n_spread > 0) {
        /* The measurement's own repeatability: how well the first pass
         * orders the layouts as the second does. A machine whose passes
         * agree less than this with each other cannot confirm a ranking
         * more exactly than that, whatever predicts it. */
        double rho_pp = spearman_rho(p1, p2, n_spread);
        qsort(spread, (size_t)n_spread, sizeof spread[0], cmp_double);
        printf("  run to run: a layout's passes differ by %.1f%% (median over layouts), %.1f%% at most; errors\n"
               "    of that size are the machine's noise, not the model's\n",
               spread[n_spread / 2], spread[n_spread - 1]);
        if (isfinite(rho_pp))
            printf("  repeatability: the first pass orders the layouts as the second with Spearman %.2f\n", rho_pp);
    }
    if (plots == 0)
        printf("  plots: %s/step_time.svg, %s/ranking.svg\n", out, out);
    else
        printf("  plots: gnuplot failed, see %s/plot.log\n", out);
    cost_profile_free(prof);
    return failed ? TRIAD_EXIT_FAIL : 0;
}
