/* profile.h — what the cost model knows about a machine: efficiencies and
 * measured throughputs, read from a CSV in profiles/.
 *
 * A profile is either built in (datasheet peaks with efficiency curves, one
 * per device kind, each value with its source) or loaded from a file that
 * `triad profile` measured. The CSV schema is documented in
 * profiles/README.md; the loader refuses an unknown column, a malformed
 * number or a negative time with one line naming the file, the line and the
 * field.
 */
#ifndef TRIAD_PROFILE_H
#define TRIAD_PROFILE_H

#include "../common/spec.h"

typedef struct cost_profile cost_profile;

/* Load a profile CSV. On error returns SPEC_ERR, *out = NULL, and err names
 * file:line and the field. */
int cost_profile_load(const char *path, cost_profile **out, char err[SPEC_ERR_LEN]);

/* The built-in profile for a device kind (static storage, never freed):
 * datasheet numbers and efficiency curves with their sources. */
const cost_profile *cost_profile_builtin(spec_gpu_kind gpu);

/* Harmless on NULL and on a built-in profile. */
void cost_profile_free(cost_profile *p);

/* A short description ("builtin:a100-80gb" or the file path). */
const char *cost_profile_name(const cost_profile *p);
/* 1 when the profile measured triad's own executor (`triad profile`: kernel
 * rows): its predictions describe triad train, which runs ZeRO 0-1 and the
 * GPipe / 1F1B schedules only. */
int cost_profile_is_executor(const cost_profile *p);
/* 1 when the profile was measured with more ranks than cores: its times
 * include that sharing, which the closed form charges everywhere and only
 * the simulator follows per layout (busy ranks, sleeping waits; sim.c). */
int cost_profile_shares_cores(const cost_profile *p);
/* 1 when the profile can predict layouts of precision `prec`: a built-in or
 * datasheet profile always, a measured one when it timed its GEMMs in that
 * math (`triad profile --precision`). */
int cost_profile_has_precision(const cost_profile *p, spec_precision prec);
/* 1 when a measured profile has rows of kernel `name` (profiles/README.md). */
int cost_profile_has_kernel(const cost_profile *p, const char *name);
/* How the compute rows of `again` (a second profile of the same machine
 * and model) compare with base's: the median over the rows present in both
 * (GEMMs and kernels of equal name, shape and math; the j-th of several
 * such rows with the j-th) of again's time over base's; above 1 the machine
 * ran slower the second time. *shapes: how many rows matched (0: NAN). */
double cost_profile_speed_ratio(const cost_profile *base, const cost_profile *again, int *shapes);

#endif /* TRIAD_PROFILE_H */
