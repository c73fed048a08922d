/* plot.h - the four plots of a report, as gnuplot scripts beside their data:
 *
 *   timeline   live bytes (exact model) over one training step, every selected strategy
 *              overlaid; x is modelled time (FLOPs done, the column step = 1) so recomputation
 *              shows as a longer curve; the start of each backward and each peak are marked
 *   rows       closed-form peak vs N = 2..32 partitions per row strategy, column as reference
 *   batch      closed-form peak vs batch size (powers of two up to max(2 x batch, 256), plus
 *              the configured batch) per strategy, with the GPU memory as a line when given
 *   layers     what is resident at the column peak, per layer, stacked by weights (with their
 *              gradients and optimizer state), activations and gradients
 *   input      closed-form peak device memory vs square input size at batch 1 per strategy,
 *              without and with host memory as a tier (--offload), the GPU memory as a line
 *              and the largest plotted size that fits marked when given (plot_input.c)
 *
 * Each plot writes NAME.gp and its data (NAME.csv, or NAME-<strategy>.csv for the timeline)
 * into a directory; the script reads the data by relative path, so `cd DIR && gnuplot NAME.gp`
 * remakes NAME.png and NAME.svg. Sizes in the data are bytes; the scripts divide by `unit`
 * (KiB, MiB or GiB, picked from the largest value) so axes never show raw bytes.
 *
 * Where each piece lives: the shared gnuplot frame (plot_frame.c), the timeline
 * (plot_timeline.c), the two sweeps, rows and batch (plot_sweeps.c), resident per layer
 * (plot_layers.c), running gnuplot (plot_gnuplot.c).
 * Deliberately not here: the report directory and report.md (report.c); the planner's
 * numbers themselves (every value comes from analysis_t, strategy_choose or a replay).
 */
#ifndef LR_PLOT_H
#define LR_PLOT_H

#include <stdbool.h>
#include <stdint.h>

#include "analysis.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PLOT_NOTE_MAX 4096

/* What a plot function made: its name (NAME.gp, NAME.png, NAME.svg), a heading, and markdown
 * sentences with the numbers a reader wants next to the image. */
typedef struct {
    char name[32];
    char heading[160];
    char note[PLOT_NOTE_MAX];
} plot_made;

/* The plots. Each writes its files into `dir` (an existing directory) and fills *made.
 * Errors: LR_ERR_IO naming the file, or a planner error. */
lr_status plot_timeline(const analysis_t *a, const char *dir, plot_made *made);
lr_status plot_rows(const analysis_t *a, const char *dir, plot_made *made);
/* gpu_mem_bytes > 0 draws the GPU memory and reports the largest batch that fits. */
lr_status plot_batch(const analysis_t *a, int64_t gpu_mem_bytes, const char *dir,
                     plot_made *made);
lr_status plot_layers(const analysis_t *a, const char *dir, plot_made *made);
/* Peak device memory vs square input size at batch 1, without and with --offload (the run's, or
 * input,boundary); gpu_mem_bytes > 0 draws the GPU memory and marks the largest plotted size that
 * fits. */
lr_status plot_input(const analysis_t *a, int64_t gpu_mem_bytes, const char *dir, plot_made *made);

/* Resident bytes by layer at step `at` of a schedule (after it ran), in three parts.
 * by_node has n_nodes + 1 entries: the last is the workspace (no layer); the input batch and
 * labels count as the activations of node 0. Returns the total. */
typedef struct {
    int64_t weights;     /* weight, weight_grad, opt_state */
    int64_t activations; /* activation, boundary, input, workspace */
    int64_t gradients;   /* act_grad */
} plot_resident;

int64_t plot_resident_at(const sched_t *s, int at, int n_nodes, plot_resident *by_node);

/* Finds gnuplot on $PATH (an executable regular file). LR_ERR_RUNTIME with the message
 * "gnuplot not found on PATH: install gnuplot-nox (...) or omit --report" when absent. */
lr_status plot_find_gnuplot(char *path, size_t cap);

/* Runs `gnuplot NAME.gp` with `dir` as working directory. LR_ERR_RUNTIME with gnuplot's last
 * line of error output when it fails. */
lr_status plot_run_gnuplot(const char *gnuplot, const char *dir, const char *name);

#ifdef __cplusplus
}
#endif
#endif
