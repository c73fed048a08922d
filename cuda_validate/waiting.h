/* waiting.h - how lrcnn-validate's OpenMP threads wait between kernel calls.
 *
 * A parallel region whose threads slept costs 55-100 us on the 2-core VM (a futex wake of an
 * idle vCPU), about what a stripe's small kernel does; one whose threads spin costs about 1 us.
 * Spinning is right when every thread has a core of its own and wrong when others' work shares
 * them (a spinning thread takes the core that a descheduled one needs to reach the barrier).
 * So the program looks once, before libgomp loads in its second run: it spins for a bounded time
 * (WAIT_SPIN_WINDOW_US) when the machine has a free core for every thread, else it sleeps at once;
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

/* How long libgomp's idle threads spin before they sleep. On the 2-core VMs the window covers
 * the host's work between two kernel calls of a row schedule: an empty parallel region, 2 threads,
 * the host busy 0-80 us between regions, cost 1-7 us while the threads still spun, 50 us after a
 * 160 us gap (the spin ran out) and 55-100 us with the threads passive.
 * libgomp counts spins, not time (GOMP_SPINCOUNT), and a spin (a load and a pause instruction)
 * takes what the CPU makes of it: 3000 spins lasted 80-160 us on the AMD EPYC (Zen 3) VM where the
 * window was tuned (1000 ran out past 20-40 us), but 37 us on a Xeon (family 6, model 167) VM,
 * 12.5 ns a spin: there a region after a 40 us gap cost 19 us, after 80 us 54 us. So the program
 * measures a spin as it starts and spins for WAIT_SPIN_WINDOW_US (wait_spin_count). */
enum { WAIT_SPIN_WINDOW_US = 100 };
/* The count when a spin cannot be measured (the AMD VM's), and the most: libgomp's own default,
 * which stalls row schedules on shared cores (validate_main.c). */
enum { WAIT_SPIN_FALLBACK = 3000, WAIT_SPIN_MAX = 300000 };

typedef enum {
    WAIT_SLEEP, /* OMP_WAIT_POLICY=passive */
    WAIT_SPIN,  /* GOMP_SPINCOUNT=wait_spin_count(wait_spin_ns()) */
} wait_mode;

/* The mode for `threads` threads on `cpus` CPUs while `others` other tasks are runnable (-1:
 * unknown): spin only when each thread has a CPU nobody else wants. One thread never waits. */
wait_mode wait_mode_for(int threads, int cpus, int others);

/* Nanoseconds one of libgomp's spins takes here (a relaxed load and the pause it waits with),
 * the least of a few timed runs of them; 0 when the clock fails. */
double wait_spin_ns(void);

/* The spins that last WAIT_SPIN_WINDOW_US at ns_per_spin each, within 1 .. WAIT_SPIN_MAX;
 * WAIT_SPIN_FALLBACK when ns_per_spin is not a positive number. */
int wait_spin_count(double ns_per_spin);

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

/* GOMP_SPINCOUNT's count when it is a plain number (-1: unset or another value). */
int wait_env_spins(void);

#ifdef __cplusplus
}
#endif

#endif
