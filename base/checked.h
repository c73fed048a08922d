/* checked.h - 64-bit size arithmetic that reports overflow instead of wrapping.
 * Every byte and FLOP count in lrcnn goes through these.
 */
#ifndef LR_CHECKED_H
#define LR_CHECKED_H

#include <stdbool.h>
#include <stdint.h>

/* *out = a * b; returns false (and leaves *out = INT64_MAX) on overflow or negative operands. */
static inline bool lr_mul(int64_t a, int64_t b, int64_t *out)
{
    if (a < 0 || b < 0 || __builtin_mul_overflow(a, b, out)) {
        *out = INT64_MAX;
        return false;
    }
    return true;
}

static inline bool lr_add(int64_t a, int64_t b, int64_t *out)
{
    if (__builtin_add_overflow(a, b, out)) {
        *out = INT64_MAX;
        return false;
    }
    return true;
}

/* a + b, or INT64_MAX when it does not fit (for sums that are compared, never printed as
 * exact: a saturated sum is treated as "too large to plan"). Operands are >= 0. */
static inline int64_t lr_sat_add(int64_t a, int64_t b)
{
    int64_t r;
    return __builtin_add_overflow(a, b, &r) ? INT64_MAX : r;
}

/* floor(factor * v) for factor >= 0 and v >= 0, or INT64_MAX when that is 2^63 or more (a
 * compute cap past every count: no cap). The cast itself would be undefined there. */
static inline int64_t lr_sat_scale(double factor, int64_t v)
{
    double x = factor * (double)v;
    return x >= 0x1p63 ? INT64_MAX : (int64_t)x;
}

/* Product of up to 6 factors (pass 1 for unused ones). */
static inline bool lr_mul6(int64_t a, int64_t b, int64_t c, int64_t d, int64_t e, int64_t f,
                           int64_t *out)
{
    return lr_mul(a, b, out) && lr_mul(*out, c, out) && lr_mul(*out, d, out) &&
           lr_mul(*out, e, out) && lr_mul(*out, f, out);
}

#endif
