/* graph.h - the row-dependency graph of a row plan, built with Graphviz cgraph and written as
 * DOT, or laid out and rendered by Graphviz's own library (gvc) as SVG or PNG.
 *
 * What it shows (left to right, layers as ranks; a cluster per partition, partition 0 on top):
 *   - a node per (layer, partition) stripe with the rows it owns; tiled plans (row, 2ps) add
 *     the rows its buffer holds when the previous partition handed some over, overlapping plans
 *     (overl) the rows it computes beyond its own (the halo);
 *   - grey edges for the rows a stripe reads from the stripes of its own partition (labelled
 *     with the rows read where it reads the whole stage input);
 *   - orange edges for boundary rows: the rows partition j copies into partition j+1's buffer of
 *     the same layer (the schedule's COPY steps); stripes that compute halo rows are filled red;
 *   - the stage input and output as whole maps, the column tail as one node, and a legend.
 * Hybrid plans draw each stage with its own partitions, joined through the stage outputs.
 *
 * Compact view: above GRAPH_FULL_MAX stripe nodes (e.g. VGG-16 x 8 partitions has 248) a node
 * stands for a block of layers per partition: the layers between two changes of resolution
 * (strategy_resolution_cuts, so a VGG block ends at its pool, a ResNet group at its last add),
 * labelled with its first and last layer, the rows of each, and the boundary rows it receives
 * or the largest halo it computes. Stages with more than GRAPH_SHOWN_PARTS partitions show the
 * first three and the last two, with one node standing for those in between.
 *
 * Deliberately not here: choosing the plan (planner/), the schedule (the graph is drawn from
 * the plan's row ranges, the same ones the emitter turns into steps).
 */
#ifndef LR_GRAPH_H
#define LR_GRAPH_H

#include <stdbool.h>

#include "plan.h"

#ifdef __cplusplus
extern "C" {
#endif

#define GRAPH_FULL_MAX 64
#define GRAPH_SHOWN_PARTS 8

typedef enum { GRAPH_DOT, GRAPH_SVG, GRAPH_PNG, GRAPH_FORMAT_COUNT } graph_format;

/* From the file name's extension (.dot, .gv, .svg, .png, any case); GRAPH_FORMAT_COUNT else. */
graph_format graph_format_of(const char *path);

typedef struct {
    bool compact;       /* one node per block of layers */
    int stripe_nodes;   /* (layer or block, partition) nodes drawn */
    int boundary_edges; /* orange edges */
    int halo_nodes;     /* stripes that compute rows a neighbour also computes */
} graph_summary;

/* Writes the graph of `plan` (which must have at least one stage) to path, in the format its
 * extension names, all or nothing. Fills *sum when not NULL. Errors: LR_ERR_USAGE (extension,
 * a plan without stages), LR_ERR_IO naming the path, LR_ERR_RUNTIME when Graphviz fails (e.g.
 * its PNG plugin is not installed) with Graphviz's message. */
lr_status graph_write(const plan_t *plan, const char *path, graph_summary *sum);

#ifdef __cplusplus
}
#endif
#endif
