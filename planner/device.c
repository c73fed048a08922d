/* device.c - the device table and the time of one kernel (see device.h for the model). */
#include "device.h"

#include <math.h>
#include <strings.h>

#include "plan.h"

#define MiB ((int64_t)1 << 20)
#define GiB ((int64_t)1 << 30)

/* Memory: where the driver's figure is well known it is used (nvidia-smi memory.total,
 * = cudaGetDeviceProperties totalGlobalMem): it is below the marketing number on HBM cards and
 * with ECC on (T4, L4, A10G enable it by default). Otherwise the card's nominal binary size
 * (GDDR and HBM come in power-of-two GiB parts). H200: "141 GB" is 143771 MiB = 140.4 GiB as the
 * driver reports it, not 141e9 bytes.
 * Time: fp32 FLOP/s without tensor cores and memory bandwidth from the vendors' datasheets (SXM
 * parts where there are several), efficiency 0.6 (cuDNN's fp32 FMA convolutions on large
 * layers), 5 us per launch, half_elems = 8192 outputs per SM (4 per thread of a full SM). */
#define GPU(name, bytes, label, tflops, gbps, sms, link)                                       \
    {name, bytes, label, tflops * 1e12, 0.6, gbps * 1e9, 5e-6, 8192.0 * sms, "datasheet", link}
/* Host link, each way, theoretical for x16: PCIe 3.0 15.75 GB/s, 4.0 31.5 GB/s, 5.0 63 GB/s
 * (SXM parts reach the host over PCIe too); what cudaMemcpyAsync from pinned memory achieves is
 * some 10-20% lower. */
#define PCIE3 15.75e9
#define PCIE4 31.5e9
#define PCIE5 63e9

const device_spec device_table[] = {
    GPU("t4", 15360 * MiB, "NVIDIA T4 16GB (ECC on): 15360 MiB", 8.1, 320, 40, PCIE3),
    GPU("l4", 23034 * MiB, "NVIDIA L4 24GB (ECC on): 23034 MiB", 30.3, 300, 58, PCIE4),
    GPU("a10g", 23028 * MiB, "NVIDIA A10G 24GB (ECC on): 23028 MiB", 31.2, 600, 80, PCIE4),
    GPU("v100-16gb", 16 * GiB, "NVIDIA V100 16GB: 16 GiB nominal", 15.7, 900, 80, PCIE3),
    GPU("v100-32gb", 32 * GiB, "NVIDIA V100 32GB: 32 GiB nominal", 15.7, 900, 80, PCIE3),
    GPU("rtx3090", 24576 * MiB, "GeForce RTX 3090 24GB: 24576 MiB", 35.6, 936, 82, PCIE4),
    GPU("rtx4090", 24564 * MiB, "GeForce RTX 4090 24GB: 24564 MiB", 82.6, 1008, 128, PCIE4),
    GPU("a100-40gb", 40960 * MiB, "NVIDIA A100 40GB: 40960 MiB", 19.5, 1555, 108, PCIE4),
    GPU("a100-80gb", 81920 * MiB, "NVIDIA A100 80GB: 81920 MiB", 19.5, 2039, 108, PCIE4),
    GPU("h100-80gb", 81559 * MiB, "NVIDIA H100 80GB HBM3: 81559 MiB", 66.9, 3350, 132, PCIE5),
    GPU("h200", 143771 * MiB, "NVIDIA H200 141GB HBM3e: 143771 MiB", 66.9, 4800, 132, PCIE5),
    /* lrcnn-validate --backend cpu, one thread, on the 2-core build machine (AMD EPYC, Zen 3;
     * im2col + OpenBLAS GEMM kernels): fitted by bench/cpu_time.sh to the tiny nets' steps at
     * batch 8 and their layers (each layer's kernel time per step, from --profile;
     * results/cpu_time/). The peak is one core's nominal fp32 FMA rate; the fit puts a large
     * convolution at 44% of it and memory-bound layers at 24.6 GB/s. (A fit to the steps alone
     * had put the convolutions at 98% and the memory at 5.4 GB/s: the same step times, the
     * wrong split, so a plan whose extra work is mostly memory-bound was predicted far slower
     * than it ran: tiny-mix overl-h at batch 32, 3.25x column against 1.9x measured.) Since
     * small convolutions run direct (cuda_validate/cpu_conv_direct.c, 2151d7a), those run faster
     * than this single efficiency says: bench/cpu_time.sh's check at batch 16 fell from 18 to
     * 11-12 of 18 ratios within 20% (four runs), over-predicting tiny-resnet's exact-BN row
     * strategies by 25-62%; refits in the same hour kept 11-15 of 18 and moved from run to run,
     * so these constants stay until the model can tell small convolutions apart. Four runs at
     * 890d71b: 14-15 of 18 with these constants (tiny-resnet's exact-BN rows 21-37% over),
     * refits 12-17 of 18 with efficiency 0.35-0.41 and 12.8-16.5 GB/s. */
    {"cpu", 0, "lrcnn's CPU reference backend (one thread of the build machine)", 1e11, 0.4425,
     2.463e10, 2.486e-6, 152.6, "fitted: bench/cpu_time.sh", 2.463e10 /* a copy is a memcpy */},
    {NULL, 0, NULL, 0, 0, 0, 0, 0, NULL, 0},
};

const device_spec *device_find(const char *name)
{
    for (const device_spec *d = device_table; d->name; d++)
        if (strcasecmp(d->name, name) == 0)
            return d;
    return NULL;
}

/* ------------------------------------------------------------------ kernels */

/* Kernels the executors start for one RUN step of op (the CUDA backend's count: a convolution's
 * backward runs cuDNN's filter and data calls, a bias adds a kernel forward and a reduction of
 * two backward; BatchNorm gathers statistics in two, finalises, normalises; fully connected
 * layers are a GEMM and a bias, backward two GEMMs and a column sum). */
static int launches_of(const net_node *n, device_kernel_kind kind)
{
    int bias = n->prm.bias ? 1 : 0;
    switch (n->op) {
    case OP_CONV:
        return kind == KERNEL_BWD ? 2 + 2 * bias : 1 + bias;
    case OP_BATCHNORM:
        return kind == KERNEL_STATS ? 2 : 4;
    case OP_FC:
        return kind == KERNEL_BWD ? 3 : 2;
    default:
        return 1;
    }
}

/* Elements of the input rows `rows` output rows of node read (whole inputs for ops that read
 * every row; rows scaled by the inputs' height otherwise). */
static int64_t input_elems(const net_t *net, const net_node *n, int batch, int rows)
{
    int64_t sum = 0;
    for (int k = 0; k < n->n_inputs; k++) {
        const net_node *u = &net->nodes[plan_root(net, n->inputs[k])];
        int64_t r = ((int64_t)rows * u->h + n->h - 1) / n->h;
        sum += (int64_t)batch * u->c * (r < u->h ? r : u->h) * u->w;
    }
    return sum;
}

device_kernel device_kernel_of(const net_t *net, int node, int batch, int elem_bytes, int rows,
                               device_kernel_kind kind, plan_optim optim)
{
    const net_node *n = &net->nodes[node];
    device_kernel k = {0, 0, 0, launches_of(n, kind)};
    if (kind == KERNEL_UPDATE) {
        int slots = cost_optim_slots(optim);
        k.flops = (int64_t)(2 + 3 * slots) * n->params;
        k.bytes = (int64_t)elem_bytes * n->params * (3 + 2 * slots); /* w, g read, w, g written */
        k.elems = n->params;
        k.launches = 1;
        return k;
    }
    int64_t out = (int64_t)batch * n->c * rows * n->w, in = input_elems(net, n, batch, rows);
    int64_t params = (int64_t)elem_bytes * n->params;
    k.elems = out;
    if (kind == KERNEL_FWD) {
        k.flops = cost_fwd_flops(net, node, batch, rows);
        k.bytes = elem_bytes * (in + out) + params;
    } else if (kind == KERNEL_BWD) {
        k.flops = cost_bwd_flops(net, node, batch, rows);
        k.bytes = 2 * elem_bytes * (in + out) + 2 * params; /* x, dy read; dx, dw written */
    } else {
        k.flops = cost_stats_flops(net, node, batch, rows);
        k.bytes = elem_bytes * out;
    }
    return k;
}

device_kernel device_kernel_of_sum(const net_t *net, int node, int batch, int elem_bytes,
                                   int in_rows, int out_rows, device_kernel_kind kind)
{
    const net_node *n = &net->nodes[node], *x = &net->nodes[n->inputs[0]];
    int64_t in = (int64_t)batch * x->c * in_rows * x->w, out = (int64_t)batch * n->c * out_rows * n->w;
    device_kernel k = {cost_sum_flops(net, node, batch, in_rows), elem_bytes * (in + 2 * out), out,
                       launches_of(n, kind)};
    if (kind == KERNEL_BWD)
        k.bytes = elem_bytes * (2 * in + out); /* dy read; dx read and written */
    return k;
}

bool device_kernel_of_step(const net_t *net, int batch, int elem_bytes, plan_optim optim,
                           const sched_step *st, device_kernel *k)
{
    if (st->op != STEP_RUN || st->flops == 0)
        return false;
    if (st->flags & RUN_ROW_SUM) { /* its FLOPs are one per input element it adds */
        const net_node *x = &net->nodes[net->nodes[st->node].inputs[0]];
        int in_rows = (int)(st->flops / ((int64_t)batch * x->c * x->w));
        *k = device_kernel_of_sum(net, st->node, batch, elem_bytes, in_rows,
                                  st->row_hi - st->row_lo + 1,
                                  st->pass == PASS_BWD || st->pass == PASS_GSTATS ? KERNEL_BWD : KERNEL_FWD);
        return true;
    }
    device_kernel_kind kind = KERNEL_FWD;
    if (st->pass == PASS_UPDATE)
        kind = KERNEL_UPDATE;
    else if (st->flags & (RUN_STATS_ACC | RUN_GSTATS_ACC))
        kind = KERNEL_STATS;
    else if (st->pass == PASS_BWD || st->pass == PASS_GSTATS)
        kind = KERNEL_BWD;
    *k = device_kernel_of(net, st->node, batch, elem_bytes, st->row_hi - st->row_lo + 1, kind,
                          optim);
    return true;
}

double device_kernel_seconds(const device_spec *d, const device_kernel *k)
{
    double e = (double)k->elems;
    double u = e > 0 ? e / (e + d->half_elems) : 1.0;
    double compute = (double)k->flops / (d->peak_flops * d->efficiency * u);
    double memory = (double)k->bytes / d->bandwidth;
    return (compute > memory ? compute : memory) + k->launches * d->launch_s;
}

int64_t device_copy_ns(const device_spec *d, int64_t bytes)
{
    if (!d || d->host_link <= 0 || bytes <= 0)
        return 0;
    double ns = ceil((double)bytes / d->host_link * 1e9);
    return ns >= 9.2e18 ? INT64_MAX : (int64_t)ns;
}

int64_t device_kernel_ns(const device_spec *d, const device_kernel *k)
{
    return (int64_t)llround(1e9 * device_kernel_seconds(d, k));
}
