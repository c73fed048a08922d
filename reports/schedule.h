/* schedule.h - a plan's schedule as versioned JSON (`lrcnn-sim --emit-schedule FILE.json`), for
 * executors outside this program (python/lrcnn_torch runs it with PyTorch tensors).
 *
 * The file is the schedule IR of sim/sched.h written field by field, plus what an executor needs
 * to interpret it: the network's nodes with their op parameters and shapes, the configuration
 * (batch, dtype, optimizer, BatchNorm mode), the plan (strategy, stages, partitions) and the
 * prediction (closed-form and replayed peak). Tensors, steps and runs are rows of values under a
 * field list (`tensor_fields`, ...), so a reader looks fields up by name. The schema is
 * docs/schedule-format.md; SCHEDULE_FORMAT_VERSION changes whenever a field changes meaning or
 * goes away (adding a field keeps the version).
 *
 * Deliberately not here: planning (the file is written from the schedule the planner emitted,
 * nothing is recomputed), reading the file back (executors do).
 */
#ifndef LR_SCHEDULE_H
#define LR_SCHEDULE_H

#include <stdio.h>

#include "analysis.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SCHEDULE_FORMAT_VERSION 3

/* Writes the schedule `s` emitted from `plan`, with the prediction of entry `e` (closed form,
 * exact replay, approximate flag), to `path` all or nothing ("-" is stdout).
 * LR_ERR_RUNTIME when the schedule holds a value the format cannot name (an enum value or RUN
 * flag bit without a name here: the format must be extended first); LR_ERR_IO when the file
 * cannot be written. */
lr_status schedule_write_json(const plan_t *plan, const sched_t *s, const analysis_entry *e,
                              const char *path);

/* The same into an open stream (tests). */
lr_status schedule_print_json(FILE *f, const plan_t *plan, const sched_t *s,
                              const analysis_entry *e);

#ifdef __cplusplus
}
#endif
#endif
