/* device.h - the devices lrcnn knows by name, and the time model that turns a plan's kernels into
 * a predicted step time (DESIGN.md, "Cost model").
 *
 * One table serves both questions asked of a card: how much memory it has (--fit) and how long a
 * step takes on it (--device). Each kernel the schedule runs (a RUN step: one op over a row range,
 * forward, backward, a statistics pass or an optimizer update) costs
 *
 *   t = max(F / (peak * efficiency * u(E)), B / bandwidth) + launches * launch
 *   u(E) = E / (E + half_elems)
 *
 * F its FLOPs (cost.h), B the bytes it reads and writes, E its output elements (rows x width x
 * channels x batch; parameters for updates), launches the kernels the executor starts for it
 * (device_kernel_of). u is the share of the card a kernel of E outputs keeps busy: thin stripes
 * and small maps run below peak, which FLOPs alone do not show. A step's time is the sum over its
 * kernels (one stream: kernels do not overlap each other), in whole nanoseconds so that sums compose exactly.
 *
 * The constants of the GPUs are datasheet priors (fp32 without tensor cores, memory bandwidth,
 * ~5 us per launch, half_elems ~ 8192 outputs per SM) until bench/gpu.sh refits them from measured
 * step times (bench/time_fit.c); the CPU entry describes the CPU reference backend as fitted on
 * the build machine (bench/cpu_time.sh).
 *
 * Copies between host and device (--offload) run on a stream of their own: device_overlap_of walks
 * a schedule on the two streams and says how much copy time the kernels leave exposed.
 *
 * Deliberately not here: FLOP counts (cost.c), where in a step the kernels run (closed.c).
 */
#ifndef LR_DEVICE_H
#define LR_DEVICE_H

#include <stdbool.h>
#include <stdint.h>

#include "cost.h"
#include "sched.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    const char *name;   /* as --fit and --device take it, e.g. "h100-80gb" */
    int64_t bytes;      /* device memory; 0 for the CPU reference, which --fit does not take */
    const char *label;  /* e.g. "NVIDIA H100 80GB HBM3: 81559 MiB" */
    double peak_flops;  /* FLOP/s at the executors' precision (fp32, no tensor cores) */
    double efficiency;  /* share of peak_flops a large convolution reaches */
    double bandwidth;   /* bytes/s of device memory */
    double launch_s;    /* seconds per kernel launch (and library call overhead) */
    double half_elems;  /* output elements at which a kernel reaches half its efficiency */
    const char *source; /* where the time constants come from */
    double host_link;   /* bytes/s between host and device memory, each way (--offload's copies) */
} device_spec;

/* The table of named devices, terminated by an entry with name NULL. */
extern const device_spec device_table[];

/* The device called `name` (case-insensitive), or NULL. */
const device_spec *device_find(const char *name);

/* What one kernel does, for the time model. */
typedef enum { KERNEL_FWD, KERNEL_BWD, KERNEL_STATS, KERNEL_UPDATE, KERNEL_COUNT } device_kernel_kind;

typedef struct {
    int64_t flops;
    int64_t bytes; /* read and written */
    int64_t elems; /* output elements (parameters for updates) */
    int launches;
} device_kernel;

/* The kernel that runs `kind` over `rows` output rows of node (all of its parameters for
 * KERNEL_UPDATE; rows is then ignored), at this batch and element size. */
device_kernel device_kernel_of(const net_t *net, int node, int batch, int elem_bytes, int rows,
                               device_kernel_kind kind, plan_optim optim);

/* A row reduction adding in_rows rows of its input into out_rows rows of its output (RUN_ROW_SUM,
 * forward), or taking their gradient (backward). */
device_kernel device_kernel_of_sum(const net_t *net, int node, int batch, int elem_bytes,
                                   int in_rows, int out_rows, device_kernel_kind kind);

/* The kernel a schedule step runs; false for steps the model does not time (ALLOC, FREE, COPY,
 * and RUN steps that do no arithmetic, such as finalising BatchNorm statistics). */
bool device_kernel_of_step(const net_t *net, int batch, int elem_bytes, plan_optim optim,
                           const sched_step *st, device_kernel *k);

/* Seconds of one kernel on d. */
double device_kernel_seconds(const device_spec *d, const device_kernel *k);

/* The same in whole nanoseconds (what plans add up). */
int64_t device_kernel_ns(const device_spec *d, const device_kernel *k);

/* Nanoseconds `bytes` of host-device copies take over d's host link (--offload): the link's
 * datasheet rate, so a lower bound. The copies run on a stream of their own, beside the kernels:
 * a step takes at least max(kernels, copies), and at most their sum when nothing overlaps;
 * device_overlap_of says where in between. */
int64_t device_copy_ns(const device_spec *d, int64_t bytes);

/* One training step with its host-device copies on a stream of their own (timeline.c): the
 * compute lane runs the RUN steps in schedule order, each taking device_kernel_ns (device-to-
 * device copies and zeroing allocations take no time but keep their place); the copy lane runs the
 * host-device COPY steps in schedule order, each taking device_copy_ns of its bytes; each step
 * starts when its lane is free and what it waits for of the other lane is done (sim.h,
 * sim_lanes: a copy after the kernel that wrote its source and the kernels that last used its
 * destination's memory, a kernel after the copies it reads and those still using memory it
 * writes), with tensors at the executors' arena offsets (sim_arena_plan_tiers). The step starts
 * with both lanes idle: a copy for the next step is not started under this step's tail. */
typedef struct {
    int64_t kernel_ns;  /* the kernels, summed (the closed form's step_ns) */
    int64_t copy_ns;    /* the host-device copies, summed (each rounded up to a nanosecond) */
    int64_t step_ns;    /* when both lanes are done: max(kernel_ns, copy_ns) <= step_ns <= sum */
    int64_t exposed_ns; /* step_ns - kernel_ns: copy time the kernels do not hide */
} device_overlap;

/* The timeline of schedule s (every step kept) of a plan of `batch` images on d. Errors:
 * LR_ERR_NOMEM. */
lr_status device_overlap_of(const net_t *net, int batch, int elem_bytes, plan_optim optim,
                            const device_spec *d, const sched_t *s, device_overlap *out);

#ifdef __cplusplus
}
#endif
#endif
