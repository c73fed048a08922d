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
 *             Settings of PYTORCH_ALLOC_CONF (PYTORCH_CUDA_ALLOC_CONF) change the rounding and
 *             splitting rules (sim_caching); replay.c names the PyTorch function each rule follows.
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
    /* host memory (TIER_HOST tensors: not in the figures above, which are the device's) */
    int64_t host_peak_bytes;
    int64_t copy_bytes;          /* bytes COPY steps in [step_begin, step_end) move between
                                    host and device tensors (either way) */
    /* caching model under a device memory limit (sim_caching.limit_bytes), else 0 and -1: */
    int64_t alloc_retries;       /* times the allocator flushed its cache to fit a new segment */
    int oom_step;                /* the ALLOC step that fails even then (PyTorch's
                                    OutOfMemoryError; the replay stops there); -1: none */
} sim_result;

/* Replays every step. LR_ERR_RUNTIME if the schedule frees a tensor that is not live. */
lr_status sim_replay(const sched_t *s, sim_allocator a, sim_result *out);

/* The caching model's settings that PyTorch reads from PYTORCH_ALLOC_CONF; all zero is PyTorch's
 * default configuration. */
#define SIM_POW2_INTERVALS 16 /* size intervals [1 MiB, 2 MiB), ..., [32 GiB, ...) */
typedef struct {
    int64_t max_split_size;         /* max_split_size_mb in bytes; 0: none (never oversize) */
    int64_t max_non_split_rounding; /* max_non_split_rounding_mb in bytes; 0: 20 MiB */
    int64_t divisions[SIM_POW2_INTERVALS]; /* roundup_power2_divisions per interval; 0, 1: off */
    int64_t limit_bytes; /* device memory the allocator may reserve (cudaMalloc fails past it);
                            0: no limit. Not a PYTORCH_ALLOC_CONF setting: the card's memory
                            less what the CUDA context and others hold. */
} sim_caching;

/* What a replay under a device memory limit ran into. */
typedef struct {
    int64_t alloc_retries; /* cache flushes (num_alloc_retries) */
    int oom_step;          /* the step that fails, the state frozen from there on; -1: none */
} sim_limit_outcome;

/* Parses a PYTORCH_ALLOC_CONF string ("max_split_size_mb:128,roundup_power2_divisions:4", or
 * "roundup_power2_divisions:[256:1,512:2,>:4]") into *out (zeroed first). Settings the model
 * does not follow (expandable_segments:True, garbage_collection_threshold, backend:
 * cudaMallocAsync) and unknown keys are LR_ERR_USAGE, the message naming `flag`. */
lr_status sim_caching_parse(const char *conf, const char *flag, sim_caching *out);

/* sim_replay and sim_timeline with the caching model's settings (NULL: defaults; ignored by the
 * other models). */
lr_status sim_replay_conf(const sched_t *s, sim_allocator a, const sim_caching *conf,
                          sim_result *out);

/* The same replay of a schedule while it is built and streamed (sched_stream): sim_stream_new
 * for the schedule, sim_stream_take as its consumer, sim_stream_result once sched_finish
 * returned; the result equals sim_replay of the whole schedule. */
typedef struct sim_stream sim_stream;
lr_status sim_stream_new(const sched_t *s, sim_allocator a, sim_stream **out);
lr_status sim_stream_take(void *stream, const sched_t *s);
lr_status sim_stream_result(sim_stream *k, sim_result *out);
void sim_stream_free(sim_stream *k); /* NULL: no-op */

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
lr_status sim_timeline_conf(const sched_t *s, sim_allocator a, const sim_caching *conf,
                            sim_point **points, sim_limit_outcome *outcome);

/* CSV, one line per step: step,op,pass,layer,part,stage,rows,live_bytes,reserved_bytes,
 * <one column per class>_bytes,flops_cum. Written all or nothing (outfile.h). */
lr_status sim_write_timeline_csv(const sched_t *s, const net_t *net, sim_allocator a,
                                 const char *path);

/* Chrome trace-event JSON (opens in ui.perfetto.dev): one slice per RUN/COPY step on a track
 * per pass, memory counters (total and per class), time modelled at 1 us per MFLOP of work.
 * Written all or nothing. */
lr_status sim_write_trace(const sched_t *s, const net_t *net, sim_allocator a, const char *path);

/* The two writers with the caching model's settings (NULL: defaults). */
lr_status sim_write_timeline_csv_conf(const sched_t *s, const net_t *net, sim_allocator a,
                                      const sim_caching *conf, const char *path);
lr_status sim_write_trace_conf(const sched_t *s, const net_t *net, sim_allocator a,
                               const sim_caching *conf, const char *path);

/* ------------------------------------------------------------------ arena offsets (arena.c) */

/* Every executor aligns its tensors to this many bytes. */
#define SIM_ARENA_ALIGN 256

/* Offsets of the tensors of one tier in one arena of that tier (best fit with coalescing,
 * `align`-byte aligned); returns the arena's size. offsets has s->n_tensors entries, -1 for
 * tensors never allocated and for the other tier's. Needs every step kept (not streamed). The
 * executors allocate exactly this (exec.h), and the copy overlap model (sim_lanes) reads it. */
int64_t sim_arena_plan(const sched_t *s, sched_tier tier, int64_t align, int64_t *offsets);

/* Both tiers at once: each tensor's offset in the arena of its own tier (device tensors in the
 * device arena, host tensors in the host arena); bytes[tier] receives each arena's size. */
void sim_arena_plan_tiers(const sched_t *s, int64_t align, int64_t *offsets,
                          int64_t bytes[TIER_COUNT]);

/* ------------------------------------------------------------------ two streams (lanes.c) */

/* A device that copies between host and device on a stream of its own runs a schedule on two
 * lanes: the compute lane (RUN steps, device-to-device COPY steps, and the ALLOC steps whose
 * tensor the executors zero: sched_zeroed_on_alloc) and the copy lane (non-accumulating COPY
 * steps between a host and a device tensor). Each lane runs its steps in schedule order; what one
 * lane must wait for of the other is what events can enforce:
 *   a copy waits for the kernel that last wrote its source, and for every kernel that last used
 *     (read or wrote) memory overlapping its destination, in the destination's arena;
 *   a kernel waits for the copies that wrote a tensor it reads, and for every copy that last
 *     read or wrote memory overlapping a tensor it writes (memory freed after a copy-out is not
 *     overwritten before the copy has read it).
 * A copy-in whose destination memory is free thus runs early, beside the kernels before it.
 * ALLOC and FREE steps otherwise, and everything on the host side other than copies, take no lane.
 *
 * sim_lanes tracks, per arena byte range, the last mark of each lane that touched it (an interval
 * tree over the arena offsets: O(log tensors) per step). Marks are numbers the caller gives each
 * step when done, non-decreasing along each lane (step end times for a timeline, step indices + 1
 * for an executor's events); 0 means none. */
typedef enum { SIM_LANE_NONE, SIM_LANE_COMPUTE, SIM_LANE_COPY } sim_lane;

sim_lane sim_step_lane(const sched_t *s, const sched_step *p);

typedef struct sim_lanes sim_lanes;

/* For schedule s (its tensors; steps may be streamed) whose tensors sit at `offsets`
 * (sim_arena_plan_tiers). LR_ERR_NOMEM when out of memory. */
lr_status sim_lanes_new(const sched_t *s, const int64_t *offsets, sim_lanes **out);
/* The largest mark of the other lane that step p must wait for (0: none). */
int64_t sim_lanes_wait(const sim_lanes *k, const sched_t *s, const sched_step *p);
/* Records step p (of lane sim_step_lane) as done with `mark`. */
void sim_lanes_done(sim_lanes *k, const sched_t *s, const sched_step *p, int64_t mark);
/* Forgets every mark (a new training step after both lanes joined). */
void sim_lanes_clear(sim_lanes *k);
void sim_lanes_free(sim_lanes *k); /* NULL: no-op */

#ifdef __cplusplus
}
#endif
#endif
