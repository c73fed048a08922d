/* golden.h - reader for the golden reference files of tests/data/golden/ (made by
 * tests/data/make_golden.py, an independent float64 PyTorch run of one training step).
 *
 * File format (little-endian, all values float32):
 *   "LRGOLD01", uint32 count, then per array:
 *   uint32 name length, name bytes (no NUL), uint32 ndim, int64 dims[ndim], float32 data (C order)
 *
 * The reader is strict: bad magic, truncation, ndim > 4, negative dimensions, element counts that
 * overflow or exceed the file, empty/overlong/non-printable or duplicate names and trailing bytes
 * are all rejected. Deliberately not here: any comparison policy (tolerances belong to the tests).
 */
#ifndef LR_GOLDEN_H
#define LR_GOLDEN_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define GOLDEN_NAME_MAX 96 /* including the terminating NUL */
#define GOLDEN_MAX_DIMS 4

typedef struct {
    char name[GOLDEN_NAME_MAX];
    int ndim;
    int64_t dims[GOLDEN_MAX_DIMS]; /* unused trailing entries are 0 */
    int64_t count;                 /* product of dims (1 when ndim == 0) */
    float *data;                   /* count values, C order; never NULL */
} golden_array;

typedef struct {
    int n;
    golden_array *arrays;
} golden_file;

/* Loads a golden file. Returns 0 and sets *out (free it with golden_free()), or returns -1 with
 * *out = NULL after printing one line on stderr that names the file and what is wrong. */
int golden_load(const char *path, golden_file **out);

/* The array called `name`, or NULL if there is none. */
const golden_array *golden_find(const golden_file *g, const char *name);

/* Frees everything golden_load() allocated; NULL is a no-op. */
void golden_free(golden_file *g);

#ifdef __cplusplus
}
#endif
#endif
