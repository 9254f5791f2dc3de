/* data.c — Markov source and llm.c token shards (see data.h). */
#include "data.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct exec_data {
    int kind; /* 0 markov, 1 shard */
    int64_t seq;
    /* markov */
    int V, K;
    uint64_t seed;
    int64_t states;
    double *cdf;     /* states x V cumulative transition probabilities */
    double entropy;
    /* shard */
    uint16_t *tok;
    int64_t ntok;
    int64_t vocab;
};

static uint64_t mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static double u01(uint64_t x) { return (mix64(x) >> 11) / 9007199254740992.0; }

static int parse_markov(const char *spec, exec_data *d, char err[SPEC_ERR_LEN])
{
    long long V = -1, K = 1, S = 1;
    char *buf = strdup(spec + strlen("markov:")), *save = NULL;
    int rc = 0;
    for (char *it = strtok_r(buf, ",", &save); it; it = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(it, '=');
        char *end = NULL;
        long long v = eq ? strtoll(eq + 1, &end, 10) : 0;
        if (!eq || !*(eq + 1) || *end) {
            snprintf(err, SPEC_ERR_LEN, "data: '%s' is not key=integer in %s", it, spec);
            rc = -1;
            break;
        }
        *eq = 0;
        if (!strcmp(it, "vocab"))
            V = v;
        else if (!strcmp(it, "order"))
            K = v;
        else if (!strcmp(it, "seed"))
            S = v;
        else {
            snprintf(err, SPEC_ERR_LEN, "data: unknown key '%s' in %s (keys: vocab, order, seed)", it, spec);
            rc = -1;
            break;
        }
    }
    free(buf);
    if (rc)
        return rc;
    if (V < 2 || V > 65536) {
        snprintf(err, SPEC_ERR_LEN, "data: markov vocab=%lld must be in 2..65536", V);
        return -1;
    }
    if (K < 1 || K > 8) {
        snprintf(err, SPEC_ERR_LEN, "data: markov order=%lld must be in 1..8", K);
        return -1;
    }
    double states = pow((double)V, (double)K);
    if (states * V > (double)(1 << 24)) {
        snprintf(err, SPEC_ERR_LEN, "data: markov vocab^(order+1) = %.0f exceeds 16M transition entries",
                 states * V);
        return -1;
    }
    d->V = (int)V, d->K = (int)K, d->seed = (uint64_t)S, d->states = (int64_t)states;
    return 0;
}

/* Transition distributions: log-normal weights exp(2.5 z) per (state,
 * symbol), normalised — peaked enough that the entropy rate sits well below
 * log V, so learning it is visible. */
static void markov_build(exec_data *d)
{
    int64_t S = d->states, V = d->V;
    d->cdf = malloc(sizeof(double) * (size_t)(S * V));
    double *p = malloc(sizeof(double) * (size_t)V);
    double *pi = malloc(sizeof(double) * (size_t)S), *nx = malloc(sizeof(double) * (size_t)S);
    double *ent = malloc(sizeof(double) * (size_t)S);
    for (int64_t s = 0; s < S; s++) {
        double sum = 0;
        for (int64_t x = 0; x < V; x++) {
            uint64_t key = mix64(d->seed * 0x100000001b3ull ^ mix64((uint64_t)(s * V + x)));
            double u1 = u01(key) + 1e-300, u2 = u01(key + 1);
            double z = sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2);
            p[x] = exp(2.5 * z);
            sum += p[x];
        }
        double c = 0, h = 0;
        for (int64_t x = 0; x < V; x++) {
            double q = p[x] / sum;
            c += q;
            d->cdf[s * V + x] = c;
            if (q > 0)
                h -= q * log(q);
        }
        d->cdf[s * V + V - 1] = 1.0;
        ent[s] = h;
    }
    /* stationary distribution over states (x_{t-K+1..t}) by power iteration:
     * state s = sum x_j V^j with x_0 the newest symbol; next state drops
     * the oldest and shifts in x */
    for (int64_t s = 0; s < S; s++)
        pi[s] = 1.0 / S;
    int64_t top = S / V; /* V^(K-1) */
    for (int it = 0; it < 5000; it++) {
        memset(nx, 0, sizeof(double) * (size_t)S);
        for (int64_t s = 0; s < S; s++) {
            double prev = 0;
            int64_t shifted = (s % top) * V;
            for (int64_t x = 0; x < V; x++) {
                double q = d->cdf[s * V + x] - prev;
                prev = d->cdf[s * V + x];
                nx[shifted + x] += pi[s] * q;
            }
        }
        double diff = 0;
        for (int64_t s = 0; s < S; s++) {
            diff += fabs(nx[s] - pi[s]);
            pi[s] = nx[s];
        }
        if (diff < 1e-15)
            break;
    }
    double H = 0;
    for (int64_t s = 0; s < S; s++)
        H += pi[s] * ent[s];
    d->entropy = H;
    free(p);
    free(pi);
    free(nx);
    free(ent);
}

static int open_shard(const char *path, exec_data *d, int64_t vocab, char err[SPEC_ERR_LEN])
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, SPEC_ERR_LEN, "data: cannot open '%s': %s", path, strerror(errno));
        return -1;
    }
    int32_t hdr[256];
    struct stat st;
    if (fstat(fileno(f), &st) || fread(hdr, sizeof hdr, 1, f) != 1) {
        snprintf(err, SPEC_ERR_LEN, "data: '%s' is shorter than the 1024-byte shard header", path);
        fclose(f);
        return -1;
    }
    if (hdr[0] != DATA_SHARD_MAGIC || hdr[1] != DATA_SHARD_VERSION) {
        snprintf(err, SPEC_ERR_LEN, "data: '%s' is not a token shard (magic %d, version %d; expected %d, %d)",
                 path, hdr[0], hdr[1], DATA_SHARD_MAGIC, DATA_SHARD_VERSION);
        fclose(f);
        return -1;
    }
    int64_t n = hdr[2];
    if (n < 0 || (int64_t)st.st_size != 1024 + 2 * n) {
        snprintf(err, SPEC_ERR_LEN, "data: '%s' header says %lld tokens but the file holds %lld bytes (expected %lld)",
                 path, (long long)n, (long long)st.st_size, (long long)(1024 + 2 * n));
        fclose(f);
        return -1;
    }
    if (n < d->seq + 1) {
        snprintf(err, SPEC_ERR_LEN, "data: '%s' has %lld tokens, fewer than one sequence of %lld + 1", path,
                 (long long)n, (long long)d->seq);
        fclose(f);
        return -1;
    }
    d->tok = malloc(sizeof(uint16_t) * (size_t)n);
    if (fread(d->tok, sizeof(uint16_t), (size_t)n, f) != (size_t)n) {
        snprintf(err, SPEC_ERR_LEN, "data: '%s' is truncated", path);
        fclose(f);
        return -1;
    }
    fclose(f);
    int64_t mx = 0;
    for (int64_t i = 0; i < n; i++)
        mx = d->tok[i] > mx ? d->tok[i] : mx;
    if (mx >= vocab) {
        snprintf(err, SPEC_ERR_LEN, "data: '%s' holds token %lld but the model's vocab is %lld", path,
                 (long long)mx, (long long)vocab);
        return -1;
    }
    d->ntok = n;
    d->vocab = mx + 1;
    return 0;
}

int exec_data_open(const char *spec, int64_t seq, int64_t vocab, exec_data **out, char err[SPEC_ERR_LEN])
{
    *out = NULL;
    exec_data *d = calloc(1, sizeof *d);
    d->seq = seq;
    if (!strncmp(spec, "markov:", 7)) {
        d->kind = 0;
        if (parse_markov(spec, d, err)) {
            free(d);
            return -1;
        }
        if (d->V > vocab) {
            snprintf(err, SPEC_ERR_LEN, "data: markov vocab=%d exceeds the model's vocab=%lld", d->V, (long long)vocab);
            free(d);
            return -1;
        }
        markov_build(d);
        d->vocab = d->V;
    } else {
        d->kind = 1;
        if (vocab > 65536) {
            snprintf(err, SPEC_ERR_LEN, "data: the model's vocab=%lld exceeds what uint16 shards hold (65536)",
                     (long long)vocab);
            free(d);
            return -1;
        }
        if (open_shard(spec, d, vocab, err)) {
            exec_data_close(d);
            return -1;
        }
    }
    *out = d;
    return 0;
}

void exec_data_close(exec_data *d)
{
    if (!d)
        return;
    free(d->cdf);
    free(d->tok);
    free(d);
}

void exec_data_sample(const exec_data *d, int64_t i, int *tokens, int *targets)
{
    int64_t T = d->seq;
    if (d->kind == 1) {
        int64_t span = d->ntok - T - 1 + 1;
        int64_t start = (int64_t)(mix64((uint64_t)i ^ 0x5eedull) % (uint64_t)span);
        for (int64_t t = 0; t < T; t++) {
            tokens[t] = d->tok[start + t];
            targets[t] = d->tok[start + t + 1];
        }
        return;
    }
    /* the chain starts from a state drawn uniformly and runs a burn-in of
     * 64 steps, so the recorded part is (close to) stationary and the
     * expected loss of a perfect model is the entropy rate */
    uint64_t key = mix64(d->seed ^ mix64((uint64_t)i + 0x1234567ull));
    int64_t s = (int64_t)(mix64(key) % (uint64_t)d->states);
    int64_t top = d->states / d->V;
    const int burn = 64;
    for (int64_t t = -burn; t < T; t++) {
        double u = u01(key + 17 * (uint64_t)(t + burn + 1));
        const double *c = d->cdf + s * d->V;
        int lo = 0, hi = d->V - 1;
        while (lo < hi) {
            int mid = (lo + hi) / 2;
            if (c[mid] >= u)
                hi = mid;
            else
                lo = mid + 1;
        }
        if (t >= 0) {
            tokens[t] = (int)(s % d->V); /* the newest symbol of the state */
            targets[t] = lo;
        }
        s = (s % top) * d->V + lo;
    }
}

double exec_data_entropy_rate(const exec_data *d) { return d->kind == 0 ? d->entropy : -1.0; }
int64_t exec_data_vocab(const exec_data *d) { return d->vocab; }

int exec_data_text_to_shard(const char *text_path, const char *out_path, int force, char err[SPEC_ERR_LEN])
{
    if (!force && access(out_path, F_OK) == 0) {
        snprintf(err, SPEC_ERR_LEN, "data: '%s' exists; not overwriting it (use --force)", out_path);
        return -1;
    }
    FILE *in = fopen(text_path, "rb");
    if (!in) {
        snprintf(err, SPEC_ERR_LEN, "data: cannot open '%s': %s", text_path, strerror(errno));
        return -1;
    }
    fseek(in, 0, SEEK_END);
    long n = ftell(in);
    fseek(in, 0, SEEK_SET);
    if (n <= 0 || n > INT32_MAX) {
        snprintf(err, SPEC_ERR_LEN, "data: '%s' is empty or larger than 2 GB", text_path);
        fclose(in);
        return -1;
    }
    unsigned char *buf = malloc((size_t)n);
    size_t got = fread(buf, 1, (size_t)n, in);
    fclose(in);
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", out_path, (int)getpid());
    FILE *out = fopen(tmp, "wb");
    if (!out) {
        snprintf(err, SPEC_ERR_LEN, "data: cannot write '%s': %s", tmp, strerror(errno));
        free(buf);
        return -1;
    }
    int32_t hdr[256] = {DATA_SHARD_MAGIC, DATA_SHARD_VERSION, (int32_t)got};
    fwrite(hdr, sizeof hdr, 1, out);
    for (size_t i = 0; i < got; i++) {
        uint16_t t = buf[i];
        fwrite(&t, sizeof t, 1, out);
    }
    free(buf);
    if (fclose(out) || rename(tmp, out_path)) {
        unlink(tmp);
        snprintf(err, SPEC_ERR_LEN, "data: cannot write '%s'", out_path);
        return -1;
    }
    return 0;
}
