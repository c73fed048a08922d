/* args.c - strict command-line parsing (see args.h). */
#include "args.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static const args_flag *find(const args_flag *table, const char *name, size_t len)
{
    for (; table->name; table++)
        if (strlen(table->name) == len && strncmp(table->name, name, len) == 0)
            return table;
    return NULL;
}

lr_status args_parse(const args_flag *table, int argc, char **argv, void *ctx)
{
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strncmp(arg, "--", 2) != 0)
            return lr_fail(LR_ERR_USAGE, "unexpected argument '%s' (flags start with --; see --help)", arg);
        const char *eq = strchr(arg, '=');
        size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
        const args_flag *f = find(table, arg, len);
        if (!f)
            return lr_fail(LR_ERR_USAGE, "%.*s: unknown flag (see --help)", (int)len, arg);
        const char *value = NULL;
        if (f->metavar) {
            if (eq)
                value = eq + 1;
            else if (i + 1 < argc)
                value = argv[++i];
            else
                return lr_fail(LR_ERR_USAGE, "%s: expects a value (%s)", f->name, f->metavar);
        } else if (eq) {
            return lr_fail(LR_ERR_USAGE, "%s: takes no value", f->name);
        }
        LR_TRY(f->handle(ctx, f->name, value));
    }
    return LR_OK;
}

void args_print_help(FILE *f, const args_flag *table)
{
    for (; table->name; table++) {
        char left[64];
        snprintf(left, sizeof left, "%s%s%s", table->name, table->metavar ? " " : "",
                 table->metavar ? table->metavar : "");
        fprintf(f, "  %-28s %s\n", left, table->help);
    }
}

lr_status args_int(const char *flag, const char *s, int64_t lo, int64_t hi, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end != '\0' || errno == ERANGE || v < lo || v > hi)
        return lr_fail(LR_ERR_USAGE, "%s: expected an integer in [%lld, %lld], got '%s'", flag,
                       (long long)lo, (long long)hi, s);
    *out = v;
    return LR_OK;
}

lr_status args_double(const char *flag, const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || errno == ERANGE || !isfinite(v) || v < lo || v > hi)
        return lr_fail(LR_ERR_USAGE, "%s: expected a number in [%g, %g], got '%s'", flag, lo, hi, s);
    *out = v;
    return LR_OK;
}

static const struct {
    const char *unit;
    double scale;
} units[] = {
    {"", 1},          {"b", 1},       {"kb", 1e3},   {"mb", 1e6},
    {"gb", 1e9},      {"tb", 1e12},   {"k", 1024.0}, {"kib", 1024.0},
    {"mib", 1048576.0}, {"gib", 1073741824.0}, {"tib", 1099511627776.0},
    {"m", 1048576.0}, {"g", 1073741824.0},
};

lr_status args_size(const char *flag, const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno == ERANGE || !isfinite(v) || v < 0)
        return lr_fail(LR_ERR_USAGE, "%s: expected a size like 8GiB, 8000MB or 1073741824, got '%s'", flag, s);
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcasecmp(end, units[i].unit) != 0)
            continue;
        double bytes = v * units[i].scale;
        if (bytes > 9.0e18)
            return lr_fail(LR_ERR_USAGE, "%s: size '%s' is too large", flag, s);
        *out = (int64_t)llround(bytes);
        return LR_OK;
    }
    return lr_fail(LR_ERR_USAGE, "%s: unknown unit in '%s' (use B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)", flag, s);
}

lr_status args_hw(const char *flag, const char *s, int hi, int *h, int *w)
{
    const char *x = strpbrk(s, "xX");
    if (!x)
        return lr_fail(LR_ERR_USAGE, "%s: expected HxW (e.g. 224x224), got '%s'", flag, s);
    char head[32];
    size_t n = (size_t)(x - s);
    if (n == 0 || n >= sizeof head)
        return lr_fail(LR_ERR_USAGE, "%s: expected HxW (e.g. 224x224), got '%s'", flag, s);
    memcpy(head, s, n);
    head[n] = '\0';
    int64_t a, b;
    LR_TRY(args_int(flag, head, 1, hi, &a));
    LR_TRY(args_int(flag, x + 1, 1, hi, &b));
    *h = (int)a, *w = (int)b;
    return LR_OK;
}

void args_exec_self(char **argv)
{
    char self[4096];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len > 0 && len < (ssize_t)sizeof self - 1) {
        self[len] = '\0';
        execv(self, argv);
    }
    execv("/proc/self/exe", argv);
}
