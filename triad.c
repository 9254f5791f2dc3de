/* triad.c — the `triad` command: dispatches to subcommands. */
#include <stdio.h>
#include <string.h>

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

int main(int argc, char **argv)
{
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
