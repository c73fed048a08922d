/* summary.h - the text and JSON outputs of lrcnn-sim: the per-layer table, the strategy table,
 * sweeps, and the JSON object documented in the README.
 *
 * Deliberately not here: plots and graphs (plot_*.c, graph.c).
 */
#ifndef LR_SUMMARY_H
#define LR_SUMMARY_H

#include <json-c/json.h>
#include <stdio.h>

#include "analysis.h"
#include "auto.h"
#include "fit.h"

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

/* One line per strategy: peak, static, activations at the peak, ratios to column, where the
 * compute above column goes (recomputed forwards and halos; exact BatchNorm's statistics passes,
 * with the number of BatchNorm layers that run them), N, the region's last layer (* when the
 * planner chose it), where the peak happens. summary_print_row prints one such line. */
void summary_print_strategies(FILE *f, const analysis_t *a);
void summary_print_header(FILE *f, const analysis_t *a);
/* The two "where compute goes" cells: recompute ("+0.25x" of column, "-" for none) and exact
 * BatchNorm's statistics passes ("+8.74x (24)": FLOPs and BatchNorm layers, "-" for none). */
void summary_extra_text(const analysis_t *a, const plan_cost *c, char *rec, size_t rec_cap,
                        char *bn, size_t bn_cap);
/* The row region's last layer (the last stage's), "*" when the planner chose it; "-" without
 * stages. */
const char *summary_region(const net_t *net, const plan_choice *ch, char *buf, size_t cap);
void summary_print_row(FILE *f, const analysis_t *a, const char *name, const analysis_entry *e);

/* The whole JSON object: {"net": {...}, "config": {...}, "strategies": [...]}; strategies is
 * omitted when a is NULL. The caller releases it with json_object_put(). */
json_object *summary_json(const net_t *net, const plan_config *cfg, const analysis_t *a);

/* Entry JSON ("name", "peak_bytes", "sim_peak_bytes", ...), shared with sweeps and auto. */
json_object *summary_strategy_json(const analysis_t *a, const analysis_entry *e);

/* --strategy auto, after the strategy table: its line in the same columns, the plan, the
 * constraint, the runners-up (peak and compute), and when nothing meets the budget a "does not
 * fit" line with the shortfall. e is the auto plan emitted and replayed (analysis_entry). */
void summary_print_auto(FILE *f, const analysis_t *a, const analysis_entry *e,
                        const auto_result *r);

/* The "strategies" entry of auto: summary_strategy_json() named "auto", plus
 * "plan": {"kind", "bn", "offload", "stages": [{"end", "rows"}]}, "fits", "objective" ("peak" or
 * "compute"), "max_overhead" and "budget_bytes" (null when not applied), "over_bytes" (budget
 * shortfall, 0 when it fits) and "alternatives": [{"plan", "peak_bytes", "flops_ratio",
 * "fits"}]. */
json_object *summary_auto_json(const analysis_t *a, const analysis_entry *e, const auto_result *r);

/* What --fit answered, one entry per strategy. */
typedef struct {
    const char *strategy; /* "column", ..., "auto" */
    fit_result r;
    bool offload_chosen;  /* --offload auto: the text names the set chosen at each answer */
} summary_fit_row;

/* --fit: the budget (card or size, less the reserve), then per strategy the largest batch and
 * the largest square input at batch 1. gpu is NULL for --fit SIZE. */
void summary_print_fit(FILE *f, const device_spec *gpu, int64_t device_bytes, int64_t reserve_bytes,
                       const summary_fit_row *rows, int n);

/* [{"strategy", "max_batch", "max_square_input", "budget_bytes", "batch_at_limit",
 *   "input_at_limit", "min_square_input", "input_step", "host_bytes_at_max_batch",
 *   "host_bytes_at_max_input", "offload_at_max_batch", "offload_at_max_input"}, ...] */
json_object *summary_fit_json(const summary_fit_row *rows, int n);

/* {"gpu": name or null, "device_bytes", "reserve_bytes", "budget_bytes"} */
json_object *summary_fit_device_json(const device_spec *gpu, int64_t device_bytes,
                                     int64_t reserve_bytes);

/* "6" for one stage, "6,8,8,4,1" for several, "-" for none. */
const char *summary_rows(const net_t *net, const plan_config *cfg, const plan_spec *spec, char *buf,
                         size_t cap);

#ifdef __cplusplus
}
#endif
#endif
