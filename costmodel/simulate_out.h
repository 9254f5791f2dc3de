/* simulate_out.h — how a prediction is printed: a table for a person, CSV
 * (one header row, one row per prediction) or JSON. Shared by `triad
 * simulate` and `triad plan`, so both speak the same columns. */
#ifndef TRIAD_SIMULATE_OUT_H
#define TRIAD_SIMULATE_OUT_H

#include <stdio.h>
#include "cost.h"
#include "sim.h"

/* The CSV header (no newline) and one row for (layout, closed form result,
 * simulator result or NULL). */
void simulate_out_csv_header(FILE *f);
void simulate_out_csv_row(FILE *f, const spec_layout *l, const cost_result *cf, const cost_result *sr);

/* Everything for one layout in the chosen format ("table", "csv", "json"). */
void simulate_out_print(FILE *f, const char *format, const spec_model *m, const spec_cluster *c,
                        const spec_layout *l, int64_t batch, const cost_profile *p,
                        const cost_result *cf, const cost_result *sr, const cost_sim *sim);

#endif
