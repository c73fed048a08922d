/* par.c - par_for (see par.h). */
#include "par.h"

#ifdef _OPENMP
#include <omp.h>
#endif

void par_for(int n, par_item_fn fn, void *ctx)
{
#ifdef _OPENMP
    if (omp_in_parallel()) {
        /* One task per thread of the team, each taking the next item until none is left: a
         * thread that joins late still finds items. (Not taskloop: libgomp runs a taskloop of more
         * than 64 tasks per thread on the encountering thread alone.) */
        int next = 0, tasks = omp_get_num_threads() < n ? omp_get_num_threads() : n;
#pragma omp taskgroup
        {
            for (int t = 0; t < tasks; t++) {
#pragma omp task shared(next) firstprivate(n, fn, ctx)
                for (int k; (k = __atomic_fetch_add(&next, 1, __ATOMIC_RELAXED)) < n;)
                    fn(ctx, k);
            }
        }
        return;
    }
#pragma omp parallel for schedule(dynamic)
    for (int k = 0; k < n; k++)
        fn(ctx, k);
#else
    for (int k = 0; k < n; k++)
        fn(ctx, k);
#endif
}
