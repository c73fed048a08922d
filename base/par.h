/* par.h - a loop over independent items on the OpenMP threads. Called outside a parallel region
 * it is a worksharing loop (schedule dynamic); called from a task inside one (analysis_run
 * chooses its strategies as tasks) it makes the items tasks (taskloop), so that a thread whose
 * own search is done takes items of another search instead of waiting. Items write only their
 * own results; the call returns when every item is done. Without OpenMP, a plain loop.
 * Deliberately not here: reductions or ordering (items are independent).
 */
#ifndef LR_PAR_H
#define LR_PAR_H

typedef void (*par_item_fn)(void *ctx, int k);

/* fn(ctx, k) for k = 0 .. n - 1, in any order and on any thread. */
void par_for(int n, par_item_fn fn, void *ctx);

#endif
