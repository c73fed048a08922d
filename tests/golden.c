/* golden.c - strict reader for the golden reference files (format in golden.h). */
#include "golden.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char GOLDEN_MAGIC[8] = {'L', 'R', 'G', 'O', 'L', 'D', '0', '1'};

/* Golden files are a few MB; anything above this is not one. */
#define GOLDEN_FILE_MAX ((size_t)1 << 30)

typedef struct {
    const unsigned char *p;
    size_t left;
    const char *path;
} cursor;

static void complain(const char *path, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "golden: %s: ", path);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static uint32_t le32(const unsigned char *b)
{
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static uint64_t le64(const unsigned char *b)
{
    return (uint64_t)le32(b) | (uint64_t)le32(b + 4) << 32;
}

/* Reads the whole file; returns 0 or -1 (message printed). */
static int read_all(const char *path, unsigned char **buf, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        complain(path, "cannot open: %s", strerror(errno));
        return -1;
    }
    size_t cap = 1 << 16, n = 0;
    unsigned char *b = malloc(cap);
    if (!b) {
        fclose(f);
        complain(path, "out of memory");
        return -1;
    }
    for (;;) {
        if (n == cap) {
            if (cap >= GOLDEN_FILE_MAX) {
                free(b);
                fclose(f);
                complain(path, "larger than %zu bytes, not a golden file", GOLDEN_FILE_MAX);
                return -1;
            }
            unsigned char *nb = realloc(b, cap * 2);
            if (!nb) {
                free(b);
                fclose(f);
                complain(path, "out of memory");
                return -1;
            }
            b = nb;
            cap *= 2;
        }
        size_t got = fread(b + n, 1, cap - n, f);
        n += got;
        if (got == 0) {
            break;
        }
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        free(b);
        complain(path, "read error");
        return -1;
    }
    *buf = b;
    *len = n;
    return 0;
}

static int take(cursor *c, size_t n, const unsigned char **at, int idx, const char *what)
{
    if (c->left < n) {
        if (idx < 0) {
            complain(c->path, "truncated: %s needs %zu bytes, %zu left", what, n, c->left);
        } else {
            complain(c->path, "truncated in array %d: %s needs %zu bytes, %zu left", idx, what, n,
                     c->left);
        }
        return -1;
    }
    *at = c->p;
    c->p += n;
    c->left -= n;
    return 0;
}

static int parse_array(cursor *c, int idx, golden_array *a)
{
    const unsigned char *b;
    if (take(c, 4, &b, idx, "the name length") != 0) {
        return -1;
    }
    uint32_t nlen = le32(b);
    if (nlen == 0 || nlen >= GOLDEN_NAME_MAX) {
        complain(c->path, "array %d: name length %" PRIu32 " (must be 1..%d)", idx, nlen,
                 GOLDEN_NAME_MAX - 1);
        return -1;
    }
    if (take(c, nlen, &b, idx, "the name") != 0) {
        return -1;
    }
    for (uint32_t i = 0; i < nlen; i++) {
        if (b[i] < 0x20 || b[i] > 0x7e) {
            complain(c->path, "array %d: name byte %" PRIu32 " is 0x%02x, not printable ASCII", idx,
                     i, (unsigned)b[i]);
            return -1;
        }
    }
    memcpy(a->name, b, nlen);
    a->name[nlen] = '\0';

    if (take(c, 4, &b, idx, "ndim") != 0) {
        return -1;
    }
    uint32_t ndim = le32(b);
    if (ndim > GOLDEN_MAX_DIMS) {
        complain(c->path, "array %d (%s): ndim %" PRIu32 " > %d", idx, a->name, ndim,
                 GOLDEN_MAX_DIMS);
        return -1;
    }
    a->ndim = (int)ndim;
    if (take(c, 8 * (size_t)ndim, &b, idx, "the dims") != 0) {
        return -1;
    }
    int64_t count = 1;
    for (uint32_t d = 0; d < ndim; d++) {
        int64_t v = (int64_t)le64(b + 8 * d);
        if (v < 0) {
            complain(c->path, "array %d (%s): dims[%" PRIu32 "] = %" PRId64 " is negative", idx,
                     a->name, d, v);
            return -1;
        }
        if (v != 0 && count > INT64_MAX / v) {
            complain(c->path, "array %d (%s): element count overflows", idx, a->name);
            return -1;
        }
        count *= v;
        a->dims[d] = v;
    }
    a->count = count;
    if ((uint64_t)count > c->left / 4) {
        complain(c->path, "truncated in array %d (%s): %" PRId64 " floats need %" PRIu64
                          " bytes, %zu left",
                 idx, a->name, count, (uint64_t)count * 4u, c->left);
        return -1;
    }
    if (take(c, (size_t)count * 4, &b, idx, "the data") != 0) {
        return -1;
    }
    a->data = malloc(count > 0 ? (size_t)count * sizeof(float) : sizeof(float));
    if (!a->data) {
        complain(c->path, "out of memory for array %d (%s)", idx, a->name);
        return -1;
    }
    for (int64_t i = 0; i < count; i++) {
        uint32_t u = le32(b + 4 * i);
        memcpy(&a->data[i], &u, sizeof(float));
    }
    return 0;
}

int golden_load(const char *path, golden_file **out)
{
    *out = NULL;
    unsigned char *buf = NULL;
    size_t len = 0;
    if (read_all(path, &buf, &len) != 0) {
        return -1;
    }
    cursor c = {buf, len, path};
    golden_file *g = NULL;
    const unsigned char *b;
    if (take(&c, 8, &b, -1, "the magic") != 0) {
        goto fail;
    }
    if (memcmp(b, GOLDEN_MAGIC, sizeof GOLDEN_MAGIC) != 0) {
        complain(path, "bad magic (expected \"LRGOLD01\")");
        goto fail;
    }
    if (take(&c, 4, &b, -1, "the array count") != 0) {
        goto fail;
    }
    uint32_t n = le32(b);
    /* Each array takes at least 4 + 1 + 4 bytes. */
    if (n > INT32_MAX || n > c.left / 9) {
        complain(path, "truncated or absurd: %" PRIu32 " arrays cannot fit in the %zu bytes left", n,
                 c.left);
        goto fail;
    }
    g = calloc(1, sizeof *g);
    if (!g || (n > 0 && !(g->arrays = calloc(n, sizeof *g->arrays)))) {
        complain(path, "out of memory");
        goto fail;
    }
    for (uint32_t i = 0; i < n; i++) {
        if (parse_array(&c, (int)i, &g->arrays[i]) != 0) {
            g->n = (int)i + 1; /* frees the partly built array too */
            goto fail;
        }
        g->n = (int)i + 1;
        for (uint32_t j = 0; j < i; j++) {
            if (strcmp(g->arrays[j].name, g->arrays[i].name) == 0) {
                complain(path, "array %" PRIu32 ": duplicate name %s (also array %" PRIu32 ")", i,
                         g->arrays[i].name, j);
                goto fail;
            }
        }
    }
    if (c.left != 0) {
        complain(path, "%zu trailing bytes after the last of %" PRIu32 " arrays", c.left, n);
        goto fail;
    }
    free(buf);
    *out = g;
    return 0;

fail:
    free(buf);
    golden_free(g);
    return -1;
}

const golden_array *golden_find(const golden_file *g, const char *name)
{
    if (!g || !name) {
        return NULL;
    }
    for (int i = 0; i < g->n; i++) {
        if (strcmp(g->arrays[i].name, name) == 0) {
            return &g->arrays[i];
        }
    }
    return NULL;
}

void golden_free(golden_file *g)
{
    if (!g) {
        return;
    }
    for (int i = 0; i < g->n; i++) {
        free(g->arrays[i].data);
    }
    free(g->arrays);
    free(g);
}
