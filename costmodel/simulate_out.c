/* simulate_out.c — printing predictions (see simulate_out.h). */
#include "simulate_out.h"

#include <string.h>

#include "profile_impl.h"

void simulate_out_csv_header(FILE *f)
{
    fprintf(f, "tp,pp,dp,mbs,n_micro,schedule,v,recompute,zero,sp,precision,attn,step_time_s,"
               "tokens_per_s,tflops_per_gpu,mfu,hfu,mem_peak_bytes,fits,bubble_frac,compute_s,"
               "tp_comm_s,pp_comm_s,dp_comm_exposed_s,bubble_s,optimizer_s,sim_step_time_s,"
               "sim_bubble_frac,source\n");
}

void simulate_out_csv_row(FILE *f, const spec_layout *l, const cost_result *cf, const cost_result *sr)
{
    const cost_result *best = sr ? sr : cf;
    fprintf(f, "%d,%d,%d,%d,%lld,%s,%d,%s,%d,%d,%s,%s,%.6g,%.6g,%.6g,%.6g,%.6g,%lld,%d,%.6g,%.6g,%.6g,"
               "%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%s\n",
            l->tp, l->pp, l->dp, l->mbs, (long long)cf->n_micro, spec_schedule_name(l->schedule),
            l->v, spec_recompute_name(l->recompute), l->zero, l->sp, spec_precision_name(l->precision),
            spec_attn_name(l->flash), best->step_time_s, best->tokens_per_s, best->tflops_per_gpu, best->mfu,
            best->hfu,
            (long long)best->mem_peak_bytes, best->fits, best->bubble_frac, cf->compute_s,
            cf->tp_comm_s, cf->pp_comm_s, cf->dp_comm_exposed_s, cf->bubble_s, cf->optimizer_s,
            sr ? sr->step_time_s : cf->step_time_s, sr ? sr->bubble_frac : cf->bubble_frac,
            best->source);
}

static void print_json(FILE *f, const spec_model *m, const spec_cluster *c, const spec_layout *l,
                       int64_t batch, const cost_result *cf, const cost_result *sr)
{
    fprintf(f, "{\n  \"model\": {\"layers\": %lld, \"hidden\": %lld, \"heads\": %lld, \"ffn\": %lld, "
               "\"vocab\": %lld, \"seq\": %lld},\n",
            (long long)m->layers, (long long)m->hidden, (long long)m->heads, (long long)m->ffn,
            (long long)m->vocab, (long long)m->seq);
    fprintf(f, "  \"cluster\": {\"gpu\": \"%s\", \"nodes\": %d, \"gpus_per_node\": %d, \"mem_gb\": %g},\n",
            spec_gpu_name(c->gpu), c->nodes, c->gpus_per_node, c->mem_gb);
    fprintf(f, "  \"layout\": {\"tp\": %d, \"pp\": %d, \"dp\": %d, \"mbs\": %d, \"schedule\": \"%s\", "
               "\"v\": %d, \"recompute\": \"%s\", \"zero\": %d, \"sp\": %d, \"precision\": \"%s\"},\n",
            l->tp, l->pp, l->dp, l->mbs, spec_schedule_name(l->schedule), l->v,
            spec_recompute_name(l->recompute), l->zero, l->sp, spec_precision_name(l->precision));
    fprintf(f, "  \"global_batch\": %lld,\n", (long long)batch);
    const cost_result *r[2] = {cf, sr};
    const char *nm[2] = {"closed_form", "simulator"};
    for (int i = 0; i < 2; i++) {
        if (!r[i])
            continue;
        fprintf(f, "  \"%s\": {\"step_time_s\": %.9g, \"tokens_per_s\": %.9g, \"tflops_per_gpu\": %.6g, "
                   "\"mfu\": %.6g, \"hfu\": %.6g, \"mem_peak_bytes\": %lld, \"fits\": %s, "
                   "\"bubble_frac\": %.6g, \"n_micro\": %lld, \"compute_s\": %.9g, \"tp_comm_s\": %.9g, "
                   "\"pp_comm_s\": %.9g, \"dp_comm_exposed_s\": %.9g, \"bubble_s\": %.9g, "
                   "\"optimizer_s\": %.9g}%s\n",
                nm[i], r[i]->step_time_s, r[i]->tokens_per_s, r[i]->tflops_per_gpu, r[i]->mfu,
                r[i]->hfu, (long long)r[i]->mem_peak_bytes, r[i]->fits ? "true" : "false",
                r[i]->bubble_frac, (long long)r[i]->n_micro, r[i]->compute_s, r[i]->tp_comm_s,
                r[i]->pp_comm_s, r[i]->dp_comm_exposed_s, r[i]->bubble_s, r[i]->optimizer_s,
                (i == 0 && sr) ? "," : "");
    }
    fprintf(f, "}\n");
}

static void print_table(FILE *f, const spec_model *m, const spec_cluster *c, const spec_layout *l,
                        int64_t batch, const cost_profile *p, const cost_result *cf,
                        const cost_result *sr, const cost_sim *sim)
{
    char lay[128];
    spec_layout_format(l, lay, sizeof lay);
    fprintf(f, "# triad simulate\n");
    fprintf(f, "model    %s: %lld layers, hidden %lld, %lld heads, ffn %lld, vocab %lld, seq %lld\n",
            m->name, (long long)m->layers, (long long)m->hidden, (long long)m->heads,
            (long long)m->ffn, (long long)m->vocab, (long long)m->seq);
    fprintf(f, "cluster  %s: %d node(s) x %d %s, %.0f GB each, %.3g TFLOP/s peak; profile %s\n",
            c->name, c->nodes, c->gpus_per_node, spec_gpu_name(c->gpu), c->mem_gb, c->peak_tflops,
            cost_profile_name(p));
    const profile_params *pp = p ? profile_params_of(p) : NULL;
    if (pp && pp->cores > 0 && pp->ranks > pp->cores) {
        fprintf(f, "         measured with %.0f ranks on %.0f cores: the simulator shares the cores among the busy ranks",
                pp->ranks, pp->cores);
        if (pp->wait_coll_s > 0 || pp->wake_s > 0)
            fprintf(f, ";\n         waiting ranks sleep: %.3f ms a collective after compute, %.3f ms a wake-up",
                    1e3 * pp->wait_coll_s, 1e3 * pp->wake_s);
        fprintf(f, "\n");
    }
    fprintf(f, "layout   %s, %s, global batch %lld = %lld micro-batches of %d per pipeline\n\n", lay,
            spec_precision_name(l->precision), (long long)batch, (long long)cf->n_micro, l->mbs);
    fprintf(f, "%-26s %14s %14s\n", "", "closed form", "simulator");
    fprintf(f, "%-26s %14.4f %14.4f\n", "step time (s)", cf->step_time_s, sr ? sr->step_time_s : 0);
    fprintf(f, "%-26s %14.0f %14.0f\n", "tokens/s", cf->tokens_per_s, sr ? sr->tokens_per_s : 0);
    fprintf(f, "%-26s %14.1f %14.1f\n", "model TFLOP/s per device", cf->tflops_per_gpu,
            sr ? sr->tflops_per_gpu : 0);
    fprintf(f, "%-26s %13.1f%% %13.1f%%\n", "MFU (model FLOPs)", 100 * cf->mfu, sr ? 100 * sr->mfu : 0);
    fprintf(f, "%-26s %13.1f%% %13.1f%%\n", "HFU (with recompute)", 100 * cf->hfu, sr ? 100 * sr->hfu : 0);
    fprintf(f, "%-26s %13.1f%% %13.1f%%\n", "pipeline bubble", 100 * cf->bubble_frac,
            sr ? 100 * sr->bubble_frac : 0);
    fprintf(f, "\nbreakdown of the closed form (s, on the slowest stage)\n");
    const char *nm[] = {"compute (fwd+bwd+recompute)", "tensor-parallel comm", "pipeline sends",
                        "data-parallel comm, exposed", "pipeline bubble", "optimizer step"};
    double v[] = {cf->compute_s, cf->tp_comm_s, cf->pp_comm_s, cf->dp_comm_exposed_s, cf->bubble_s,
                  cf->optimizer_s};
    for (int i = 0; i < 6; i++)
        fprintf(f, "  %-30s %10.4f  %5.1f%%\n", nm[i], v[i], 100 * v[i] / cf->step_time_s);
    fprintf(f, "\nmemory per device, by pipeline stage (GB = 1e9 bytes; device has %.1f GB)\n",
            c->mem_gb);
    fprintf(f, "  %5s %9s %9s %9s %9s %9s %9s %9s %6s\n", "stage", "weights", "grads", "optim",
            "activ", "scratch", "total", "in-fl.", "fits");
    for (int r = 0; r < l->pp; r++) {
        cost_mem mm;
        cost_memory_rank_profile(m, c, l, batch, r, p, &mm);
        fprintf(f, "  %5d %9.2f %9.2f %9.2f %9.2f %9.2f %9.2f %9d %6s\n", r, mm.param_bytes / 1e9,
                mm.grad_bytes / 1e9, mm.optim_bytes / 1e9, mm.act_bytes / 1e9, mm.scratch_bytes / 1e9,
                mm.total_bytes / 1e9, mm.in_flight, mm.total_bytes <= c->mem_gb * 1e9 ? "yes" : "NO");
    }
    if (sim) {
        int n = cost_sim_stages(sim);
        fprintf(f, "\nsimulated step, per stage (representative rank; tp/dp ranks of a stage are symmetric)\n");
        fprintf(f, "  %5s %10s %10s %10s %12s %10s %8s\n", "stage", "busy s", "idle s", "comm s",
                "exposed s", "peak GB", "in-fl.");
        for (int i = 0; i < n; i++) {
            cost_sim_stage st;
            cost_sim_stage_at(sim, i, &st);
            fprintf(f, "  %5d %10.4f %10.4f %10.4f %12.4f %10.2f %8d\n", i, st.busy_s, st.idle_s,
                    st.comm_s, st.exposed_comm_s, st.mem_peak_bytes / 1e9, st.peak_in_flight);
        }
    }
    fprintf(f, "\nfits in memory: %s (peak %.2f GB on stage %d)\n", cf->fits ? "yes" : "NO",
            cf->mem_peak_bytes / 1e9, cf->mem_peak_stage);
}

void simulate_out_print(FILE *f, const char *format, const spec_model *m, const spec_cluster *c,
                        const spec_layout *l, int64_t batch, const cost_profile *p,
                        const cost_result *cf, const cost_result *sr, const cost_sim *sim)
{
    if (!strcmp(format, "csv")) {
        simulate_out_csv_header(f);
        simulate_out_csv_row(f, l, cf, sr);
    } else if (!strcmp(format, "json")) {
        print_json(f, m, c, l, batch, cf, sr);
    } else {
        print_table(f, m, c, l, batch, p, cf, sr, sim);
    }
}
