/* fuzz_planfile.c — libFuzzer harness for planfile_read: the input bytes are
 * written to a temporary file and read as a plan. An accepted plan must pass
 * the spec checks, and write + read back to the same plan. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../common/planfile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char path[64], back[80];
    if (!path[0]) {
        snprintf(path, sizeof path, "/tmp/triad_fuzz_plan_%d.ini", (int)getpid());
        snprintf(back, sizeof back, "%s.back", path);
    }
    FILE *f = fopen(path, "wb");
    if (!f)
        return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    char err[SPEC_ERR_LEN];
    memset(err, 0, sizeof err);
    planfile p, q;
    int rc = planfile_read(path, &p, err);
    if (rc != SPEC_OK && !err[0])
        abort();
    if (rc == SPEC_OK) {
        if (spec_model_check(&p.model, err) || spec_cluster_check(&p.cluster, err) ||
            spec_layout_check(&p.layout, &p.model, p.global_batch, -1, err))
            abort();
        if (planfile_write(back, &p, "fuzz", 1, err) != SPEC_OK || planfile_read(back, &q, err) != SPEC_OK)
            abort();
        if (q.model.layers != p.model.layers || q.model.hidden != p.model.hidden ||
            q.layout.tp != p.layout.tp || q.layout.pp != p.layout.pp || q.layout.dp != p.layout.dp ||
            q.layout.n_stage_layers != p.layout.n_stage_layers || q.global_batch != p.global_batch ||
            q.cluster.gpu != p.cluster.gpu || q.cluster.mem_gb != p.cluster.mem_gb)
            abort();
        unlink(back);
    }
    unlink(path);
    return 0;
}
