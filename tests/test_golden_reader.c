/* test_golden_reader.c - the golden-file reader: the committed files load with the expected
 * shapes and self-consistent contents, and malformed files are rejected.
 *
 * Files are found under $LRCNN_SRCDIR/tests/data/golden when LRCNN_SRCDIR is set in the
 * environment, else under tests/data/golden relative to the working directory, else under the
 * compiled-in LRCNN_SRCDIR (the Makefile defines it).
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "golden.h"

/* ------------------------------------------------------------------ helpers */

/* (no libm: the standalone build line links only cmocka) */
static float absf(float v)
{
    return v < 0.0f ? -v : v;
}

static void golden_path(char *buf, size_t size, const char *file)
{
    const char *env = getenv("LRCNN_SRCDIR");
    if (env && *env) {
        snprintf(buf, size, "%s/tests/data/golden/%s", env, file);
        return;
    }
    snprintf(buf, size, "tests/data/golden/%s", file);
#ifdef LRCNN_SRCDIR
    if (access(buf, R_OK) != 0) {
        snprintf(buf, size, "%s/tests/data/golden/%s", LRCNN_SRCDIR, file);
    }
#endif
}

static golden_file *load_committed(const char *file)
{
    char path[4096];
    golden_path(path, sizeof path, file);
    golden_file *g = NULL;
    int rc = golden_load(path, &g);
    if (rc != 0) {
        print_error("could not load %s (set LRCNN_SRCDIR or run from the repository root)\n", path);
    }
    assert_int_equal(rc, 0);
    assert_non_null(g);
    return g;
}

static const golden_array *need(const golden_file *g, const char *name)
{
    const golden_array *a = golden_find(g, name);
    if (!a) {
        print_error("array %s missing\n", name);
    }
    assert_non_null(a);
    return a;
}

/* Asserts the shape of `name`; pass the dims, -1 terminated. */
static const golden_array *shape_is(const golden_file *g, const char *name, ...)
{
    const golden_array *a = need(g, name);
    va_list ap;
    va_start(ap, name);
    int nd = 0;
    int64_t count = 1;
    for (;;) {
        int d = va_arg(ap, int);
        if (d < 0) {
            break;
        }
        assert_true(nd < a->ndim);
        if (a->dims[nd] != d) {
            print_error("%s: dims[%d] = %lld, expected %d\n", name, nd, (long long)a->dims[nd], d);
        }
        assert_int_equal(a->dims[nd], d);
        count *= d;
        nd++;
    }
    va_end(ap);
    assert_int_equal(a->ndim, nd);
    assert_int_equal(a->count, count);
    return a;
}

/* Writes `len` bytes to a new temporary file; the caller unlinks `path`. */
static void write_temp(char *path, size_t size, const void *bytes, size_t len)
{
    const char *dir = getenv("TMPDIR");
    snprintf(path, size, "%s/lrgoldXXXXXX", dir && *dir ? dir : "/tmp");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "wb");
    assert_non_null(f);
    if (len > 0) {
        assert_int_equal(fwrite(bytes, 1, len, f), len);
    }
    assert_int_equal(fclose(f), 0);
}

/* Loads `len` bytes through a temporary file; returns golden_load()'s result, frees on success. */
static int load_bytes(const void *bytes, size_t len)
{
    char path[4096];
    write_temp(path, sizeof path, bytes, len);
    golden_file *g = (golden_file *)1;
    int rc = golden_load(path, &g);
    unlink(path);
    if (rc == 0) {
        assert_non_null(g);
        golden_free(g);
    } else {
        assert_null(g);
    }
    return rc;
}

static unsigned char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    assert_true(n > 0);
    rewind(f);
    unsigned char *b = malloc((size_t)n + 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return b;
}

/* A small hand-made file: builder appending little-endian fields. */
typedef struct {
    unsigned char b[512];
    size_t n;
} blob;

static void put(blob *x, const void *p, size_t n)
{
    assert_true(x->n + n <= sizeof x->b);
    memcpy(x->b + x->n, p, n);
    x->n += n;
}

static void put32(blob *x, uint32_t v)
{
    unsigned char b[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 24)};
    put(x, b, 4);
}

static void put64(blob *x, int64_t sv)
{
    uint64_t v = (uint64_t)sv;
    put32(x, (uint32_t)v);
    put32(x, (uint32_t)(v >> 32));
}

static void put_header(blob *x, uint32_t count)
{
    x->n = 0;
    put(x, "LRGOLD01", 8);
    put32(x, count);
}

/* name, ndim, dims, then `nfloat` floats 0.5, 1.5, ... */
static void put_array(blob *x, const char *name, uint32_t ndim, const int64_t *dims, int nfloat)
{
    put32(x, (uint32_t)strlen(name));
    put(x, name, strlen(name));
    put32(x, ndim);
    for (uint32_t i = 0; i < ndim; i++) {
        put64(x, dims[i]);
    }
    for (int i = 0; i < nfloat; i++) {
        float f = 0.5f + (float)i;
        uint32_t u;
        memcpy(&u, &f, 4);
        put32(x, u);
    }
}

/* ------------------------------------------------------------------ committed files */

static const char *const FILES[] = {"tiny-vgg.bin", "tiny-resnet.bin", "tiny-mix.bin"};

static void check_common(const golden_file *g)
{
    shape_is(g, "input", 4, 1, 28, 28, -1);
    const golden_array *lab = shape_is(g, "labels", 4, -1);
    for (int i = 0; i < 4; i++) {
        float v = lab->data[i];
        assert_true(v >= 0.0f && v < 10.0f && v == (float)(int)v);
    }
    shape_is(g, "logits", 4, 10, -1);
    const golden_array *loss = shape_is(g, "loss", 1, -1);
    assert_true(isfinite(loss->data[0]) && loss->data[0] > 0.0f);

    /* Every parameter comes with its gradient and both optimizer results, of the same shape,
     * and the SGD-momentum first step is w - 0.01 * grad. */
    int params = 0;
    for (int i = 0; i < g->n; i++) {
        const golden_array *a = &g->arrays[i];
        int64_t count = 1;
        for (int d = 0; d < a->ndim; d++) {
            count *= a->dims[d];
        }
        assert_int_equal(a->count, count);
        for (int64_t k = 0; k < a->count; k++) {
            assert_true(isfinite(a->data[k]));
        }
        size_t len = strlen(a->name);
        const char *suffix = NULL;
        if (len > 7 && strcmp(a->name + len - 7, ".weight") == 0) {
            suffix = ".weight";
        } else if (len > 5 && strcmp(a->name + len - 5, ".bias") == 0) {
            suffix = ".bias";
        }
        if (!suffix) {
            continue;
        }
        params++;
        static const char *const derived[] = {".grad", ".momentum", ".adam"};
        const golden_array *grad = NULL, *mom = NULL;
        for (int k = 0; k < 3; k++) {
            char name[GOLDEN_NAME_MAX + 16];
            snprintf(name, sizeof name, "%s%s", a->name, derived[k]);
            const golden_array *b = need(g, name);
            assert_int_equal(b->ndim, a->ndim);
            for (int d = 0; d < a->ndim; d++) {
                assert_int_equal(b->dims[d], a->dims[d]);
            }
            if (k == 0) {
                grad = b;
            } else if (k == 1) {
                mom = b;
            }
        }
        for (int64_t k = 0; k < a->count; k++) {
            float want = a->data[k] - 0.01f * grad->data[k];
            assert_true(absf(mom->data[k] - want) <= 1e-6f * (1.0f + absf(want)));
        }
    }
    assert_true(params >= 4);
}

static void test_tiny_vgg(void **state)
{
    (void)state;
    golden_file *g = load_committed("tiny-vgg.bin");
    check_common(g);
    shape_is(g, "conv1_1.weight", 16, 1, 3, 3, -1);
    shape_is(g, "conv1_1.bias", 16, -1);
    shape_is(g, "conv1_1.weight.grad", 16, 1, 3, 3, -1);
    shape_is(g, "conv2_2.weight", 32, 32, 3, 3, -1);
    shape_is(g, "fc1.weight", 64, 32 * 7 * 7, -1);
    shape_is(g, "fc2.weight.adam", 10, 64, -1);
    shape_is(g, "conv1_1.out", 4, 16, 28, 28, -1);
    shape_is(g, "pool2.out", 4, 32, 7, 7, -1);
    shape_is(g, "drop.out", 4, 64, -1);
    const golden_array *fc2 = shape_is(g, "fc2.out", 4, 10, -1);
    const golden_array *logits = need(g, "logits");
    assert_memory_equal(fc2->data, logits->data, 40 * sizeof(float));
    assert_null(golden_find(g, "conv1_1.running_mean")); /* no batchnorm in this net */
    assert_null(golden_find(g, "relu1_1.out"));          /* derived outputs are not stored */
    golden_free(g);
}

static void test_tiny_resnet(void **state)
{
    (void)state;
    golden_file *g = load_committed("tiny-resnet.bin");
    check_common(g);
    shape_is(g, "conv1.weight", 8, 1, 3, 3, -1);
    assert_null(golden_find(g, "conv1.bias")); /* "bias": false */
    shape_is(g, "bn1.weight", 8, -1);
    shape_is(g, "bn1.running_mean", 8, -1);
    const golden_array *rv = shape_is(g, "b2_bn2.running_var", 16, -1);
    for (int i = 0; i < 16; i++) {
        assert_true(rv->data[i] > 0.9f); /* 0.9 * 1 + 0.1 * (a variance) */
    }
    shape_is(g, "b2_conv1.weight", 16, 8, 3, 3, -1);
    shape_is(g, "b2_down.weight", 16, 8, 1, 1, -1);
    shape_is(g, "b2_add.out", 4, 16, 14, 14, -1);
    shape_is(g, "gap.out", 4, 16, 1, 1, -1);
    shape_is(g, "fc.weight", 10, 16, -1);
    golden_free(g);
}

static void test_tiny_mix(void **state)
{
    (void)state;
    golden_file *g = load_committed("tiny-mix.bin");
    check_common(g);
    shape_is(g, "conv2.weight", 8, 4, 3, 3, -1); /* groups 2 */
    shape_is(g, "conv3.weight", 16, 16, 3, 5, -1);
    shape_is(g, "pool1.out", 4, 8, 14, 14, -1);
    shape_is(g, "up.out", 4, 8, 28, 28, -1);
    shape_is(g, "cat.out", 4, 16, 28, 28, -1);
    shape_is(g, "conv3.out", 4, 16, 14, 14, -1);
    shape_is(g, "pool3.out", 4, 16, 7, 7, -1);
    shape_is(g, "apool.out", 4, 16, 3, 3, -1);
    shape_is(g, "fc.weight", 10, 16 * 9, -1);
    shape_is(g, "bn3.running_var", 16, -1);
    golden_free(g);
}

/* ------------------------------------------------------------------ rejection */

static void test_rejects_truncated_and_bad_magic(void **state)
{
    (void)state;
    for (size_t f = 0; f < sizeof FILES / sizeof FILES[0]; f++) {
        char path[4096];
        golden_path(path, sizeof path, FILES[f]);
        size_t len;
        unsigned char *b = read_file(path, &len);

        assert_int_equal(load_bytes(b, len), 0); /* the untouched copy loads */

        /* Truncated: empty, inside the magic, the count, the first header, the first data,
         * and one byte short of the end. */
        size_t cuts[] = {0, 5, 8, 10, 12, 14, 20, 40, len / 2, len - 4, len - 1};
        for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
            assert_int_equal(load_bytes(b, cuts[i]), -1);
        }

        unsigned char saved = b[3];
        b[3] = 'X';
        assert_int_equal(load_bytes(b, len), -1); /* bad magic */
        b[3] = saved;

        b[len] = 0;
        assert_int_equal(load_bytes(b, len + 1), -1); /* trailing garbage */
        free(b);
    }
}

static void test_rejects_malformed(void **state)
{
    (void)state;
    blob x;
    int64_t d2[] = {2};

    /* The hand-made reference file is valid and reads back exactly. */
    put_header(&x, 2);
    put_array(&x, "a", 1, d2, 2);
    int64_t d0[] = {3, 0};
    put_array(&x, "empty", 2, d0, 0);
    {
        char path[4096];
        write_temp(path, sizeof path, x.b, x.n);
        golden_file *g = NULL;
        assert_int_equal(golden_load(path, &g), 0);
        unlink(path);
        assert_int_equal(g->n, 2);
        const golden_array *a = golden_find(g, "a");
        assert_non_null(a);
        assert_int_equal(a->ndim, 1);
        assert_int_equal(a->count, 2);
        assert_true(a->data[0] == 0.5f && a->data[1] == 1.5f);
        const golden_array *e = golden_find(g, "empty");
        assert_non_null(e);
        assert_int_equal(e->count, 0);
        assert_non_null(e->data);
        assert_null(golden_find(g, "b"));
        golden_free(g);
    }

    /* A scalar (ndim 0) holds one value. */
    put_header(&x, 1);
    put_array(&x, "s", 0, NULL, 1);
    assert_int_equal(load_bytes(x.b, x.n), 0);

    /* ndim 5. */
    int64_t d5[] = {1, 1, 1, 1, 2};
    put_header(&x, 1);
    put_array(&x, "a", 5, d5, 2);
    assert_int_equal(load_bytes(x.b, x.n), -1);

    /* Negative dimension. */
    int64_t dneg[] = {-2, -1};
    put_header(&x, 1);
    put_array(&x, "a", 2, dneg, 2);
    assert_int_equal(load_bytes(x.b, x.n), -1);

    /* Element count that overflows int64. */
    int64_t dover[] = {INT64_C(1) << 40, INT64_C(1) << 40};
    put_header(&x, 1);
    put_array(&x, "a", 2, dover, 2);
    assert_int_equal(load_bytes(x.b, x.n), -1);

    /* Huge but representable count: more data than the file holds. */
    int64_t dhuge[] = {INT64_C(1) << 40};
    put_header(&x, 1);
    put_array(&x, "a", 1, dhuge, 2);
    assert_int_equal(load_bytes(x.b, x.n), -1);

    /* Absurd array count. */
    put_header(&x, 0xFFFFFFFFu);
    put_array(&x, "a", 1, d2, 2);
    assert_int_equal(load_bytes(x.b, x.n), -1);

    /* More arrays announced than present. */
    put_header(&x, 2);
    put_array(&x, "a", 1, d2, 2);
    assert_int_equal(load_bytes(x.b, x.n), -1);

    /* Empty name, name too long, name with a NUL. */
    put_header(&x, 1);
    put_array(&x, "", 1, d2, 2);
    assert_int_equal(load_bytes(x.b, x.n), -1);
    char longname[GOLDEN_NAME_MAX + 1];
    memset(longname, 'n', GOLDEN_NAME_MAX);
    longname[GOLDEN_NAME_MAX] = '\0';
    put_header(&x, 1);
    put_array(&x, longname, 1, d2, 2);
    assert_int_equal(load_bytes(x.b, x.n), -1);
    longname[GOLDEN_NAME_MAX - 1] = '\0'; /* 95 characters: the longest allowed */
    put_header(&x, 1);
    put_array(&x, longname, 1, d2, 2);
    assert_int_equal(load_bytes(x.b, x.n), 0);
    put_header(&x, 1);
    put32(&x, 3);
    put(&x, "a\0b", 3);
    put32(&x, 1);
    put64(&x, 2);
    put32(&x, 0);
    put32(&x, 0);
    assert_int_equal(load_bytes(x.b, x.n), -1);

    /* Duplicate names. */
    put_header(&x, 2);
    put_array(&x, "a", 1, d2, 2);
    put_array(&x, "a", 1, d2, 2);
    assert_int_equal(load_bytes(x.b, x.n), -1);

    /* Zero arrays and nothing else is a valid (empty) file; with a trailing byte it is not. */
    put_header(&x, 0);
    assert_int_equal(load_bytes(x.b, x.n), 0);
    put32(&x, 0);
    assert_int_equal(load_bytes(x.b, x.n - 3), -1);
}

static void test_missing_file_and_free_null(void **state)
{
    (void)state;
    golden_file *g = (golden_file *)1;
    assert_int_equal(golden_load("/nonexistent/lrcnn/golden.bin", &g), -1);
    assert_null(g);
    golden_free(NULL);
    assert_null(golden_find(NULL, "loss"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tiny_vgg),
        cmocka_unit_test(test_tiny_resnet),
        cmocka_unit_test(test_tiny_mix),
        cmocka_unit_test(test_rejects_truncated_and_bad_magic),
        cmocka_unit_test(test_rejects_malformed),
        cmocka_unit_test(test_missing_file_and_free_null),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
