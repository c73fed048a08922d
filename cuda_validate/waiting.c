/* waiting.c - how lrcnn-validate's OpenMP threads wait (see waiting.h). */
#include "waiting.h"

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
