/* cmd_profile.c — placeholder until this subcommand lands. */
#include "../common/cmds.h"
#include "../common/log.h"
int exec_cmd_profile(int argc, char **argv)
{
    (void)argc; (void)argv;
    log_msg("profile: not available in this build yet (the README lists what is missing)");
    return TRIAD_EXIT_FAIL;
}
