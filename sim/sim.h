/* sim.h - replaying a schedule under an allocator model: peak memory, where it happens, live
 * bytes by class over time, FLOPs; and the timeline (CSV) and trace (Chrome/Perfetto JSON)
 * writers.
 *
 * Allocator models:
 *   exact   - the sum of live tensor bytes.
 *   cuda    - every allocation rounded up to cudaMalloc's 2 MiB granularity.
 *   caching - a PyTorch-style caching allocator (CUDACachingAllocator): requests rounded up to
 *             512 bytes; requests <= 1 MiB come from a small pool of 2 MiB segments, larger ones
 *             from a large pool (segments of 20 MiB for requests < 10 MiB, otherwise the request
 *             rounded up to 2 MiB); best-fit reuse of cached free blocks, block splitting
 *             (large-pool remainders only when > 1 MiB), coalescing of free neighbours in a
 *             segment. `allocated` is the sum of allocated blocks, `reserved` the sum of segments.
 *
 * Deliberately not here: building schedules (planner/), plotting (reports/).
 */
#ifndef LR_SIM_H
#define LR_SIM_H

#include <stdint.h>

#include "net.h"
#include "sched.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { ALLOC_EXACT, ALLOC_CUDA, ALLOC_CACHING, ALLOC_COUNT } sim_allocator;

const char *sim_allocator_name(sim_allocator a);
/* Returns ALLOC_COUNT for an unknown name. */
sim_allocator sim_allocator_from_name(const char *name);

typedef struct {
    int64_t peak_bytes;          /* exact: live bytes; cuda: rounded; caching: allocated */
    int64_t peak_reserved_bytes; /* caching: reserved (segments); otherwise = peak_bytes */
    int peak_step;               /* index of the step at which peak_bytes is first reached */
    int64_t class_at_peak[TC_COUNT]; /* exact live bytes by class at peak_step */
    int64_t flops;               /* FLOPs of RUN steps in [step_begin, step_end) */
    int64_t flops_by_pass[PASS_COUNT];
    int64_t end_bytes;           /* live bytes after the last step (0 for a well-formed schedule) */
} sim_result;

/* Replays every step. LR_ERR_RUNTIME if the schedule frees a tensor that is not live. */
lr_status sim_replay(const sched_t *s, sim_allocator a, sim_result *out);

/* One point per step, after the step. by_class holds exact bytes; live and reserved follow the
 * allocator model. */
typedef struct {
    int64_t live;
    int64_t reserved;
    int64_t by_class[TC_COUNT];
    int64_t flops_cum;
} sim_point;

/* Allocates *points (n = s->n_steps); the caller frees it with free(). */
lr_status sim_timeline(const sched_t *s, sim_allocator a, sim_point **points);

/* CSV, one line per step: step,op,pass,layer,part,stage,rows,live_bytes,reserved_bytes,
 * <one column per class>_bytes,flops_cum. Written all or nothing (outfile.h). */
lr_status sim_write_timeline_csv(const sched_t *s, const net_t *net, sim_allocator a,
                                 const char *path);

/* Chrome trace-event JSON (opens in ui.perfetto.dev): one slice per RUN/COPY step on a track
 * per pass, memory counters (total and per class), time modelled at 1 us per MFLOP of work.
 * Written all or nothing. */
lr_status sim_write_trace(const sched_t *s, const net_t *net, sim_allocator a, const char *path);

#ifdef __cplusplus
}
#endif
#endif
