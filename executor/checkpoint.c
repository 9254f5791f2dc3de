/* checkpoint.c — whole-or-ignored checkpoints (see checkpoint.h). */
#include "checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

uint32_t exec_crc32(uint32_t crc, const void *buf, size_t n)
{
    static uint32_t table[256];
    static int ready;
    if (!ready) {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++)
                c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            table[i] = c;
        }
        ready = 1;
    }
    const unsigned char *p = buf;
    crc = ~crc;
    for (size_t i = 0; i < n; i++)
        crc = table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
    return ~crc;
}

static const char *FILES[3] = {"params.bin", "adam_m.bin", "adam_v.bin"};

static int write_synced(const char *path, const void *buf, size_t bytes)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return -1;
    const char *p = buf;
    size_t left = bytes;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w <= 0) {
            close(fd);
            return -1;
        }
        p += w, left -= (size_t)w;
    }
    int rc = fsync(fd);
    return close(fd) || rc ? -1 : 0;
}

static void rm_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    char path[4096];
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            unlink(path);
        }
    closedir(d);
    rmdir(dir);
}

/* Steps of the complete checkpoints in dir, descending; returns the count. */
static int list_steps(const char *dir, int *steps, int max)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d)) && n < max) {
        int s;
        char tail;
        if (sscanf(e->d_name, "step_%d%c", &s, &tail) == 1) {
            char man[4096];
            snprintf(man, sizeof man, "%s/%s/MANIFEST", dir, e->d_name);
            if (access(man, R_OK) == 0)
                steps[n++] = s;
        }
    }
    closedir(d);
    for (int i = 1; i < n; i++) /* insertion sort, descending */
        for (int j = i; j > 0 && steps[j] > steps[j - 1]; j--) {
            int t = steps[j];
            steps[j] = steps[j - 1], steps[j - 1] = t;
        }
    return n;
}

int exec_ckpt_save(const char *dir, int step, const exec_model *md, const float *m, const float *v, int keep,
                   char err[SPEC_ERR_LEN])
{
    mkdir(dir, 0755);
    char tmp[4096], fin[4096], path[4200];
    snprintf(tmp, sizeof tmp, "%s/step_%d.tmp", dir, step);
    snprintf(fin, sizeof fin, "%s/step_%d", dir, step);
    rm_tree(tmp);
    if (mkdir(tmp, 0755)) {
        snprintf(err, SPEC_ERR_LEN, "checkpoint: cannot create '%s': %s", tmp, strerror(errno));
        return -1;
    }
    const float *bufs[3] = {md->params, m, v};
    size_t bytes = sizeof(float) * (size_t)md->n_params;
    uint32_t crc[3];
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", tmp, FILES[i]);
        crc[i] = exec_crc32(0, bufs[i], bytes);
        if (write_synced(path, bufs[i], bytes)) {
            snprintf(err, SPEC_ERR_LEN, "checkpoint: cannot write '%s': %s", path, strerror(errno));
            return -1;
        }
    }
    /* the manifest, last: what makes the checkpoint whole */
    char *man = malloc(64 * (size_t)(md->n_p + 16) + 4096);
    int n = sprintf(man, "triad checkpoint 1\nstep %d\nparams %lld\n", step, (long long)md->n_params);
    n += sprintf(man + n, "model layers=%lld,hidden=%lld,heads=%lld,ffn=%lld,vocab=%lld,seq=%lld\n",
                 (long long)md->m.layers, (long long)md->m.hidden, (long long)md->m.heads, (long long)md->m.ffn,
                 (long long)md->m.vocab, (long long)md->m.seq);
    for (int i = 0; i < 3; i++)
        n += sprintf(man + n, "file %s %zu %08x\n", FILES[i], bytes, crc[i]);
    for (int i = 0; i < md->n_p; i++) {
        const exec_param *p = &md->p[i];
        n += sprintf(man + n, "tensor %s %d %lld %lld", p->shape.name, p->layer, (long long)p->offset,
                     (long long)p->shape.elems);
        for (int d = 0; d < p->shape.ndim; d++)
            n += sprintf(man + n, " %lld", (long long)p->shape.dims[d]);
        n += sprintf(man + n, "\n");
    }
    snprintf(path, sizeof path, "%s/MANIFEST", tmp);
    int rc = write_synced(path, man, (size_t)n);
    free(man);
    if (rc) {
        snprintf(err, SPEC_ERR_LEN, "checkpoint: cannot write '%s'", path);
        return -1;
    }
    rm_tree(fin);
    if (rename(tmp, fin)) {
        snprintf(err, SPEC_ERR_LEN, "checkpoint: cannot rename '%s': %s", tmp, strerror(errno));
        return -1;
    }
    int dfd = open(dir, O_RDONLY);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    /* only now, with a newer one complete, drop the oldest */
    int steps[4096];
    int k = list_steps(dir, steps, 4096);
    for (int i = keep; i < k; i++) {
        snprintf(path, sizeof path, "%s/step_%d", dir, steps[i]);
        rm_tree(path);
    }
    return 0;
}

int exec_ckpt_load_latest(const char *dir, exec_model *md, float *m, float *v, int *step, char err[SPEC_ERR_LEN])
{
    int steps[4096];
    int k = list_steps(dir, steps, 4096);
    if (k == 0)
        return 1;
    char path[4200];
    snprintf(path, sizeof path, "%s/step_%d/MANIFEST", dir, steps[0]);
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, SPEC_ERR_LEN, "checkpoint: cannot read '%s'", path);
        return -1;
    }
    char line[1024];
    int s = -1, files = 0;
    long long np = -1;
    float *bufs[3] = {md->params, m, v};
    int rc = 0;
    while (fgets(line, sizeof line, f) && rc == 0) {
        char name[256];
        size_t bytes;
        unsigned crc;
        if (sscanf(line, "step %d", &s) == 1 || sscanf(line, "params %lld", &np) == 1)
            continue;
        if (sscanf(line, "file %255s %zu %x", name, &bytes, &crc) == 3) {
            if (np != md->n_params || bytes != sizeof(float) * (size_t)md->n_params) {
                snprintf(err, SPEC_ERR_LEN, "checkpoint: %s holds %lld parameters, this model has %lld",
                         path, np, (long long)md->n_params);
                rc = -1;
                break;
            }
            int which = -1;
            for (int i = 0; i < 3; i++)
                if (!strcmp(name, FILES[i]))
                    which = i;
            char fp[4400];
            snprintf(fp, sizeof fp, "%s/step_%d/%s", dir, steps[0], name);
            FILE *g = which >= 0 ? fopen(fp, "rb") : NULL;
            struct stat st;
            if (!g || fstat(fileno(g), &st) || (size_t)st.st_size != bytes ||
                fread(bufs[which], 1, bytes, g) != bytes) {
                snprintf(err, SPEC_ERR_LEN, "checkpoint: '%s' is missing or truncated (expected %zu bytes)", fp,
                         bytes);
                rc = -1;
            } else if (exec_crc32(0, bufs[which], bytes) != crc) {
                snprintf(err, SPEC_ERR_LEN, "checkpoint: '%s' fails its checksum (corrupted); refusing to resume",
                         fp);
                rc = -1;
            } else {
                files++;
            }
            if (g)
                fclose(g);
        }
    }
    fclose(f);
    if (rc == 0 && (files != 3 || s != steps[0])) {
        snprintf(err, SPEC_ERR_LEN, "checkpoint: '%s' is incomplete", path);
        rc = -1;
    }
    if (rc == 0)
        *step = s;
    return rc;
}
