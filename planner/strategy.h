/* strategy.h - the pieces a strategy's plan is chosen from (choose.h puts them together): the
 * closed-form evaluation of a spec, the table's objective, checkpoint segments, the single-stage
 * strategies' region end and N, the hybrids' resolution cuts.
 *
 * The table's objective, for every strategy that chooses: the lowest closed-form peak; plans
 * within 1% of it (STRATEGY_NEAR_TIE_DIV) count as tied and the least compute among them wins,
 * then the lower peak, then the first candidate offered. So a plan that buys its last 1% of
 * memory with much more compute (exact BatchNorm's statistics passes, halos) loses to a cheaper
 * one.
 *
 * --offload auto (plan_config.offload_auto) chooses a plan's offload set the same way: each set
 * (none, input, boundary, input,boundary) gets its own choice, then the lowest device peak wins,
 * near-ties going to the least host-device copying, then the least compute, then the smaller
 * set (strategy_offload_best): a plan keeps something in host memory only when that lowers its
 * device peak by more than 1%. Under a memory budget (--fit, auto's --budget) the least copying
 * among the sets whose plan fits wins instead (strategy_offload_fitting).
 *
 * Defaults (each a visible choice with its reason):
 *   region      every op up to the first one that needs every row (plan_default_region_end)
 *   checkpoint  Chen et al.'s greedy (a segment ends at the first cut after its activation bytes
 *               pass a budget total/K), K = 1..64 tried, the best by the objective (it lands
 *               near sqrt(L) segments); --segments K: K segments of equal activation bytes
 *   row/2ps/overl  the region end among the resolution cuts below (the paper's 2PS and OverL
 *               partition the first, high-resolution layers and run the rest column-wise) and
 *               N in 2..32, then past 32 up to the rows the stage splits (a grid and a pattern
 *               search from each end's best, below), the best by the objective among the plans
 *               whose schedule lrcnn builds (PLAN_MAX_RUNS); --region or --rows fix either.
 *               An end whose floor (persistent bytes, its output and the column tail's own
 *               rise: under every N's peak) is past the near-tie of the lowest peak at the end
 *               of the lowest floor is not measured (none of its plans could win), nor is an N
 *               whose floor (persistent bytes, the output's gradient and 1/N of what the
 *               region's backward reads: strategy_parts_floor) is past the near-tie of the
 *               lower peak of N = 32 and of the first N past 32 at its end; the search that
 *               hands its measurements to a hybrid (choose.c) marks both, and the hybrid's
 *               search skips them too
 *   resolution cuts  where the feature map shrinks (at the downsampling op when it is a cut, e.g.
 *               VGG's pools, else at the last cut before it, e.g. the end of a ResNet layer
 *               group), and the region end
 * Deliberately not here: the hybrids' search (auto_search restricted to their kind, choose.c),
 * the schedule itself (emit.c).
 */
#ifndef LR_STRATEGY_H
#define LR_STRATEGY_H

#include "plan.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    plan_strategy strategy;
    int rows;       /* partitions (first stage for hybrids); 0: choose */
    int region_end; /* last node of the row region; 0: default */
    int segments;   /* checkpoint segments; 0: the lowest-peak count */
} plan_request;

typedef struct {
    plan_spec spec;
    bool rows_chosen;   /* N came from the search, not from --rows */
    bool region_chosen; /* the region end came from the search, not from --region */
    plan_cost cost;     /* closed form of the chosen spec */
} plan_choice;

/* True when the plan puts a BatchNorm inside a stage with more than one partition under
 * --bn stripe: statistics per stripe, an approximation of column training. */
bool strategy_is_approximate(const net_t *net, const plan_config *cfg, const plan_spec *spec);

/* Plans within lowest/STRATEGY_NEAR_TIE_DIV bytes above the lowest peak are near-ties. */
#define STRATEGY_NEAR_TIE_DIV 100
bool strategy_near_tie(int64_t peak, int64_t lowest);

/* Candidates offered to the objective, then the best picked (strategy_pick_best: its index;
 * at least one offered). */
typedef struct {
    struct {
        plan_spec spec;
        plan_cost cost;
    } *v;
    int n, cap;
} strategy_pick;
void strategy_pick_init(strategy_pick *p);
void strategy_pick_free(strategy_pick *p);
void strategy_pick_offer(strategy_pick *p, const plan_spec *spec, const plan_cost *cost);
int strategy_pick_best(const strategy_pick *p);

/* --offload auto: the sets tried are the OFFLOAD_* bits 0 .. STRATEGY_OFFLOAD_SETS - 1 (none,
 * input, boundary, input,boundary), ties going to the first. */
#define STRATEGY_OFFLOAD_SETS 4

/* Whether offload set `set` can give a plan of strategy st (STRAT_COUNT: auto, any kind) other
 * than the smaller set without the bits it cannot use: column keeps its input on the device (no
 * stage), and only tiled stages of N > 1 (row, 2ps and their hybrid) hand boundaries on. The
 * sets that cannot are skipped: they would plan the same and lose the tie to the smaller set. */
bool strategy_offload_matters(plan_strategy st, unsigned set);

/* Without a memory budget: c[k] the plan chosen under set k (usable[k] false: none). The lowest
 * device peak; among its near-ties the least copy_bytes, then the least compute, then the lower
 * peak, then the smaller k. Returns k; -1 when no set is usable. */
int strategy_offload_best(const plan_cost *c, const bool *usable);

/* Under a memory budget: among the sets whose plan fits (fits[k]), the least copy_bytes, then
 * the least host memory, then the least compute, then the smaller k; -1 when none fits. */
int strategy_offload_fitting(const plan_cost *c, const bool *fits);

/* Checkpoint segments up to region_end (segments: --segments, 0: choose). Errors: LR_ERR_USAGE
 * naming --segments when there are fewer places to cut. */
lr_status strategy_checkpoint(const net_t *net, const plan_config *cfg, int region_end,
                              int segments, plan_spec *spec, plan_cost *cost);

/* A single-stage plan of `kind`: its region end (region_end itself when fixed_region, else the
 * best resolution cut up to it) and N (rows, or the best in 2..32). out->spec.strategy is left
 * to the caller. */
lr_status strategy_single_stage(const net_t *net, const plan_config *cfg, plan_partitioning kind,
                                int region_end, bool fixed_region, int rows, plan_choice *out);

/* The stages (0, end]:N, N in 2..STRATEGY_SINGLE_MAX_N, a single-stage search measured (their
 * forward and backward phases as stage 0 of a plan, plan_stage_phases, and their run bound), kept
 * for the hybrid search of the same kind and BatchNorm mode on the same net and config
 * (choose.c: a hybrid's choice, paired or alone), whose whole-region probes are the same stages:
 * the search takes them instead of measuring them again, so its answer is the same. */
#define STRATEGY_SINGLE_MAX_N 32
typedef struct {
    bool measured; /* plan_stage_build succeeded */
    bool phased;   /* fwd and bwd were recorded (runs within PLAN_MAX_RUNS) */
    bool pruned;   /* not measured: its floor (strategy_parts_floor) is past the near-tie of the
                      lower peak of N = 32 and of the first N past 32 at its end, so no plan
                      holding it can be chosen */
    int64_t runs;  /* plan_stage_runs */
    plan_phase fwd, bwd;
} strategy_kept_stage;
typedef struct {
    plan_partitioning kind;
    plan_bn bn;
    int n_ends, ends[PLAN_MAX_STAGES];
    /* by end: its floor (strategy_end_floor) is past the near-tie of the lowest peak the search
     * found, so no plan ending there can be chosen, single-stage or hybrid; not measured */
    bool beyond[PLAN_MAX_STAGES];
    strategy_kept_stage *v; /* [end index * (STRATEGY_SINGLE_MAX_N - 1) + N - 2] */
} strategy_stage_memo;

/* strategy_single_stage (rows 0, region chosen), also filling *keep (free with
 * strategy_stage_memo_free). */
lr_status strategy_single_stage_kept(const net_t *net, const plan_config *cfg,
                                     plan_partitioning kind, int region_end, plan_choice *out,
                                     strategy_stage_memo *keep);
void strategy_stage_memo_free(strategy_stage_memo *m);
/* The kept stage (0, end]:parts of kind under bn; NULL when the memo has none (m may be NULL). */
const strategy_kept_stage *strategy_stage_memo_find(const strategy_stage_memo *m,
                                                    plan_partitioning kind, plan_bn bn, int end,
                                                    int parts);

/* Whether the memo's search found region end `end` beyond the near-tie of its lowest peak (kind
 * and bn as memo_find; false when the memo has no such end, or m is NULL). A plan ending there
 * peaks at or above the end's floor, past the near-tie of the single-stage search's lowest peak,
 * which the hybrid's own lowest is no higher than (its candidates include every single-stage
 * plan): the hybrid search skips its single-stage probes there. */
bool strategy_stage_memo_beyond(const strategy_stage_memo *m, plan_partitioning kind, plan_bn bn,
                                int end);

/* Whether the memo's search left (0, end]:parts out by its floor (strategy_kept_stage.pruned):
 * every plan holding that stage peaks past the near-tie of the search's lowest, so the hybrid
 * search skips it as a single-stage plan. */
bool strategy_stage_memo_pruned(const strategy_stage_memo *m, plan_partitioning kind, plan_bn bn,
                                int end, int parts);

/* --rows N for the hybrids: the first stage N, deeper ones N scaled by their input height. */
void strategy_scaled_rows(const net_t *net, plan_spec *spec, int rows);

/* Closed-form cost of a spec (builds and frees the plan). */
lr_status strategy_evaluate(const net_t *net, const plan_config *cfg, const plan_spec *spec,
                            plan_cost *out);

/* The closed form of a spec when lrcnn would emit its schedule (plan_run_bound within
 * PLAN_MAX_RUNS) and can count its FLOPs; *usable is false otherwise, and the searches (N, auto,
 * fit) leave such plans out without paying for their closed form. Errors are plan_build's. */
lr_status strategy_evaluate_usable(const net_t *net, const plan_config *cfg, const plan_spec *spec,
                                   plan_cost *out, bool *usable);

/* The N search past 2..32 (strategy_single_stage, for each region end): the grid of
 * strategy_parts_grid up to strategy_max_parts, until STRATEGY_PATIENCE grid points in a row are
 * not lower than the best (past its minimum the peak only rises), then a pattern search between
 * the grid neighbours of the best. About 2 log2(best / 32) + 2 grid points and 2 log2(best / 8)
 * pattern steps per end. */
#define STRATEGY_PATIENCE 2
#define STRATEGY_GRID_MAX 64

/* The partition counts 1, 2, 3, 4, 6, 8, 12, 16, 24, ... (each about sqrt(2) times the one
 * before) from `first` and below max_parts, then max_parts itself; returns how many (<= cap). */
int strategy_parts_grid(int first, int max_parts, int *out, int cap);

/* The most partitions worth planning for stage (in_node, out_node]: the rows it splits
 * (plan_split_rows), for 2ps at most its output's rows or 32, within PLAN_MAX_RANGES. */
int strategy_max_parts(const net_t *net, plan_partitioning kind, int in_node, int out_node);

/* A floor under the peak of every single-stage plan (0, end]:N, any kind and N, from the phases
 * of the plan (0, end]:1 (`ends`, plan_closed_phases): when the tail starts, the persistent bytes
 * and the stage's output are live (whatever else the stage carries), and the tail's own events,
 * the same for every N, rise above that by what they rose in `ends`. The single-stage search
 * skips an end whose floor is past the near-tie of a peak it found (tests/test_plan.c holds the
 * floor under the peaks). */
int64_t strategy_end_floor(const net_t *net, const plan_config *cfg, int end,
                           const plan_phases *ends);

/* A floor under the peak of the single-stage plan built as stage st = (0, end]:N, the larger of
 * two moments:
 * - when the tail starts, the end floor's bytes and the boundary rows the stage keeps for its
 *   backward (plan_stage_kept_bytes) are live, and they stay live through the tail: this rises
 *   with N where the floors above fall;
 * - when the partition that holds the most starts its backward, the persistent bytes, the
 *   gradient of the stage's output and plan_stage_backward_bytes are live: at the net's own size
 *   a deep stage's partitions each hold most rows of its low-resolution layers, so this is far
 *   above strategy_parts_floor's saved / N.
 * At the net's own size, where the peak rises with N past a few partitions, it rules out most N
 * once a low peak is known (tests/test_plan.c holds it under the peaks). */
int64_t strategy_kept_floor(const net_t *net, const plan_config *cfg, int end,
                            const plan_phases *ends, const plan_stage *st);

/* The bytes of the values in (in, end) that a backward of the stage (in, end] reads
 * (plan_bwd_reads_*), whole: what the stage keeps for its backward, over all its partitions. */
int64_t strategy_saved_bytes(const net_t *net, const plan_config *cfg, int in, int end);
/* A floor under the peak of every plan holding the stage (in, end]:parts, any kind: when one
 * partition's backward starts (its recompute done, or its forward stored), the persistent bytes,
 * the stage's input (when it is not the net's), the gradient of its output and every value its
 * backward reads are live, the last in rows at least the partition's own; the partitions' own
 * rows cover each node once, so one of them holds at least saved / parts (saved:
 * strategy_saved_bytes; a twin's backward partitions are no more than parts).
 * tests/test_plan.c holds it under the peaks. */
int64_t strategy_stage_floor(const net_t *net, const plan_config *cfg, int in, int end, int parts,
                             int64_t saved, int64_t persistent);
/* strategy_stage_floor of the single-stage plan (0, end]:parts, its persistent bytes from the
 * plan (0, end]:1's phases (`ends`, as strategy_end_floor's). */
int64_t strategy_parts_floor(const net_t *net, const plan_config *cfg, int end, int parts,
                             int64_t saved, const plan_phases *ends);

/* The hybrid strategies' default stage cuts up to region_end; returns the number of stages. */
int strategy_resolution_cuts(const net_t *net, int region_end, int *cuts, int max_cuts);

#ifdef __cplusplus
}
#endif
#endif
