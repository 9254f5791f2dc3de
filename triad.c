/* triad.c — the `triad` command: dispatches to subcommands. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cmds.h"
#include "common/log.h"

typedef struct {
    const char *name;
    int (*fn)(int, char **);
    const char *what;
} triad_cmd;

static const triad_cmd CMDS[] = {
    {"presets", spec_cmd_presets, "list the built-in models and clusters"},
    {"plan", plan_cmd_plan, "search every layout of a job and recommend the fastest that fits"},
    {"simulate", cost_cmd_simulate, "predict step time and memory of one layout (closed form + event simulator)"},
    {"train", exec_cmd_train, "train a GPT with a layout (run under mpirun for several ranks)"},
    {"data", exec_cmd_data, "describe a data source, or make a token shard from a text file"},
    {"profile", exec_cmd_profile, "measure kernels and collectives of this machine into a profile CSV"},
    {"report", report_cmd_report, "run the layouts of a job and compare predictions with measurements"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: triad <command> [options]   (triad <command> --help for each)\n\n");
    for (size_t i = 0; i < sizeof CMDS / sizeof CMDS[0]; i++)
        fprintf(f, "  %-9s %s\n", CMDS[i].name, CMDS[i].what);
}

/* Runtime settings read by OpenBLAS and OpenMP when they load, so they are
 * made here, before any library has initialised, with one restart of the
 * process when something was set (the environment is read at load time):
 *
 * - OpenBLAS picks its kernels by identifying the CPU model; on virtual CPUs
 *   that report a generic model it falls back to its oldest x86-64 kernels
 *   (2-3x slower here). When the user has not chosen (OPENBLAS_CORETYPE
 *   unset), name the kernel family from the CPU's own feature flags.
 * - Threads per rank: when neither OMP_NUM_THREADS nor
 *   OPENBLAS_NUM_THREADS is set, the node's cores divided among the ranks
 *   mpirun started on it (OMPI_COMM_WORLD_LOCAL_SIZE, MPI_LOCALNRANKS),
 *   at least 1. Without this every rank starts a thread per core, and
 *   four ranks on two cores run sixteen spinning threads (10-100x slower
 *   kernels).
 * - OpenMP threads wait passively (OMP_WAIT_POLICY=passive) unless the user
 *   chose: the element-wise kernels' OpenMP threads and OpenBLAS's own
 *   pthreads are two pools on the same cores, and an OpenMP thread spinning
 *   at the end of a loop keeps a core from the OpenBLAS worker of the next
 *   GEMM. One rank on this 2-core machine, tiny model, 2 threads: 286 ms a
 *   step spinning, 71 ms passive (90 ms with 1 thread); a 768-wide model:
 *   2564 ms spinning, 1577 ms passive (2223 ms with 1 thread). */
static void runtime_setup(char **argv)
{
    if (getenv("TRIAD_NO_BLAS_PICK") || getenv("TRIAD_SETUP_DONE"))
        return;
    int changed = 0;
    if (!getenv("OMP_NUM_THREADS") && !getenv("OPENBLAS_NUM_THREADS")) {
        const char *ls = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
        if (!ls)
            ls = getenv("MPI_LOCALNRANKS");
        long local = ls ? atol(ls) : 1, cores = sysconf(_SC_NPROCESSORS_ONLN);
        long th = local > 0 && cores > 0 ? cores / local : 1;
        char buf[32];
        snprintf(buf, sizeof buf, "%ld", th < 1 ? 1 : th);
        setenv("OMP_NUM_THREADS", buf, 1);
        setenv("TRIAD_THREADS_AUTO", "1", 1);
        changed = 1;
    }
    if (!getenv("OMP_WAIT_POLICY")) {
        setenv("OMP_WAIT_POLICY", "passive", 1);
        changed = 1;
    }
#if defined(__x86_64__) && defined(__GNUC__)
    if (!getenv("OPENBLAS_CORETYPE")) {
        const char *core = NULL;
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
            __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
            core = "SkylakeX";
        else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
            core = "Haswell";
        if (core) {
            setenv("OPENBLAS_CORETYPE", core, 1);
            changed = 1;
        }
    }
#endif
    if (changed) {
        setenv("TRIAD_SETUP_DONE", "1", 1);
        execv("/proc/self/exe", argv); /* on failure, go on as we are */
    }
}

int main(int argc, char **argv)
{
    if (argc >= 2 && (!strcmp(argv[1], "train") || !strcmp(argv[1], "profile") || !strcmp(argv[1], "report")))
        runtime_setup(argv);
    if (argc < 2) {
        usage(stderr);
        return TRIAD_EXIT_INPUT;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return TRIAD_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof CMDS / sizeof CMDS[0]; i++)
        if (!strcmp(argv[1], CMDS[i].name))
            return CMDS[i].fn(argc - 1, argv + 1);
    log_msg("unknown command '%s' (try: triad --help)", argv[1]);
    return TRIAD_EXIT_INPUT;
}
