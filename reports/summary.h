/* summary.h - the text and JSON outputs of lrcnn-sim: the per-layer table, the strategy table,
 * sweeps, and the JSON object documented in the README.
 *
 * Deliberately not here: plots and graphs (plot.c, graph.c).
 */
#ifndef LR_SUMMARY_H
#define LR_SUMMARY_H

#include <json-c/json.h>
#include <stdio.h>

#include "analysis.h"

#ifdef __cplusplus
extern "C" {
#endif

/* "812.0 MiB", "16.43 GiB", "512 B"; buf of at least 32 bytes. */
const char *summary_bytes(int64_t bytes, char *buf, size_t cap);

/* Where a peak happens, e.g. "BWD relu4_3 p3" or "FWD fc6". */
const char *summary_where(const net_t *net, sched_pass pass, int node, int part, char *buf,
                          size_t cap);

/* Per-layer table: name, op, input -> output shape, params, receptive field, jump, stripe
 * overlap, activation bytes at this batch. */
void summary_print_layers(FILE *f, const net_t *net, const plan_config *cfg);

/* One line per strategy: peak, static, activations at the peak, ratios to column, N, where. */
void summary_print_strategies(FILE *f, const analysis_t *a);

/* The whole JSON object: {"net": {...}, "config": {...}, "strategies": [...]}; strategies is
 * omitted when a is NULL. The caller releases it with json_object_put(). */
json_object *summary_json(const net_t *net, const plan_config *cfg, const analysis_t *a);

/* Entry JSON ("name", "peak_bytes", "sim_peak_bytes", ...), shared with sweeps and auto. */
json_object *summary_strategy_json(const analysis_t *a, const analysis_entry *e);

/* "6" for one stage, "6,8,8,4,1" for several, "-" for none. */
const char *summary_rows(const plan_spec *spec, char *buf, size_t cap);

#ifdef __cplusplus
}
#endif
#endif
