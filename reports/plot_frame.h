/* plot_frame.h - the pieces every plot of a report shares (plot_timeline.c, plot_sweeps.c,
 * plot_layers.c): the unit of an axis, the note beside an image, the gnuplot frame around a
 * plot (PNG terminal, the plot, then SVG and `replot`), output files in the report directory,
 * and one colour per strategy, kept in every plot.
 *
 * Deliberately not here: any plot's content (plot.h lists them), running gnuplot (plot_gnuplot.c).
 */
#ifndef LR_PLOT_FRAME_H
#define LR_PLOT_FRAME_H

#include <stdio.h>

#include "outfile.h"
#include "plot.h"

/* "#rrggbb" per strategy: the two baselines in greys, the row strategies in distinct hues. */
extern const char *const plot_strategy_colour[STRAT_COUNT];

typedef struct {
    double bytes;     /* bytes per axis unit */
    const char *name; /* "KiB", "MiB", "GiB" */
} plot_unit;

/* The unit for an axis whose largest value is max_bytes. */
plot_unit plot_unit_for(int64_t max_bytes);

/* Appends printf text to m->note (silently cut at PLOT_NOTE_MAX). */
void plot_note(plot_made *m, const char *fmt, ...) LR_PRINTF(2, 3);

/* Writes s as a double-quoted gnuplot string. */
void plot_gp_string(FILE *f, const char *s);

/* The script's head (what it remakes, `unit`, the PNG terminal, common style) and tail (the
 * SVG terminal and `replot`). */
void plot_gp_begin(FILE *f, const char *name, plot_unit u, int width, int height);
void plot_gp_end(FILE *f, const char *name, int width, int height);

/* "set title" with the configuration ("vgg16, batch 64, fp32, momentum: <what>"). */
void plot_gp_title(FILE *f, const analysis_t *a, const char *what);

/* Opens dir/file for an all-or-nothing write (outfile.h). */
lr_status plot_open_in(lr_outfile *o, const char *dir, const char *file);

/* A layer name as an unquoted CSV cell (separators become '_'). */
void plot_csv_name(FILE *f, const char *s);

#endif
