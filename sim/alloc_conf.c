/* alloc_conf.c - PYTORCH_ALLOC_CONF (formerly PYTORCH_CUDA_ALLOC_CONF) read into the caching
 * model's settings (sim.h), following c10's AllocatorConfig parser: comma-separated key:value
 * pairs; roundup_power2_divisions takes one value for every size or a bracketed list of
 * SIZE_MB:DIVISIONS entries, SIZE a power of two (the entry's interval; the first entry also
 * covers every interval below it) and ">" for every interval above the last one given.
 *
 * Deliberately not here: the rules themselves (replay.c). Settings the model does not follow
 * are refused rather than ignored, so that a prediction never silently models another setup.
 */
#include "sim.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define MIB ((int64_t)1 << 20)

typedef struct {
    const char *p;    /* the rest of the string */
    const char *flag; /* for messages */
} conf_reader;

/* A non-negative integer; LR_ERR_USAGE naming what it is for. */
static lr_status read_int(conf_reader *r, const char *what, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(r->p, &end, 10);
    if (end == r->p || errno || v < 0)
        return lr_fail(LR_ERR_USAGE, "%s: %s: expected a non-negative integer at '%s'", r->flag,
                       what, r->p);
    r->p = end;
    *out = v;
    return LR_OK;
}

static lr_status expect(conf_reader *r, char c, const char *what)
{
    if (*r->p != c)
        return lr_fail(LR_ERR_USAGE, "%s: %s: expected '%c' at '%s'", r->flag, what, c, r->p);
    r->p++;
    return LR_OK;
}

static bool power_of_two(int64_t v)
{
    return v > 0 && (v & (v - 1)) == 0;
}

static int log2_of(int64_t v)
{
    return 63 - __builtin_clzll((unsigned long long)v);
}

/* max_split_size_mb, max_non_split_rounding_mb: at least kLargeBuffer (20 MiB), as c10 checks. */
static lr_status read_mb(conf_reader *r, const char *key, int64_t *bytes)
{
    int64_t mb;
    LR_TRY(read_int(r, key, &mb));
    if (mb < 20 || mb > INT64_MAX / MIB)
        return lr_fail(LR_ERR_USAGE, "%s: %s must be at least 20 (MiB), got %lld", r->flag, key,
                       (long long)mb);
    *bytes = mb * MIB;
    return LR_OK;
}

static lr_status read_divisions_value(conf_reader *r, int64_t *v)
{
    LR_TRY(read_int(r, "roundup_power2_divisions", v));
    if (*v != 0 && !power_of_two(*v))
        return lr_fail(LR_ERR_USAGE, "%s: roundup_power2_divisions: the divisions must be a power "
                                     "of two or 0, got %lld", r->flag, (long long)*v);
    return LR_OK;
}

/* [SIZE_MB:DIV, ..., >:DIV] */
static lr_status read_divisions_list(conf_reader *r, sim_caching *out)
{
    int last = 0;
    bool first = true;
    while (*r->p != ']') {
        bool above = *r->p == '>';
        int64_t boundary = 0, v;
        if (above)
            r->p++;
        else
            LR_TRY(read_int(r, "roundup_power2_divisions", &boundary));
        if (!above && !power_of_two(boundary))
            return lr_fail(LR_ERR_USAGE, "%s: roundup_power2_divisions: the intervals must be "
                                         "powers of two (MiB), got %lld", r->flag, (long long)boundary);
        LR_TRY(expect(r, ':', "roundup_power2_divisions"));
        LR_TRY(read_divisions_value(r, &v));
        if (above) {
            for (int i = last + 1; i < SIM_POW2_INTERVALS; i++)
                out->divisions[i] = v;
        } else {
            int index = log2_of(boundary) < SIM_POW2_INTERVALS ? log2_of(boundary)
                                                               : SIM_POW2_INTERVALS - 1;
            for (int i = 0; first && i < index; i++)
                out->divisions[i] = v;
            out->divisions[index] = v;
            last = index;
            first = false;
        }
        if (*r->p != ']')
            LR_TRY(expect(r, ',', "roundup_power2_divisions"));
    }
    r->p++;
    return LR_OK;
}

static lr_status read_divisions(conf_reader *r, sim_caching *out)
{
    if (*r->p == '[') {
        r->p++;
        return read_divisions_list(r, out);
    }
    int64_t v;
    LR_TRY(read_divisions_value(r, &v));
    for (int i = 0; i < SIM_POW2_INTERVALS; i++)
        out->divisions[i] = v;
    return LR_OK;
}

/* A value the model only accepts as the default. */
static lr_status read_default_only(conf_reader *r, const char *key, const char *ok1,
                                   const char *ok2, const char *why)
{
    size_t n = strcspn(r->p, ",");
    if ((strlen(ok1) == n && strncmp(r->p, ok1, n) == 0) ||
        (strlen(ok2) == n && strncmp(r->p, ok2, n) == 0)) {
        r->p += n;
        return LR_OK;
    }
    return lr_fail(LR_ERR_USAGE, "%s: %s:%.*s is not modelled (%s)", r->flag, key, (int)n, r->p,
                   why);
}

static lr_status read_pair(conf_reader *r, sim_caching *out)
{
    size_t n = strcspn(r->p, ":,");
    char key[64];
    if (n == 0 || n >= sizeof key || r->p[n] != ':')
        return lr_fail(LR_ERR_USAGE, "%s: expected key:value at '%s'", r->flag, r->p);
    memcpy(key, r->p, n);
    key[n] = '\0';
    r->p += n + 1;
    if (strcmp(key, "max_split_size_mb") == 0)
        return read_mb(r, key, &out->max_split_size);
    if (strcmp(key, "max_non_split_rounding_mb") == 0)
        return read_mb(r, key, &out->max_non_split_rounding);
    if (strcmp(key, "roundup_power2_divisions") == 0)
        return read_divisions(r, out);
    if (strcmp(key, "expandable_segments") == 0)
        return read_default_only(r, key, "False", "false", "segments that grow in place");
    if (strcmp(key, "backend") == 0)
        return read_default_only(r, key, "native", "native", "another allocator");
    if (strcmp(key, "garbage_collection_threshold") == 0)
        return lr_fail(LR_ERR_USAGE, "%s: garbage_collection_threshold is not modelled (it frees "
                                     "cached segments under a memory fraction)", r->flag);
    return lr_fail(LR_ERR_USAGE, "%s: unknown key '%s' (max_split_size_mb, "
                                 "max_non_split_rounding_mb, roundup_power2_divisions, "
                                 "expandable_segments, backend)", r->flag, key);
}

lr_status sim_caching_parse(const char *conf, const char *flag, sim_caching *out)
{
    memset(out, 0, sizeof *out);
    conf_reader r = {.p = conf, .flag = flag};
    while (*r.p) {
        lr_status st = read_pair(&r, out);
        if (st != LR_OK) {
            memset(out, 0, sizeof *out);
            return st;
        }
        if (*r.p && expect(&r, ',', "settings") != LR_OK) {
            memset(out, 0, sizeof *out);
            return LR_ERR_USAGE;
        }
    }
    return LR_OK;
}
