/* clock.h - the one clock lrcnn times things with: monotonic wall time in milliseconds (step
 * times, kernel profiles, --fit's trace and progress line, the planning benchmark).
 */
#ifndef LR_CLOCK_H
#define LR_CLOCK_H

#include <time.h>

/* Milliseconds on CLOCK_MONOTONIC: only differences mean anything. */
static inline double lr_now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

#endif
