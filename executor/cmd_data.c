/* cmd_data.c — placeholder until this subcommand lands. */
#include "../common/cmds.h"
#include "../common/log.h"
int exec_cmd_data(int argc, char **argv)
{
    (void)argc; (void)argv;
    log_msg("this subcommand is not available in this build yet");
    return TRIAD_EXIT_FAIL;
}
