/* waiting.h - how lrcnn-validate's OpenMP threads wait between kernel calls.
 *
 * A parallel region whose threads slept costs 55-100 us on the 2-core VM (a futex wake of an
 * idle vCPU), about what a stripe's small kernel does; one whose threads spin costs about 1 us.
 * Spinning is right when every thread has a core of its own and wrong when others' work shares
 * them (a spinning thread takes the core that a descheduled one needs to reach the barrier).
 * So the program looks once, before libgomp loads in its second run: it spins for a bounded time
 * (WAIT_SPIN_COUNT) when the machine has a free core for every thread, else it sleeps at once;
 * a wait the user set in the environment is left as it is. The CPU kernels then take threads
 * for smaller work when the threads spin (cpu_set_spinning).
 * Deliberately not here: the exec (validate_main.c), the kernels' thresholds (cpu_kernel.h).
 */
#ifndef LR_WAITING_H
#define LR_WAITING_H

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

/* libgomp's spins before a waiting thread sleeps. On the 2-core VM they cover the host's work
 * between two kernel calls of a row schedule: an empty parallel region, 2 threads, the host busy
 * 0-80 us between regions, cost 1-7 us with 3000 spins, but 50 us after a 160 us gap (the spin
 * ran out: 80-160 us) and 55-100 us with the threads passive; 1000 spins ran out past 20-40 us. */
enum { WAIT_SPIN_COUNT = 3000 };

typedef enum {
    WAIT_SLEEP, /* OMP_WAIT_POLICY=passive */
    WAIT_SPIN,  /* GOMP_SPINCOUNT=WAIT_SPIN_COUNT */
} wait_mode;

/* The mode for `threads` threads on `cpus` CPUs while `others` other tasks are runnable (-1:
 * unknown): spin only when each thread has a CPU nobody else wants. One thread never waits. */
wait_mode wait_mode_for(int threads, int cpus, int others);

/* Runnable tasks besides this one: the fewest of up to WAIT_SAMPLES readings of /proc/loadavg's
 * running count, WAIT_SAMPLE_GAP_MS apart, stopping at the first that shows none, so that a
 * passing process does not count (-1: unreadable). An idle machine answers at once; a busy one
 * after 180 ms. A reader started beside the run in a pipe (`| python3 -c 'import json ...'`)
 * ran for 150 ms as the run started: with 3 readings 2 ms apart the run slept. */
enum { WAIT_SAMPLES = 10, WAIT_SAMPLE_GAP_MS = 20 };
int wait_others_running(void);

/* The variables that say how threads wait or where they run: GOMP_SPINCOUNT, OMP_WAIT_POLICY,
 * OMP_PROC_BIND, OMP_PLACES, GOMP_CPU_AFFINITY. */
enum { WAIT_ENV_COUNT = 5 };
extern const char *const wait_env_names[WAIT_ENV_COUNT];

/* Whether the environment already sets one of wait_env_names: then it is left alone. */
bool wait_env_set(void);

/* How this process's idle threads wait, from what libgomp read: "sleep" (OMP_WAIT_POLICY=passive
 * or GOMP_SPINCOUNT=0), else "spin" (a spin count, active, or libgomp's default). */
const char *wait_env_mode(void);

#ifdef __cplusplus
}
#endif

#endif
