/* data.c - Fashion-MNIST idx files and synthetic data (see data.h). */
#include "data.h"

#include <errno.h>
#include <stdbool.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* Reads a whole gzip file through `gzip -dc` (present wherever Debian's dataset package is). */
static lr_status gunzip(const char *path, uint8_t **out, size_t *len)
{
    *out = NULL;
    if (access(path, R_OK) != 0)
        return lr_fail(LR_ERR_IO,
                       "%s: %s (install the Debian package dataset-fashion-mnist, or set "
                       "LRCNN_FASHION_MNIST to a directory with the idx .gz files)",
                       path, strerror(errno));
    if (strchr(path, '\''))
        return lr_fail(LR_ERR_IO, "%s: unsupported character in path", path);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "gzip -dc '%s' 2>/dev/null", path);
    FILE *p = popen(cmd, "r");
    if (!p)
        return lr_fail(LR_ERR_IO, "%s: cannot run gzip: %s", path, strerror(errno));
    size_t cap = 1 << 20, n = 0;
    uint8_t *buf = malloc(cap);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n, p);
        n += got;
        if (got == 0)
            break;
        if (n == cap) {
            uint8_t *nb = cap < ((size_t)1 << 31) ? realloc(buf, cap * 2) : NULL;
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    int status = pclose(p);
    if (!buf)
        return lr_fail(LR_ERR_NOMEM, "%s: out of memory", path);
    if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        free(buf);
        return lr_fail(LR_ERR_IO, "%s: not a complete gzip file (truncated or corrupt)", path);
    }
    *out = buf;
    *len = n;
    return LR_OK;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static lr_status read_idx(const char *path, uint32_t magic, int dims, uint32_t *shape,
                          uint8_t **data, size_t *count)
{
    uint8_t *buf;
    size_t len;
    LR_TRY(gunzip(path, &buf, &len));
    size_t head = 4 + 4 * (size_t)dims;
    if (len < head || be32(buf) != magic) {
        free(buf);
        return lr_fail(LR_ERR_INPUT, "%s: not an idx file of the expected kind (magic 0x%08x)", path, magic);
    }
    size_t want = 1;
    bool fits = true; /* the product stays below the file size (and so cannot wrap) */
    for (int i = 0; i < dims; i++) {
        shape[i] = be32(buf + 4 + 4 * i);
        fits = fits && shape[i] > 0 && shape[i] <= (1u << 24) && want <= len / shape[i];
        want = fits ? want * shape[i] : 0;
    }
    if (!fits || len - head != want) {
        free(buf);
        if (!fits)
            return lr_fail(LR_ERR_INPUT, "%s: truncated or inconsistent (%zu data bytes; the header's "
                                         "dimensions are zero or claim more)", path, len - head);
        return lr_fail(LR_ERR_INPUT, "%s: truncated or inconsistent (%zu data bytes, header says %zu)", path, len - head, want);
    }
    memmove(buf, buf + head, want);
    *data = buf;
    *count = want;
    return LR_OK;
}

lr_status data_load_fashion(const char *dir, const char *split, int limit, data_set *out)
{
    memset(out, 0, sizeof *out);
    if (!dir)
        dir = getenv("LRCNN_FASHION_MNIST") ? getenv("LRCNN_FASHION_MNIST") : DATA_FASHION_DIR;
    char ip[1024], lp[1024];
    snprintf(ip, sizeof ip, "%s/%s-images-idx3-ubyte.gz", dir, split);
    snprintf(lp, sizeof lp, "%s/%s-labels-idx1-ubyte.gz", dir, split);
    uint32_t is[3], ls[1];
    uint8_t *img = NULL, *lab = NULL;
    size_t ni, nl;
    LR_TRY(read_idx(ip, 0x00000803, 3, is, &img, &ni));
    lr_status s = read_idx(lp, 0x00000801, 1, ls, &lab, &nl);
    if (s == LR_OK && ls[0] != is[0])
        s = lr_fail(LR_ERR_INPUT, "%s: %u labels for %u images in %s", lp, ls[0], is[0], ip);
    int n = (int)is[0];
    if (limit > 0 && limit < n)
        n = limit;
    if (s == LR_OK) {
        out->n = n, out->c = 1, out->h = (int)is[1], out->w = (int)is[2];
        out->images = malloc(sizeof(float) * (size_t)n * is[1] * is[2]);
        out->labels = malloc(sizeof(int32_t) * (size_t)n);
        if (!out->images || !out->labels)
            s = lr_fail(LR_ERR_NOMEM, "out of memory loading %s", ip);
    }
    for (size_t i = 0; s == LR_OK && i < (size_t)n * is[1] * is[2]; i++)
        out->images[i] = (float)((img[i] / 255.0 - 0.2860) / 0.3530);
    for (int i = 0; s == LR_OK && i < n; i++) {
        if (lab[i] > 9)
            s = lr_fail(LR_ERR_INPUT, "%s: label %d of image %d is not a class 0..9", lp, lab[i], i);
        else
            out->labels[i] = lab[i];
    }
    free(img);
    free(lab);
    if (s != LR_OK)
        data_free(out);
    return s;
}

static uint64_t next(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

lr_status data_synthetic(int n, int c, int h, int w, int classes, uint64_t seed, data_set *out)
{
    memset(out, 0, sizeof *out);
    size_t count = (size_t)n * c * h * w;
    out->images = malloc(sizeof(float) * count);
    out->labels = malloc(sizeof(int32_t) * (size_t)n);
    if (!out->images || !out->labels) {
        data_free(out);
        return lr_fail(LR_ERR_NOMEM, "out of memory for %d synthetic %dx%dx%d images", n, c, h, w);
    }
    out->n = n, out->c = c, out->h = h, out->w = w;
    uint64_t s = seed;
    for (size_t i = 0; i < count; i += 2) {
        /* Box-Muller */
        double u1 = ((next(&s) >> 11) + 1.0) * 0x1.0p-53, u2 = (next(&s) >> 11) * 0x1.0p-53;
        double r = sqrt(-2 * log(u1));
        out->images[i] = (float)(r * cos(2 * M_PI * u2));
        if (i + 1 < count)
            out->images[i + 1] = (float)(r * sin(2 * M_PI * u2));
    }
    for (int i = 0; i < n; i++)
        out->labels[i] = (int32_t)(next(&s) % (uint64_t)classes);
    return LR_OK;
}

void data_free(data_set *d)
{
    if (!d)
        return;
    free(d->images);
    free(d->labels);
    memset(d, 0, sizeof *d);
}

void data_permutation(int n, uint64_t seed, int *perm)
{
    uint64_t s = seed;
    for (int i = 0; i < n; i++)
        perm[i] = i;
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(next(&s) % (uint64_t)(i + 1));
        int t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

void data_gather(const data_set *d, const int *perm, int from, int count, float *images,
                 int32_t *labels)
{
    size_t per = (size_t)d->c * d->h * d->w;
    for (int i = 0; i < count; i++) {
        int k = perm ? perm[(from + i) % d->n] : (from + i) % d->n;
        memcpy(images + per * i, d->images + per * (size_t)k, per * sizeof(float));
        labels[i] = d->labels[k];
    }
}
