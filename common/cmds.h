/* cmds.h — the subcommands of `triad`. Each takes the arguments after its
 * name (argv[0] is the subcommand) and returns the process exit status:
 * 0 ok, 1 runtime failure, 2 bad input. */
#ifndef TRIAD_CMDS_H
#define TRIAD_CMDS_H

int spec_cmd_presets(int argc, char **argv);   /* common/cmd_presets.c */
int cost_cmd_simulate(int argc, char **argv);  /* costmodel/cmd_simulate.c */
int plan_cmd_plan(int argc, char **argv);      /* planner/cmd_plan.c */
int exec_cmd_train(int argc, char **argv);     /* executor/cmd_train.c */
int exec_cmd_data(int argc, char **argv);      /* executor/cmd_data.c */
int exec_cmd_profile(int argc, char **argv);   /* executor/cmd_profile.c (needs MPI) */
int report_cmd_report(int argc, char **argv);  /* reports/cmd_report.c */

#endif
