/* cpu_blas.c - the one door to the BLAS: single-precision GEMM on the calling thread; and the
 * switch of the kernels' thread thresholds (cpu_set_spinning, cpu_kernel.h).
 *
 * The kernels split their work into units whose shapes depend only on the layer's geometry and
 * run one unit per OpenMP thread, each a GEMM on that thread alone. A BLAS's result for an
 * element depends on the call's shape and on the element's place in it (OpenBLAS picks edge and
 * small-matrix kernels by size), so fixed unit shapes are what make results independent of the
 * thread count and of the row range of a call; a threaded BLAS would split by its own rule.
 *
 * OpenBLAS (LRCNN_HAVE_OPENBLAS, what `make` builds with) keeps its own packing buffers,
 * allocated once, as cuBLAS keeps its workspace; every other byte of scratch is the planned
 * workspace tensor the kernels are given. Without it (`make validate` on a machine that has no
 * OpenBLAS, e.g. the GPU image), the same products run as plain loops: slower, equally
 * deterministic.
 * Deliberately not here: any choice of units (the kernels make it), other BLAS routines.
 */
#include "cpu_kernel.h"

#include "args.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cpu_parallel_shift;

void cpu_set_spinning(bool spinning)
{
    cpu_parallel_shift = spinning ? SPINNING_SHIFT : 0;
}

#ifdef LRCNN_HAVE_OPENBLAS

#include <cblas.h>

/* OpenBLAS's threaded builds start their worker threads when the library loads, before main.
 * openblas_set_num_threads(1) only stops handing them work: in OpenBLAS 0.3.21 (Debian's
 * pthread build) an idle worker keeps spinning on sched_yield, and on a machine with as many cores
 * as OpenMP threads it takes a core from an OpenMP thread; then every parallel region's barrier
 * waits on a descheduled thread and a step runs 5-25x slower, in about one process in four
 * (tiny-mix column at 28x28: 5 ms or 97-128 ms per step; with OPENBLAS_NUM_THREADS=1, 5 ms in 20
 * runs of 20). So the workers are joined as soon as the program starts: the count set to 1, then
 * blas_thread_shutdown_ (exported by the threaded builds, which call it before fork; absent from
 * the serial build, hence weak). Single-threaded calls never start them again. */
extern int blas_thread_shutdown_(void) __attribute__((weak));

/* OpenBLAS picks its kernel set from the CPU's model number as it loads. A model newer than the
 * library gets its generic x86-64 set, "Prescott" (SSE3): OpenBLAS 0.3.21, Debian 12's, does so
 * on Emerald Rapids (family 6, model 207), where resnet18's column step at 64x64 took 795 ms with
 * it and 279 ms with the SkylakeX set (bench/cpu_vs_pytorch.sh, one round each). The set can be
 * named in OPENBLAS_CORETYPE, which the library reads only as it loads. So when it fell back to
 * Prescott on a CPU that runs a better set, the program names the best of them there and executes
 * itself again, once: the variable, now set, stops a second try, and one the user set is left as
 * it is. FALLBACK_VAR records what OpenBLAS had picked, for cpu_gemm_describe. */
#define FALLBACK_VAR "LRCNN_OPENBLAS_OWN_CHOICE"

/* The best kernel set of OpenBLAS's dynamic builds this CPU runs (the checks include the OS's
 * support of the registers); NULL: none above Prescott. */
static const char *better_kernels(void)
{
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512vl"))
        return "SkylakeX";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return "Haswell";
    if (__builtin_cpu_supports("avx"))
        return "Sandybridge";
#endif
    return NULL;
}

static void choose_kernels(char **argv)
{
    const char *own = openblas_get_corename(), *better = better_kernels();
    if (getenv("OPENBLAS_CORETYPE") || !argv || !argv[0] || !own || strcmp(own, "Prescott") != 0 ||
        !better)
        return;
    if (setenv("OPENBLAS_CORETYPE", better, 1) == 0 && setenv(FALLBACK_VAR, own, 1) == 0)
        args_exec_self(argv);
    unsetenv("OPENBLAS_CORETYPE"); /* (no /proc: the program goes on with Prescott's) */
    unsetenv(FALLBACK_VAR);
}

void cpu_gemm_describe(char *buf, size_t size)
{
    /* openblas_get_config(): "OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH ..."; its first two words */
    const char *config = openblas_get_config();
    int len = (int)strcspn(config, " ");
    if (config[len] == ' ')
        len += 1 + (int)strcspn(config + len + 1, " ");
    const char *own = getenv(FALLBACK_VAR);
    if (own)
        snprintf(buf, size, "%.*s, %s kernels (OPENBLAS_CORETYPE; OpenBLAS picked %s for this CPU)",
                 len, config, openblas_get_corename(), own);
    else
        snprintf(buf, size, "%.*s, %s kernels", len, config, openblas_get_corename());
}

/* (glibc calls a program's constructors with main's arguments) */
__attribute__((constructor)) static void blas_single_threaded(int argc, char **argv)
{
    (void)argc;
    choose_kernels(argv);
    openblas_set_num_threads(1);
    if (blas_thread_shutdown_ != NULL)
        blas_thread_shutdown_();
}

/* C's m rows of n floats set to 0, vectorised (AVX2 clone too). */
LR_CLONES
static void zero_rows(float *c, int m, int n, int64_t ldc)
{
    for (int i = 0; i < m; i++) {
        float *ci = c + i * ldc;
#pragma omp simd
        for (int j = 0; j < n; j++)
            ci[j] = 0.0f;
    }
}

/* C = A x B is C = 0, then C += A x B with beta 1: what OpenBLAS does for beta 0 (its beta
 * routine zeroes C, then its kernels add the product), so the bits are the same; but 0.3.21's
 * beta routine for Zen stores one float at a time, and the backward-data GEMM's C (the K rows of
 * a chunk's columns, over a hundred kilobytes for a 16-channel layer) took 5.5% of tiny-vgg's
 * column step in it (perf, one thread). */
void cpu_gemm(bool trans_a, bool trans_b, int m, int n, int k, const float *a, int64_t lda,
              const float *b, int64_t ldb, bool accumulate, float *c, int64_t ldc)
{
    LR_ASSERT(m >= 0 && n >= 0 && k >= 0);
    LR_ASSERT(lda <= INT_MAX && ldb <= INT_MAX && ldc <= INT_MAX);
    if (m == 0 || n == 0)
        return;
    if (!accumulate)
        zero_rows(c, m, n, ldc);
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, m, n, k, 1.0f, a, (int)lda, b, (int)ldb,
                1.0f, c, (int)ldc);
}

#else

void cpu_gemm_describe(char *buf, size_t size)
{
    snprintf(buf, size, "plain loops");
}

void cpu_gemm(bool trans_a, bool trans_b, int m, int n, int k, const float *a, int64_t lda,
              const float *b, int64_t ldb, bool accumulate, float *c, int64_t ldc)
{
    LR_ASSERT(m >= 0 && n >= 0 && k >= 0);
    for (int i = 0; i < m; i++) {
        float *ci = c + i * ldc;
        if (!accumulate)
            for (int j = 0; j < n; j++)
                ci[j] = 0.0f;
        for (int p = 0; p < k; p++) {
            float ap = trans_a ? a[p * lda + i] : a[i * lda + p];
            if (trans_b) {
                for (int j = 0; j < n; j++)
                    ci[j] += ap * b[j * ldb + p];
            } else {
                const float *bp = b + p * ldb;
#pragma omp simd
                for (int j = 0; j < n; j++)
                    ci[j] += ap * bp[j];
            }
        }
    }
}

#endif
