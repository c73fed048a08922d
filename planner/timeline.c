/* timeline.c - one training step on two streams, kernels beside host-device copies (device.h,
 * device_overlap_of).
 *
 * Deliberately not here: which step waits for which (sim/lanes.c), the time of one kernel or one
 * copy (device.c).
 */
#include <stdlib.h>

#include "device.h"
#include "sim.h"

typedef struct {
    const net_t *net;
    int batch, elem_bytes;
    plan_optim optim;
    const device_spec *d;
} timing;

/* The time step p occupies its lane. */
static int64_t step_ns(const timing *tm, const sched_t *s, const sched_step *p, sim_lane lane)
{
    if (lane == SIM_LANE_COPY)
        return device_copy_ns(tm->d, sched_copy_bytes(s, p));
    device_kernel k;
    if (!device_kernel_of_step(tm->net, tm->batch, tm->elem_bytes, tm->optim, p, &k))
        return 0;
    return device_kernel_ns(tm->d, &k);
}

static int64_t max64(int64_t a, int64_t b)
{
    return a > b ? a : b;
}

static void walk(const timing *tm, const sched_t *s, sim_lanes *k, device_overlap *out)
{
    int64_t end[3] = {0, 0, 0}; /* by sim_lane: when the lane is free */
    for (int i = s->step_begin; i < s->step_end; i++) {
        const sched_step *p = sched_step_at(s, i);
        sim_lane lane = sim_step_lane(s, p);
        if (lane == SIM_LANE_NONE)
            continue;
        int64_t ns = step_ns(tm, s, p, lane);
        int64_t start = max64(end[lane], sim_lanes_wait(k, s, p));
        end[lane] = start + ns;
        sim_lanes_done(k, s, p, end[lane]);
        if (lane == SIM_LANE_COPY)
            out->copy_ns += ns;
        else
            out->kernel_ns += ns;
    }
    out->step_ns = max64(end[SIM_LANE_COMPUTE], end[SIM_LANE_COPY]);
    out->exposed_ns = out->step_ns - out->kernel_ns;
}

static bool copies_any(const sched_t *s)
{
    for (int i = s->step_begin; i < s->step_end; i++)
        if (sim_step_lane(s, sched_step_at(s, i)) == SIM_LANE_COPY)
            return true;
    return false;
}

lr_status device_overlap_of(const net_t *net, int batch, int elem_bytes, plan_optim optim,
                            const device_spec *d, const sched_t *s, device_overlap *out)
{
    *out = (device_overlap){0, 0, 0, 0};
    timing tm = {net, batch, elem_bytes, optim, d};
    if (!copies_any(s)) { /* one lane: nothing waits, no arena to plan */
        for (int i = s->step_begin; i < s->step_end; i++) {
            const sched_step *p = sched_step_at(s, i);
            sim_lane lane = sim_step_lane(s, p);
            if (lane != SIM_LANE_NONE)
                out->kernel_ns += step_ns(&tm, s, p, lane);
        }
        out->step_ns = out->kernel_ns;
        return LR_OK;
    }
    int64_t *offsets = malloc(sizeof(int64_t) * ((size_t)s->n_tensors + 1));
    if (!offsets)
        return lr_fail(LR_ERR_NOMEM, "out of memory");
    int64_t arenas[TIER_COUNT];
    sim_arena_plan_tiers(s, SIM_ARENA_ALIGN, offsets, arenas);
    sim_lanes *k;
    lr_status st = sim_lanes_new(s, offsets, &k);
    free(offsets);
    if (st != LR_OK)
        return st;
    walk(&tm, s, k, out);
    sim_lanes_free(k);
    return LR_OK;
}
