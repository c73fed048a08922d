/* gemm_blas.c - the CPU backend's GEMMs alone, for choosing the BLAS (bench/blas_choice.sh).
 *
 *   gemm_blas LABEL [REPEATS]
 *
 * Times, on the calling thread, the three single-precision GEMMs of one convolution work unit
 * (cuda_validate/cpu_conv.c) for the layer shapes below, through the CBLAS interface the backend
 * calls (cblas_sgemm, row-major), so that one source links against any BLAS with that interface
 * (OpenBLAS, BLIS). Per layer, the best of REPEATS (default 7) timings of a loop of calls long
 * enough to take about 0.2 ms x the work; one tab-separated line per layer:
 *   LABEL  layer  forward_us  backward_data_us  backward_filter_us
 * Deliberately not here: threads (each unit is one call on one thread), the choice itself.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <cblas.h>

/* A 3x3 convolution's unit: Cout output channels, K = Cin x 9 taps, P pixels (the images of a
 * block times one output row forward; BWD_PIXELS = 256 backward). */
typedef struct {
    const char *layer;
    int cout, k, p;
} unit;

static const unit units[] = {
    {"tiny-mix conv1 (1->8, 28x28)", 8, 9, 224},
    {"tiny-vgg conv2 (16->32, 14x14)", 32, 144, 224},
    {"resnet18 layer1 (64, 16x16)", 64, 576, 256},
    {"resnet18 layer2 (128, 8x8)", 128, 1152, 256},
    {"resnet18 layer3 (256, 4x4)", 256, 2304, 128},
    {"resnet18 layer4 (512, 2x2)", 512, 4608, 64},
};

static double now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

/* Best time of one call C = op(A) op(B) + C (m x n, inner k), over `repeats` loops. */
static double best_us(int ta, int tb, int m, int n, int k, const float *a, const float *b,
                      float *c, int repeats)
{
    int lda = ta ? m : k, ldb = tb ? k : n;
    double work = 2.0 * m * n * k;
    int calls = (int)(2e8 / work) + 1;
    calls = calls > 5000 ? 5000 : calls;
    double best = 1e30;
    for (int r = 0; r < repeats; r++) {
        double t0 = now_us();
        for (int q = 0; q < calls; q++)
            cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans,
                        tb ? CblasTrans : CblasNoTrans, m, n, k, 1.0f, a, lda, b, ldb, 1.0f, c, n);
        double t = (now_us() - t0) / calls;
        best = t < best ? t : best;
    }
    return best;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: gemm_blas LABEL [REPEATS]\n");
        return 2;
    }
    int repeats = argc == 3 ? atoi(argv[2]) : 7;
    if (repeats < 1 || repeats > 1000) {
        fprintf(stderr, "gemm_blas: REPEATS: expected 1..1000, got '%s'\n", argv[2]);
        return 2;
    }
    size_t most = 0;
    for (size_t u = 0; u < sizeof units / sizeof units[0]; u++) {
        size_t k = (size_t)units[u].k, co = (size_t)units[u].cout, p = (size_t)units[u].p;
        size_t s = k * co > k * p ? k * co : k * p; /* every operand and result of the three */
        s = co * p > s ? co * p : s;
        most = s > most ? s : most;
    }
    float *a = malloc(most * sizeof *a), *b = malloc(most * sizeof *b), *c = malloc(most * sizeof *c);
    if (!a || !b || !c) {
        fprintf(stderr, "gemm_blas: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < most; i++)
        a[i] = (float)(i % 7) * 0.1f, b[i] = (float)(i % 5) * 0.2f, c[i] = 0.0f;
    for (size_t u = 0; u < sizeof units / sizeof units[0]; u++) {
        const unit *x = &units[u];
        double fwd = best_us(0, 0, x->cout, x->p, x->k, a, b, c, repeats);  /* W col */
        double bd = best_us(1, 0, x->k, x->p, x->cout, a, b, c, repeats);   /* W^T dY */
        double bf = best_us(0, 1, x->cout, x->k, x->p, a, b, c, repeats);   /* dY col^T */
        printf("%s\t%s\t%.3f\t%.3f\t%.3f\n", argv[1], x->layer, fwd, bd, bf);
    }
    free(a), free(b), free(c);
    return 0;
}
