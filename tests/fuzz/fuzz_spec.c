/* fuzz_spec.c — libFuzzer harness for the spec parsers on arbitrary bytes
 * (NUL-terminated). The first byte picks model / cluster / layout; the rest
 * is the spec text. Beyond "no crash, no sanitizer report" it checks the
 * contract: an accepted spec passes its own check, a refused one leaves a
 * non-empty one-line message. Texts with '/' are skipped so the input stays a
 * spec and never names some file on this machine. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/spec.h"

static void one_line_message(int rc, const char *err)
{
    if (rc == SPEC_OK)
        return;
    if (!err[0] || strchr(err, '\n') || strlen(err) >= SPEC_ERR_LEN)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int which = data[0] % 3;
    char *text = malloc(size);
    memcpy(text, data + 1, size - 1);
    text[size - 1] = 0;
    if (strchr(text, '/')) {
        free(text);
        return 0;
    }
    char err[SPEC_ERR_LEN];
    memset(err, 0, sizeof err);
    spec_model m;
    spec_cluster c;
    spec_layout l;
    int rc;
    switch (which) {
    case 0:
        rc = spec_model_parse(text, &m, err);
        one_line_message(rc, err);
        if (rc == SPEC_OK && (spec_model_check(&m, err) != SPEC_OK || m.hidden % m.heads || m.ffn <= 0))
            abort();
        break;
    case 1:
        rc = spec_cluster_parse(text, &c, err);
        one_line_message(rc, err);
        if (rc == SPEC_OK && (spec_cluster_check(&c, err) != SPEC_OK || spec_cluster_devices(&c) < 1))
            abort();
        break;
    default:
        rc = spec_layout_parse(text, &l, err);
        one_line_message(rc, err);
        if (rc == SPEC_OK && spec_model_parse("tiny,layers=12", &m, err) == SPEC_OK) {
            char buf[128];
            spec_layout_format(&l, buf, sizeof buf);
            if (spec_layout_check(&l, &m, 48, -1, err) == SPEC_OK) {
                /* accepted: stages cover the layers exactly, in order */
                int next = 0;
                for (int s = 0; s < l.pp * l.v; s++) {
                    if (spec_layout_stage_first(&l, &m, s) != next || spec_layout_stage_layers(&l, &m, s) < 1)
                        abort();
                    next += spec_layout_stage_layers(&l, &m, s);
                }
                if (next != m.layers)
                    abort();
            } else {
                one_line_message(SPEC_ERR, err);
            }
        }
        break;
    }
    free(text);
    return 0;
}
