/* validate.h - lrcnn-validate: run a strategy's schedule on a backend beside column training
 * from the same weights and batches; report predicted vs measured memory, loss and gradient
 * agreement, step times, and (when training) the loss curve and test accuracy.
 * Deliberately not here: the interpreter (exec.c), kernels, the flag table (validate_main.c).
 */
#ifndef LR_VALIDATE_H
#define LR_VALIDATE_H

#include <stdio.h>

#include "data.h"
#include "exec.h"
#include "strategy.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    const char *net;
    const char *backend; /* "cpu", "cuda" or "cuda-emulated" (the CUDA glue on the CPU) */
    plan_config cfg;
    plan_request req;
    int in_h, in_w;
    int steps;           /* step mode: training steps on synthetic or dataset batches */
    bool check_grads;
    const char *data;    /* NULL/"synthetic" or "fashion-mnist" */
    const char *data_dir;
    int epochs, train_limit, test_limit;
    bool column;         /* also run column training for comparison (default true) */
    bool deterministic;
    bool dry_run;        /* plan as the run would (workspace included), run nothing */
    bool json, quiet;
    int threads;         /* OpenMP threads of the CPU kernels, both runs (0: every core) */
    bool profile;        /* step mode, cpu and cuda-emulated backends: kernel time by op and pass */
    exec_hparams hp;
} validate_options;

typedef struct {
    int64_t predicted_peak_bytes; /* closed form */
    int64_t sim_peak_bytes;       /* replay (exact) */
    int64_t measured_peak_bytes;  /* counted by the executor */
    int64_t arena_bytes;
    /* host memory (--offload input): predicted (closed form), replayed and counted; and the
     * bytes one step copies from host to device, predicted and replayed */
    int64_t predicted_host_bytes, sim_host_bytes, measured_host_bytes;
    int64_t predicted_copy_bytes, sim_copy_bytes;
    unsigned offload;             /* the OFFLOAD_* set the plan runs (--offload auto: its choice) */
    int64_t workspace_bytes;      /* the planned workspace tensor (CUDA: staging + algorithms;
                                     CPU: convolution scratch per thread), part of the prediction */
    /* CUDA device memory (cudaMemGetInfo, device-wide), for the strategy being validated:
     * peak = its arena + extra, extra = the highest in use after the warm-up step (the first of
     * several) minus what was in use then; without a warm-up step (one step, training) extra is
     * measured from the context and includes what loads lazily. -1 on the CPU. */
    int64_t device_peak_bytes, device_extra_bytes;
    int64_t device_baseline_bytes; /* in use after context creation */
    int64_t device_lazy_bytes;     /* loaded by the warm-up step beyond the arenas; -1: unknown */
    bool device_warm;              /* extra measured after a warm-up step */
    bool device_shared_with_column; /* the column run's arena and transients were on it too */
    char device_processes[256];    /* other processes on the device (nvidia-smi), or why unknown */
    int64_t packed_calls;          /* CUDA: convolution calls run packed (cuda_conv.cu) */
    int64_t column_predicted_peak_bytes, column_measured_peak_bytes;
    float loss, column_loss;
    double grad_max_rel_err;        /* max |a - b| over the tensor's largest |gradient|, the
                                       largest over the tensors */
    char grad_worst[96];            /* its layer */
    double grad_worst_share;        /* that tensor's largest |gradient| over the net's */
    double grad_max_net_err;        /* max |a - b| over the net's largest |gradient|: a tensor
                                       whose gradients cancel to rounding (zero in exact
                                       arithmetic) has a large relative error and a small one here */
    double running_max_rel_err;
    double step_ms, column_step_ms; /* medians */
    /* the planner's step against column's: FLOPs, and (cpu backend: time_model "cpu", else
     * time_model NULL and 0) its time model's step time */
    double predicted_flops_ratio, predicted_time_ratio;
    const char *time_model;
    int rows;
    char stages[1024];              /* the plan's stages, "last layer/rows" each, e.g.
                                       "pool2/8 pool3/6 pool5/1"; "" for column */
    int in_h, in_w;                 /* the input size run */
    int threads;                    /* the OpenMP threads the kernels ran with */
    const char *threads_wait;       /* how they waited between calls: "spin" or "sleep"
                                       (waiting.h) */
    int threads_spins;              /* spinning: GOMP_SPINCOUNT's count (-1: libgomp's own) */
    char host_cpu[320];             /* the CPU's model name, x86 family/model/stepping */
    char cpu_gemm[96];              /* the CPU kernels' GEMM and its kernel set (cpu_ops.h) */
    bool approximate;
    int n_curve;
    double *loss_curve, *column_loss_curve; /* per epoch (training) or per step */
    double test_accuracy, column_test_accuracy; /* -1 when not training */
    double train_seconds, column_train_seconds;
    /* --profile: the timed steps' kernel calls (the first step skipped when the median skips
     * it), of the strategy and of column (NULL without a column run) */
    exec_profile *profile, *column_profile;
    int profile_steps;
} validate_result;

void validate_options_init(validate_options *o);

/* Exposed for tests: "pid 123 (512 MiB), ..." for the processes other than `self` in nvidia-smi
 * --query-compute-apps=gpu_bus_id,pid,used_memory --format=csv,noheader,nounits output `csv`
 * that run on the device with PCI bus id `bus` (domain and case ignored); "none" if none. */
void validate_other_processes(const char *csv, const char *bus, long self, char *out, size_t cap);
lr_status validate_run(const validate_options *o, validate_result *r);
void validate_result_free(validate_result *r);
void validate_print(FILE *f, const validate_options *o, const validate_result *r);
void validate_print_json(FILE *f, const validate_options *o, const validate_result *r);

/* Backend lookup: "cpu" always; "cuda" when built with CUDA and a device is present
 * (LR_ERR_NODEVICE otherwise, with the reason); "cuda-emulated" when built with CUDA: the CUDA
 * backend's glue with host memory and reference loops (cuda_backend_create_emulated), for
 * checking invocations on a machine without a GPU. */
lr_status validate_backend(const char *name, bool deterministic, const exec_backend **be,
                           void **ctx);
void validate_backend_release(const char *name, void *ctx);

#ifdef __cplusplus
}
#endif
#endif
