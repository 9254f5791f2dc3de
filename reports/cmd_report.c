/* cmd_report.c — placeholder until this subcommand lands. */
#include "../common/cmds.h"
#include "../common/log.h"
int report_cmd_report(int argc, char **argv)
{
    (void)argc; (void)argv;
    log_msg("report: not available in this build yet (the README lists what is missing)");
    return TRIAD_EXIT_FAIL;
}
