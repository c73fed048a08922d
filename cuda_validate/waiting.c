/* waiting.c - how lrcnn-validate's OpenMP threads wait (see waiting.h). */
#include "waiting.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <time.h>

wait_mode wait_mode_for(int threads, int cpus, int others)
{
    if (threads < 2 || cpus < 1 || others < 0)
        return WAIT_SLEEP;
    return (int64_t)others + threads <= cpus ? WAIT_SPIN : WAIT_SLEEP;
}

/* One of libgomp's spins (config/linux/wait.h's do_spin): a relaxed load of the word it waits on,
 * then cpu_relax, the pause instruction on x86, a compiler barrier elsewhere. */
static inline void one_spin(const int *word)
{
    (void)__atomic_load_n(word, __ATOMIC_RELAXED);
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#else
    __asm__ volatile("" : : : "memory");
#endif
}

static double now_ns(void)
{
    struct timespec t;
    if (clock_gettime(CLOCK_MONOTONIC, &t) != 0)
        return -1;
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

double wait_spin_ns(void)
{
    /* 24 runs of 1000 spins, 12-50 us each on the VMs, the least of them: the first runs find the
     * core slow (18.6 ns a spin against 12.5 after them on the Xeon VM), and with 5 runs of 2000
     * two of 30 starts there measured 19.6 ns (5100 spins for the window, not 8200) */
    enum { RUNS = 24, SPINS = 1000 };
    static int word;
    double least = 0;
    for (int r = 0; r < RUNS; r++) {
        double t0 = now_ns();
        for (int i = 0; i < SPINS; i++)
            one_spin(&word);
        double t1 = now_ns();
        if (t0 < 0 || t1 < 0)
            return 0;
        double ns = (t1 - t0) / SPINS;
        if (r == 0 || ns < least)
            least = ns;
    }
    return least;
}

int wait_spin_count(double ns_per_spin)
{
    if (!(ns_per_spin > 0) || !isfinite(ns_per_spin))
        return WAIT_SPIN_FALLBACK;
    double n = round(WAIT_SPIN_WINDOW_US * 1e3 / ns_per_spin);
    return n < 1 ? 1 : n > WAIT_SPIN_MAX ? WAIT_SPIN_MAX : (int)n;
}

/* /proc/loadavg's "running/total" field, which counts the reader (-1: unreadable). */
static int running_now(void)
{
    FILE *f = fopen("/proc/loadavg", "r");
    if (!f)
        return -1;
    double l1, l5, l15;
    int running = -1, total;
    if (fscanf(f, "%lf %lf %lf %d/%d", &l1, &l5, &l15, &running, &total) != 5)
        running = -1;
    fclose(f);
    return running;
}

int wait_others_running(void)
{
    int fewest = -1;
    for (int k = 0; k < WAIT_SAMPLES && fewest != 1; k++) {
        if (k) {
            struct timespec gap = {0, WAIT_SAMPLE_GAP_MS * 1000000L};
            nanosleep(&gap, NULL);
        }
        int r = running_now();
        if (r < 1)
            return -1;
        if (fewest < 0 || r < fewest)
            fewest = r;
    }
    return fewest - 1;
}

const char *const wait_env_names[WAIT_ENV_COUNT] = {"GOMP_SPINCOUNT", "OMP_WAIT_POLICY",
                                                     "OMP_PROC_BIND", "OMP_PLACES",
                                                     "GOMP_CPU_AFFINITY"};

bool wait_env_set(void)
{
    for (int k = 0; k < WAIT_ENV_COUNT; k++)
        if (getenv(wait_env_names[k]))
            return true;
    return false;
}

const char *wait_env_mode(void)
{
    const char *policy = getenv("OMP_WAIT_POLICY"), *spins = getenv("GOMP_SPINCOUNT");
    if (policy && strcasecmp(policy, "passive") == 0)
        return "sleep";
    if (policy && strcasecmp(policy, "active") == 0)
        return "spin";
    if (spins && strtoll(spins, NULL, 10) == 0 && spins[0] == '0')
        return "sleep";
    return "spin";
}

int wait_env_spins(void)
{
    const char *v = getenv("GOMP_SPINCOUNT");
    if (!v || !*v)
        return -1;
    char *end;
    long long n = strtoll(v, &end, 10);
    return *end == 0 && n >= 0 && n <= INT32_MAX && v[0] >= '0' && v[0] <= '9' ? (int)n : -1;
}
