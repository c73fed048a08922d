/* lrcnn_sim.c - main() of lrcnn-sim: parse flags, load the network, plan every requested
 * strategy, print tables/JSON, write timelines, traces, sweeps.
 * Deliberately thin: the work is in planner/, sim/ and reports/.
 */
#include <string.h>

#include "args.h"
#include "heap.h"
#include "outfile.h"
#include "sim_cli.h"
#include "summary.h"

static const char *usage_head =
    "usage: lrcnn-sim --net NAME|FILE [options]\n"
    "\n"
    "Predicts the peak memory and compute of one training step of a CNN under column\n"
    "(layer-by-layer) training, checkpointing and the row-centric strategies of LR-CNN.\n"
    "\n"
    "examples:\n"
    "  lrcnn-sim --net vgg16 --batch 256                  all strategies, one line each\n"
    "  lrcnn-sim --net resnet50 --batch 64 --layers       per-layer shapes, receptive fields\n"
    "  lrcnn-sim --net vgg16 --strategy 2ps --rows 6 --json\n"
    "  lrcnn-sim --net vgg16 --sweep rows=2..32 --format csv\n"
    "  lrcnn-sim --net resnet50 --strategy 2ps-h --timeline t.csv --trace t.json\n"
    "  lrcnn-sim --net resnet50 --batch 256 --strategy auto --budget 8GiB\n"
    "  lrcnn-sim --net vgg16 --fit h100-80gb              largest batch and input per strategy\n"
    "  lrcnn-sim --net vgg16 --input 8192x8192 --offload auto   host memory where it pays\n"
    "  lrcnn-sim --net vgg16 --batch 64 --report out/vgg16   plots and report.md\n"
    "  lrcnn-sim --net resnet50 --batch 64 --framework pytorch   what PyTorch would use\n"
    "\n"
    "strategies: column checkpoint row 2ps overl 2ps-h overl-h (default: all), and auto\n"
    "networks:   vgg11 vgg13 vgg16 vgg19 resnet18 resnet34 resnet50 resnet101 alexnet\n"
    "            tiny-vgg tiny-resnet tiny-mix, or a path to a network .json file\n"
    "\n"
    "options:\n";

static const char *usage_tail =
    "\n"
    "In the table, rows marked * were chosen by the planner (lowest peak), a stage's N marked r\n"
    "recomputes its boundary rows (--boundaries); 'peak at' names the\n"
    "pass, layer and partition where the peak happens. Sizes are in binary units (MiB, GiB).\n"
    "--offload auto chooses each plan's offload set among none, input, boundary and\n"
    "input,boundary: under --fit or auto's --budget the least host-device copying whose plan\n"
    "fits (none when it fits without); otherwise the lowest device peak, sets within 1% of it\n"
    "going to the least copying, so a plan offloads only when that saves more than 1%.\n"
    "Exit status: 0 ok, 1 runtime failure, 2 bad usage or bad input.\n";

int main(int argc, char **argv)
{
    heap_keep_freed();
    sim_options o;
    sim_options_init(&o);
    lr_status s = args_parse(sim_flags, argc, argv, &o);
    if (s == LR_OK && o.help) {
        fputs(usage_head, stdout);
        args_print_help(stdout, sim_flags);
        fputs(usage_tail, stdout);
        return 0;
    }
    if (s == LR_OK && o.version) {
        printf("lrcnn-sim %s\n", LRCNN_VERSION);
        return 0;
    }
    if (s == LR_OK)
        s = sim_cli_run(&o);
    sim_options_free(&o);
    if (s != LR_OK) {
        fprintf(stderr, "lrcnn-sim: %s\n", lr_last_error());
        return lr_exit_code(s);
    }
    return 0;
}
