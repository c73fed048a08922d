/* sim_cli.h - lrcnn-sim's options, flag table and driver (kept out of main so tests and the
 * fuzzer can call them).
 * Deliberately not here: planning and printing themselves (planner/, reports/).
 */
#ifndef LR_SIM_CLI_H
#define LR_SIM_CLI_H

#include "analysis.h"
#include "args.h"
#include "auto.h"
#include "fit.h"
#include "pytorch.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SIM_MAX_SWEEP 4096

typedef struct {
    bool help, version;
    const char *net;
    int batch;
    int in_h, in_w; /* 0: the network's own */
    plan_config cfg;
    plan_request req;
    unsigned strategies; /* bit per plan_strategy; 0: all */
    sim_allocator allocator;
    bool allocator_given;
    bool pytorch;          /* --framework pytorch */
    pytorch_units pt_units; /* --checkpoint-units (pytorch only) */
    bool pt_units_given;
    sim_caching alloc_conf; /* --alloc-conf (pytorch only) */
    bool alloc_conf_given;
    bool layers, json;
    const char *output;    /* --output FILE: stdout text written all or nothing */
    const char *timeline, *trace;
    const char *emit_schedule; /* --emit-schedule FILE.json */
    const char *format;    /* sweeps: table, csv, json */
    int n_rows_sweep, rows_sweep[SIM_MAX_SWEEP];
    int n_batch_sweep, batch_sweep[SIM_MAX_SWEEP];
    const char *region_name;
    const char *report;    /* --report DIR */
    const char *graph;     /* --graph FILE.dot|.svg|.png */
    int64_t gpu_mem_bytes; /* --gpu-mem SIZE: drawn in the report's batch plot */
    bool auto_plan;        /* --strategy ...,auto (not part of "all") */
    auto_request areq;     /* --max-overhead, --budget, --overhead-by (auto only) */
    bool overhead_by_given;
    const device_spec *fit_gpu; /* --fit GPU: the card; NULL for --fit SIZE */
    int64_t fit_bytes;     /* --fit: device memory (0: no --fit) */
    int64_t reserve_bytes; /* --reserve (default FIT_DEFAULT_RESERVE_BYTES) */
    int64_t host_memory_bytes; /* --host-memory: --fit's host limit under --offload (0: none) */
    const char *fit_trace;     /* --fit-trace FILE.csv: every choice and evaluation of --fit */
    bool reserve_given;
} sim_options;

extern const args_flag sim_flags[];

void sim_options_init(sim_options *o);
void sim_options_free(sim_options *o);

/* --framework pytorch (sim_pytorch.c). */
lr_status sim_cli_pytorch(FILE *f, const sim_options *o, const net_t *net);

/* Runs lrcnn-sim with parsed options; prints to stdout (or --output). */
lr_status sim_cli_run(sim_options *o);

#ifdef __cplusplus
}
#endif
#endif
