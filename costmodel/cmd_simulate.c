/* cmd_simulate.c — placeholder until this subcommand lands. */
#include "../common/cmds.h"
#include "../common/log.h"
int cost_cmd_simulate(int argc, char **argv)
{
    (void)argc; (void)argv;
    log_msg("this subcommand is not available in this build yet");
    return TRIAD_EXIT_FAIL;
}
