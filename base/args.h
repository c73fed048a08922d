/* args.h - command-line parsing shared by lrcnn-sim and lrcnn-validate: a table of flags, each
 * with a handler, and strict number and size parsers (strtol/strtod with end-pointer and range
 * checks). Every error names the flag and returns LR_ERR_USAGE.
 * Deliberately not here: what the flags mean (the tools' own tables).
 */
#ifndef LR_ARGS_H
#define LR_ARGS_H

#include <stdbool.h>
#include <stdint.h>

#include <stdio.h>

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef lr_status (*args_handler)(void *ctx, const char *flag, const char *value);

typedef struct {
    const char *name;    /* "--batch" */
    const char *metavar; /* "N"; NULL for a switch */
    args_handler handle;
    const char *help;    /* one line */
} args_flag;

/* Parses argv against the table (terminated by a {NULL} entry). Accepts "--flag value" and
 * "--flag=value". LR_ERR_USAGE names an unknown flag, a missing value, or a stray argument. */
lr_status args_parse(const args_flag *table, int argc, char **argv, void *ctx);

/* Prints the flag table (name, metavar, help) for --help. */
void args_print_help(FILE *f, const args_flag *table);

/* Runs this program again with argv and the environment as it is now, from its own path (not
 * /proc/self/exe, so that it keeps its name in ps and top): for settings a library reads only as
 * it loads. Returns only when that failed. */
void args_exec_self(char **argv);

lr_status args_int(const char *flag, const char *s, int64_t lo, int64_t hi, int64_t *out);
lr_status args_double(const char *flag, const char *s, double lo, double hi, double *out);
/* Sizes: a number with an optional unit B, KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB,
 * TiB (powers of 1024), case-insensitive, e.g. "8GiB", "8000MB", "1.5e9". */
lr_status args_size(const char *flag, const char *s, int64_t *out);
/* "HxW" with both in [1, hi]. */
lr_status args_hw(const char *flag, const char *s, int hi, int *h, int *w);

#ifdef __cplusplus
}
#endif
#endif
