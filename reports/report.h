/* report.h - `lrcnn-sim --report DIR`: a directory with the plots of plot.h (PNG and SVG, their
 * gnuplot scripts and CSV data) and report.md, which holds the strategy table and the images.
 *
 * The directory is written whole or not at all: everything is built in a sibling DIR.tmp.XXXXXX
 * and renamed into place at the end (atomically exchanged with an existing report), and the
 * temporary directory is removed on any failure. An existing DIR is replaced only when it is
 * empty or an earlier report (report.md starts with REPORT_MARK), so a typo cannot delete an
 * unrelated directory.
 *
 * Deliberately not here: the plots themselves (plot_*.c), the row-dependency graph (graph.c),
 * signal handling (an interrupted run can leave DIR.tmp.XXXXXX behind, never a partial DIR).
 */
#ifndef LR_REPORT_H
#define LR_REPORT_H

#include <stdint.h>

#include "analysis.h"

#ifdef __cplusplus
extern "C" {
#endif

#define REPORT_MARK "<!-- lrcnn-sim report"

typedef struct {
    int64_t gpu_mem_bytes; /* > 0: the batch plot draws it and lists the largest batch that fits */
} report_options;

/* What report_write checks first, cheap enough to call before any work or output: gnuplot is on
 * PATH (else LR_ERR_RUNTIME with the one-line "gnuplot not found on PATH: ..." message) and dir
 * is absent, empty or an earlier report (else LR_ERR_IO). */
lr_status report_check(const char *dir);

/* Writes the report of an analysis (at least one strategy) into dir. Errors: LR_ERR_RUNTIME
 * (gnuplot missing or failing), LR_ERR_IO naming the path (dir not replaceable, write errors),
 * or a planner error; in every case dir is left as it was. */
lr_status report_write(const analysis_t *a, const report_options *opt, const char *dir);

#ifdef __cplusplus
}
#endif
#endif
