/* trace.c — the simulated timeline as Chrome trace-event JSON (opens in
 * Perfetto and chrome://tracing) and as an SVG picture. */
#include <stdio.h>
#include <string.h>

#include "sim_core.h"

static const char *STREAM_NAMES[SIM_N_STREAMS] = {"compute", "tp comm", "pp send", "dp comm"};

static void event_name(const sim_event *e, const cost_sim *s, char *buf, size_t n)
{
    int p = s->p;
    int chunk = e->vs / (p > 0 ? p : 1);
    switch (e->kind) {
    case SIM_FWD: snprintf(buf, n, "F mb%d chunk%d", e->mb, chunk); break;
    case SIM_BWD: snprintf(buf, n, "B mb%d chunk%d", e->mb, chunk); break;
    case SIM_SEND: snprintf(buf, n, "send mb%d", e->mb); break;
    case SIM_TP: snprintf(buf, n, "tp collectives mb%d", e->mb); break;
    case SIM_DP: snprintf(buf, n, "allreduce grads bucket %d", e->mb); break;
    case SIM_SYNC: snprintf(buf, n, "param gather / embedding sync"); break;
    default: snprintf(buf, n, "optimizer step"); break;
    }
}

int cost_sim_write_trace(const cost_sim *s, const char *path, char err[SPEC_ERR_LEN])
{
    if (!s || !s->record) {
        snprintf(err, SPEC_ERR_LEN, "trace: the simulation kept no events");
        return SPEC_ERR;
    }
    FILE *f = fopen(path, "w");
    if (!f) {
        snprintf(err, SPEC_ERR_LEN, "trace: cannot write '%s'", path);
        return SPEC_ERR;
    }
    fprintf(f, "{\"displayTimeUnit\":\"ms\",\"traceEvents\":[\n");
    int first = 1;
    for (int r = 0; r < s->p; r++) {
        fprintf(f, "%s{\"ph\":\"M\",\"name\":\"process_name\",\"pid\":%d,\"args\":{\"name\":\"stage %d\"}}",
                first ? "" : ",\n", r, r);
        first = 0;
        for (int k = 0; k < SIM_N_STREAMS; k++)
            fprintf(f, ",\n{\"ph\":\"M\",\"name\":\"thread_name\",\"pid\":%d,\"tid\":%d,\"args\":{\"name\":\"%s\"}}",
                    r, k, STREAM_NAMES[k]);
    }
    char name[96];
    for (int i = 0; i < s->n_ev; i++) {
        const sim_event *e = &s->ev[i];
        event_name(e, s, name, sizeof name);
        fprintf(f, ",\n{\"ph\":\"X\",\"name\":\"%s\",\"cat\":\"%s\",\"pid\":%d,\"tid\":%d,\"ts\":%.3f,"
                   "\"dur\":%.3f,\"args\":{\"micro_batch\":%d,\"virtual_stage\":%d}}",
                name, STREAM_NAMES[e->stream], e->rank, e->stream, e->t0 * 1e6, (e->t1 - e->t0) * 1e6,
                e->mb, e->vs);
    }
    for (int i = 0; i < s->n_mem; i++)
        fprintf(f, ",\n{\"ph\":\"C\",\"name\":\"memory GB\",\"pid\":%d,\"ts\":%.3f,\"args\":{\"GB\":%.4f}}",
                s->mem[i].rank, s->mem[i].t * 1e6, s->mem[i].bytes / 1e9);
    fprintf(f, "\n]}\n");
    if (fclose(f)) {
        snprintf(err, SPEC_ERR_LEN, "trace: error writing '%s'", path);
        return SPEC_ERR;
    }
    return SPEC_OK;
}

/* Colours: forward blue, backward green, sends orange, tp purple, dp red,
 * optimizer grey. */
static const char *colour(int kind)
{
    static const char *c[] = {"#4a7fd4", "#4caf50", "#f39c12", "#9b59b6", "#e74c3c", "#c0392b", "#7f8c8d"};
    return c[kind >= 0 && kind <= SIM_OPT ? kind : SIM_OPT];
}

int cost_sim_write_svg(const cost_sim *s, const char *path, char err[SPEC_ERR_LEN])
{
    if (!s || !s->record) {
        snprintf(err, SPEC_ERR_LEN, "svg: the simulation kept no events");
        return SPEC_ERR;
    }
    FILE *f = fopen(path, "w");
    if (!f) {
        snprintf(err, SPEC_ERR_LEN, "svg: cannot write '%s'", path);
        return SPEC_ERR;
    }
    const double left = 90, right = 30, top = 60, row_h = 34, sub_h = 8, width = 1100;
    double plot_w = width - left - right;
    double rank_h = row_h + 2 * sub_h + 10;
    double height = top + s->p * rank_h + 70;
    double T = s->step_s > 0 ? s->step_s : 1;
    char lay[128];
    spec_layout_format(&s->layout, lay, sizeof lay);
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
               "font-family=\"sans-serif\" font-size=\"12\">\n", width, height);
    fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    fprintf(f, "<text x=\"%.0f\" y=\"22\" font-size=\"16\" font-weight=\"bold\">triad simulated step: %s"
               " — %.4g s</text>\n", left, lay, s->step_s);
    fprintf(f, "<text x=\"%.0f\" y=\"42\" fill=\"#555\">one row per pipeline stage (thin rows: pipeline "
               "sends, data-parallel traffic); white gaps are the pipeline bubble</text>\n", left);
    for (int r = 0; r < s->p; r++) {
        double y = top + r * rank_h;
        fprintf(f, "<text x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\">stage %d</text>\n", left - 8,
                y + row_h / 2 + 4, r);
        fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#f4f4f4\"/>\n", left,
                y, plot_w, row_h);
    }
    for (int i = 0; i < s->n_ev; i++) {
        const sim_event *e = &s->ev[i];
        if (e->stream == SIM_STREAM_TP)
            continue; /* tp time is inside the compute boxes */
        double y = top + e->rank * rank_h;
        double h = row_h;
        if (e->stream == SIM_STREAM_PP) {
            y += row_h + 2;
            h = sub_h;
        } else if (e->stream == SIM_STREAM_DP) {
            y += row_h + sub_h + 4;
            h = sub_h;
        }
        double x = left + plot_w * e->t0 / T, w = plot_w * (e->t1 - e->t0) / T;
        fprintf(f, "<rect x=\"%.2f\" y=\"%.1f\" width=\"%.2f\" height=\"%.1f\" fill=\"%s\" stroke=\"white\" "
                   "stroke-width=\"0.3\"/>\n", x, y, w > 0.2 ? w : 0.2, h, colour(e->kind));
        if (e->stream == SIM_STREAM_COMPUTE && (e->kind == SIM_FWD || e->kind == SIM_BWD) && w > 16)
            fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" fill=\"white\" font-size=\"10\" text-anchor=\"middle\">%d</text>\n",
                    x + w / 2, y + h / 2 + 4, e->mb);
    }
    double ya = top + s->p * rank_h + 4;
    fprintf(f, "<line x1=\"%.0f\" y1=\"%.1f\" x2=\"%.0f\" y2=\"%.1f\" stroke=\"black\"/>\n", left, ya,
            left + plot_w, ya);
    for (int k = 0; k <= 10; k++) {
        double x = left + plot_w * k / 10;
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n", x, ya, x, ya + 5);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%.3g</text>\n", x, ya + 18, T * k / 10);
    }
    fprintf(f, "<text x=\"%.0f\" y=\"%.1f\" text-anchor=\"middle\">time (s)</text>\n", left + plot_w / 2, ya + 34);
    const char *names[] = {"forward", "backward (incl. recompute)", "pipeline send", "data-parallel grads / embedding sync",
                           "optimizer"};
    int kinds[] = {SIM_FWD, SIM_BWD, SIM_SEND, SIM_DP, SIM_OPT};
    double lx = left;
    for (int k = 0; k < 5; k++) {
        fprintf(f, "<rect x=\"%.0f\" y=\"%.1f\" width=\"12\" height=\"12\" fill=\"%s\"/>\n", lx, ya + 44,
                colour(kinds[k]));
        fprintf(f, "<text x=\"%.0f\" y=\"%.1f\">%s</text>\n", lx + 16, ya + 54, names[k]);
        lx += 20 + 7.0 * strlen(names[k]) + 20;
    }
    fprintf(f, "</svg>\n");
    if (fclose(f)) {
        snprintf(err, SPEC_ERR_LEN, "svg: error writing '%s'", path);
        return SPEC_ERR;
    }
    return SPEC_OK;
}
