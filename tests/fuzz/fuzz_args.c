/* fuzz_args.c - libFuzzer target: bytes split at newlines into argv -> args_parse(sim_flags) ->
 * if the flags parse, sim_cli_run with stdout sent to /dev/null.
 *
 * A crash, a sanitizer report or an abort() is a bug; an error status is the expected answer to
 * most inputs. The harness keeps the run sandboxed and bounded in time, and says so here:
 *   - every output path (--output, --timeline, --trace, --graph, --report) is redirected into a
 *     scratch directory (the fuzzer runs as whoever runs make, possibly root), keeping the
 *     extension that selects the format;
 *   - --net must name one of five small networks of the zoo (others are mapped onto one), so
 *     no file outside the repository is read; with --report, one of the tiny nets;
 *   - sweeps are capped at 8 points, --gpu-mem at 4 MiB;
 *   - gnuplot is a stub script on PATH that succeeds, so --report writes its data and scripts
 *     without drawing.
 * Deliberately not here: network files (fuzz_net.c).
 */
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sim_cli.h"

#define MAX_ARGS 64

static char scratch[256];
static char paths[5][512];

/* The first three are the tiny nets (used with --report). Larger ones plan for seconds under
 * ASan and bring the fuzzer down to a few runs a second without reaching more of the CLI. */
static const char *const small_nets[] = {"tiny-vgg", "tiny-resnet", "tiny-mix", "alexnet", "vgg11"};
#define N_SMALL (sizeof small_nets / sizeof small_nets[0])

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

/* Empties the scratch directory (keeping it and the gnuplot stub). */
static void clean_scratch(void)
{
    char out[300];
    snprintf(out, sizeof out, "%s/out", scratch);
    nftw(out, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    mkdir(out, 0755);
}

static void setup(void)
{
    snprintf(scratch, sizeof scratch, "%s/lrcnn-fuzz-args.XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(scratch))
        abort();
    char stub[300];
    snprintf(stub, sizeof stub, "%s/gnuplot", scratch);
    FILE *f = fopen(stub, "w");
    if (!f)
        abort();
    fputs("#!/bin/sh\nexit 0\n", f);
    fclose(f);
    chmod(stub, 0755);
    setenv("PATH", scratch, 1);
    int null_fd = open("/dev/null", O_WRONLY);
    if (null_fd < 0 || dup2(null_fd, 1) < 0)
        abort();
    close(null_fd);
}

/* The file's extension (from the last '.' after the last '/'), "" when none. */
static const char *extension(const char *path)
{
    const char *dot = strrchr(path, '.'), *slash = strrchr(path, '/');
    return dot && (!slash || dot > slash) && strlen(dot) < 16 ? dot : "";
}

static void redirect(const char **path, int k, const char *base)
{
    if (!*path)
        return;
    if (strcmp(*path, "-") == 0 && k == 0)
        return; /* --output -: stdout, which is /dev/null */
    snprintf(paths[k], sizeof paths[k], "%s/out/%s%s", scratch, base, extension(*path));
    *path = paths[k];
}

static void sandbox(sim_options *o)
{
    if (o->net) {
        bool small = false;
        for (size_t i = 0; i < N_SMALL; i++)
            small |= strcmp(o->net, small_nets[i]) == 0;
        if (!small)
            o->net = small_nets[strlen(o->net) % N_SMALL];
        if (o->report && strncmp(o->net, "tiny-", 5) != 0)
            o->net = small_nets[strlen(o->net) % 3]; /* a report sweeps rows and batch: ~30 s on resnet18 */
    }
    /* --gpu-mem makes the report search the largest batch that fits for every strategy: on a
     * tiny net and gigabytes that is thousands of closed forms, 0.3 s natively but a minute
     * under the fuzzer's comparison tracing. 4 MiB keeps the search (fits at small batches,
     * doubling, bisection) in a few seconds. */
    if (o->gpu_mem_bytes > (4 << 20))
        o->gpu_mem_bytes = 4 << 20;
    redirect(&o->output, 0, "output");
    redirect(&o->timeline, 1, "timeline");
    redirect(&o->trace, 2, "trace");
    redirect(&o->graph, 3, "graph");
    redirect(&o->report, 4, "report");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool ready;
    if (!ready) {
        setup();
        ready = true;
    }
    if (size > 4096)
        return 0;
    char *text = malloc(size + 1);
    char *argv[MAX_ARGS + 1];
    int argc = 0;
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    argv[argc++] = "lrcnn-sim";
    for (char *p = text; argc < MAX_ARGS;) {
        argv[argc++] = p;
        char *nl = memchr(p, '\n', (size_t)(text + size - p));
        if (!nl)
            break;
        *nl = '\0';
        p = nl + 1;
    }
    argv[argc] = NULL;
    sim_options *o = malloc(sizeof *o);
    if (!o)
        abort();
    sim_options_init(o);
    if (args_parse(sim_flags, argc, argv, o) == LR_OK && !o->help && !o->version) {
        int nr = o->n_rows_sweep ? o->n_rows_sweep : 1, nb = o->n_batch_sweep ? o->n_batch_sweep : 1;
        if (nr * nb <= 8) {
            sandbox(o);
            clean_scratch();
            lr_fail(LR_OK, "%s", ""); /* so that an error without a message shows */
            lr_status s = sim_cli_run(o);
            if (s != LR_OK && lr_last_error()[0] == '\0') {
                fprintf(stderr, "fuzz_args: status %d without a message\n", (int)s);
                abort();
            }
        }
    }
    sim_options_free(o);
    free(o);
    free(text);
    return 0;
}
