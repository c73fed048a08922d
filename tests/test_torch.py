#!/usr/bin/env python3
"""test_torch.py - the PyTorch runner (python/lrcnn_torch) against PyTorch's own autograd, on
schedules written by `lrcnn-sim --emit-schedule`.

Specification held here:
  - every strategy of tiny-vgg, tiny-resnet, tiny-mix and the test nets tiny-flat, tiny-skip and
    tiny-pad (BatchNorm exact, each net with another optimizer; tiny-resnet and tiny-pad also
    with --bn frozen), of resnet18 at 64x64 and of vgg11 at 224x224 (the smallest input its 7x7
    adaptive pooling allows) equals one column step in plain autograd from the same weights and
    batch: loss within 1e-6 relative, every layer's gradient and updated parameters within 1e-5;
  - the bytes the runner holds at its peak equal the plan's prediction to the byte;
  - stripe BatchNorm is reported approximate and really differs; its memory still matches;
  - state_dict names and shapes are torchvision's for the zoo (golden list from torchvision
    0.14, tests/data/pytorch/torchvision_keys.json), weights round-trip and bad ones are refused;
  - the reader refuses what it cannot read, naming the file and the JSON path, and the check
    command exits 0 / 1 / 2 for agreement / disagreement / bad input.

Usage: LRCNN_BIN=build/bin $(python/torch-python) tests/test_torch.py [--quick] [unittest args]
(make test runs it with the interpreter python/torch-python finds). Prints one line per case
with its figures and the time each group took.
"""

import json
import os
import subprocess
import sys
import tempfile
import time
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))

import torch  # noqa: E402

from lrcnn_torch import ScheduleError, RunnerError, Runner, load, names  # noqa: E402
from lrcnn_torch import check  # noqa: E402

BIN = os.environ.get("LRCNN_BIN", os.path.join(ROOT, "build", "bin"))
SIM = os.path.join(BIN, "lrcnn-sim")
TMP = tempfile.mkdtemp(prefix="lrcnn-torch.")
TINY_FLAT = os.path.join(ROOT, "tests", "data", "nets", "tiny-flat.json")
TINY_SKIP = os.path.join(ROOT, "tests", "data", "nets", "tiny-skip.json")
TINY_CANCEL = os.path.join(ROOT, "tests", "data", "nets", "tiny-cancel.json")
TINY_PAD = os.path.join(ROOT, "tests", "data", "nets", "tiny-pad.json")
STRATEGIES = ("column", "checkpoint", "row", "2ps", "overl", "2ps-h", "overl-h")
TIMES = []
# --quick (make test SANITIZE=1, where only the emitter changes): vgg11 and resnet18 are emitted
# and read but not run; the torch side does not change under the sanitizers
QUICK = "--quick" in sys.argv
if QUICK:
    sys.argv.remove("--quick")
# one thread: OpenMP threads of torch thrash on a machine busy with other builds (measured 7x
# slower with 2 threads at a load of 9 on 2 cores)
torch.set_num_threads(1)


def emit(name, *args):
    """Runs lrcnn-sim --emit-schedule; returns the schedule's path."""
    path = os.path.join(TMP, name + ".json")
    cmd = [SIM, *args, "--emit-schedule", path]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise AssertionError("%s: exit %d: %s" % (" ".join(cmd), r.returncode, r.stderr.strip()))
    return path


def check_strategies(test, net, args, strategies=STRATEGIES, rows=(3,), large=False):
    """Every strategy (at each of `rows` for the row strategies) against one column reference.
    With --quick a large net's schedules are emitted and read but not run."""
    t0 = time.time()
    paths = []
    for st in strategies:
        for n in (rows if st not in ("column", "checkpoint") else (None,)):
            extra = ["--rows", str(n)] if n else []
            label = os.path.splitext(os.path.basename(net))[0]  # a zoo name or a file
            paths.append(emit("%s-%s-%s" % (label, st, n), "--net", net, *args, "--strategy", st, *extra))
    if large and QUICK:
        for path in paths:
            test.assertGreater(len(load(path).steps), 0)
        print("  --quick: %d schedules of %s emitted and read, not run" % (len(paths), net))
        return
    first = load(paths[0])
    weights = check.initial_weights(first)
    batch = check.make_batch(first, 1)
    ref = check.Reference(first, weights, batch)
    for path in paths:
        sched = load(path)
        r = check.compare(sched, ref, weights, batch)
        print("  %-48s loss %.1e  grads %.1e (%s)  update %.1e  peak %d = %d" % (
            sched.describe(), r["loss_rel_diff"], r["grad_max_rel_err"], r["grad_worst"],
            r["update_max_rel_err"], r["counted_peak_bytes"], r["predicted_peak_bytes"]))
        test.assertFalse(r["approximate"], sched.describe())
        test.assertEqual(check.verdict(r, 1e-6, 1e-5), [], sched.describe())
    TIMES.append((net + " " + " ".join(args), len(paths), time.time() - t0))


class Exactness(unittest.TestCase):
    """Row plans in PyTorch train the same network as column training in plain autograd."""

    def test_tiny_vgg_every_strategy_equals_autograd(self):
        check_strategies(self, "tiny-vgg", ["--batch", "4"], rows=(2, 3))

    def test_tiny_resnet_every_strategy_equals_autograd_adam(self):
        check_strategies(self, "tiny-resnet", ["--batch", "3", "--optimizer", "adam"], rows=(3,))

    def test_tiny_resnet_frozen_batchnorm_every_strategy_equals_autograd(self):
        check_strategies(self, "tiny-resnet", ["--batch", "3", "--bn", "frozen"], rows=(3,))

    def test_offloaded_input_every_strategy_equals_autograd(self):
        # the input batch (and boundary rows) in host memory, copied in per partition (host memory counted
        # apart and held to the prediction by check.verdict)
        check_strategies(self, "tiny-mix", ["--batch", "3", "--offload", "input"], rows=(3,))
        check_strategies(self, "tiny-vgg", ["--batch", "2", "--offload", "input,boundary"], rows=(3,))

    def test_tiny_mix_every_strategy_equals_autograd_sgd(self):
        check_strategies(self, "tiny-mix", ["--batch", "3", "--optimizer", "sgd"], rows=(2, 4))

    def test_ops_after_a_flatten_every_strategy_equals_autograd(self):
        # tests/data/nets/tiny-flat.json: a dropout right after the flatten (as in AlexNet), then
        # BatchNorm and relu over the features, which read the flatten's input tensor as a
        # (C*H*W, 1, 1) map
        check_strategies(self, TINY_FLAT, ["--batch", "3"], rows=(2, 3))

    def test_exact_batchnorm_rows_no_op_reads_every_strategy_equals_autograd(self):
        # tests/data/nets/tiny-skip.json: a stride-3 pooling after exact BatchNorm; at N = 7 a 2ps
        # partition holds no row it reads, and its BatchNorm must back-propagate all the same
        check_strategies(self, TINY_SKIP, ["--batch", "3"], rows=(3, 7))

    def test_rows_of_padding_only_every_strategy_equals_autograd(self):
        # tests/data/nets/tiny-pad.json: conv1's first and last output rows read only padding, so
        # a row partition of them has no input rows; exact and frozen BatchNorm
        check_strategies(self, TINY_PAD, ["--batch", "3"], rows=(3, 7))
        check_strategies(self, TINY_PAD, ["--batch", "3", "--bn", "frozen"], rows=(7,))

    def test_gradients_that_cancel_are_held_to_float32_rounding(self):
        # tests/data/nets/tiny-cancel.json: conv2's bias gradients are zero in exact arithmetic
        # (a BatchNorm follows), its weights' nearly so; this 2ps and column's float32 step put
        # them 5.6% of their largest apart, as far as column is from the float64 step
        path = emit("cancel", "--net", TINY_CANCEL, "--batch", "3", "--strategy", "2ps", "--rows", "3")
        r = check.run_check(load(path))
        self.assertGreater(r["grad_max_rel_err"], 1e-3)
        self.assertEqual(r["grad_worst"], "conv2")
        d, m, rounding = r["grad_layers"]["conv2"]
        self.assertGreater(rounding, 0)
        self.assertLessEqual(d, check.ROUNDING_SLACK * rounding)
        self.assertEqual(check.verdict(r, 1e-6, 1e-5), [])
        # the same errors without the float64 measure are disagreements
        r["grad_layers"] = {k: [d, m, None] for k, (d, m, _) in r["grad_layers"].items()}
        self.assertIn("gradients: ", " ".join(check.verdict(r, 1e-6, 1e-5)))
        check_strategies(self, TINY_CANCEL, ["--batch", "3"], rows=(2, 3))

    def test_resnet18_small_input_every_strategy_equals_autograd(self):
        # the row region ends after layer1, as the LR-CNN authors partition only the first,
        # high-resolution layers: exact BatchNorm over the whole network costs 17-33x column's
        # compute for the single-stage strategies (the planner's figure), too slow for a test
        check_strategies(self, "resnet18", ["--batch", "2", "--input", "64x64", "--region",
                                            "layer1_1_relu"], rows=(3,), large=True)

    def test_vgg11_every_strategy_equals_autograd(self):
        # 224x224 is the smallest input vgg11's 7x7 adaptive pooling accepts; SGD keeps the
        # 133M parameters' state small
        check_strategies(self, "vgg11", ["--batch", "1", "--optimizer", "sgd"], rows=(3,), large=True)

    def test_stripe_batchnorm_is_approximate_with_exact_memory(self):
        path = emit("stripe", "--net", "tiny-resnet", "--batch", "3", "--strategy", "2ps",
                    "--rows", "3", "--bn", "stripe")
        r = check.run_check(load(path))
        self.assertTrue(r["approximate"])
        self.assertGreater(r["grad_max_rel_err"], 1e-3)  # per-stripe statistics really differ
        self.assertEqual(r["counted_peak_bytes"], r["predicted_peak_bytes"])
        self.assertEqual(check.verdict(r, 1e-6, 1e-5), [])


class StateDict(unittest.TestCase):
    """Parameters under torchvision's names, loadable both ways."""

    def test_zoo_names_and_shapes_are_torchvision(self):
        with open(os.path.join(ROOT, "tests", "data", "pytorch", "torchvision_keys.json")) as f:
            golden = json.load(f)
        del golden["torchvision"]  # the version that wrote the list
        for net, want in golden.items():
            sched = load(emit("names-" + net, "--net", net, "--strategy", "column"))
            got = {k: list(shape) for k, _, _, shape in names.param_entries(sched)}
            self.assertEqual(got, want, net)

    def test_other_nets_use_layer_names(self):
        sched = load(emit("names-tiny", "--net", "tiny-resnet", "--strategy", "column"))
        keys = [k for k, _, _, _ in names.param_entries(sched)]
        self.assertIn("b2_down.weight", keys)
        self.assertIn("b2_down_bn.running_var", keys)

    def test_weights_round_trip_and_bad_ones_are_refused(self):
        sched = load(emit("rt", "--net", "tiny-resnet", "--batch", "2", "--strategy", "2ps",
                          "--rows", "2"))
        a, b = Runner(sched, seed=1), Runner(sched, seed=2)
        b.load_state_dict(a.state_dict())
        for k, v in a.state_dict().items():
            self.assertTrue(torch.equal(v, b.state_dict()[k]), k)
        sd = a.state_dict()
        sd["conv1.weight"] = sd["conv1.weight"][:4]
        with self.assertRaisesRegex(RunnerError, "conv1.weight has shape"):
            b.load_state_dict(sd)
        sd = a.state_dict()
        del sd["fc.bias"]
        with self.assertRaisesRegex(RunnerError, "missing key fc.bias"):
            b.load_state_dict(sd)

    def test_trained_weights_load_into_torchvision(self):
        try:
            import torchvision
        except ImportError:
            print("  torchvision not installed: names checked against the golden list only")
            return
        sched = load(emit("tv", "--net", "resnet18", "--batch", "2", "--input", "64x64",
                          "--strategy", "2ps", "--rows", "2"))
        runner = Runner(sched)
        images, labels = check.make_batch(sched, 3)
        runner.step(images, labels)
        model = torchvision.models.resnet18(num_classes=1000)
        model.load_state_dict(runner.state_dict(), strict=True)
        ref = check.ColumnNet(sched, init=False)
        ref.load_runner_state_dict(runner.state_dict())
        model.eval(), ref.eval()
        with torch.no_grad():
            self.assertTrue(torch.allclose(model(images), ref.logits(images), rtol=1e-5, atol=1e-5))


class Bench(unittest.TestCase):
    """bench/torch_runner_bench.py, the GPU bench, runs its code path on the CPU."""

    def test_bench_writes_its_table_on_the_cpu(self):
        path = emit("bench", "--net", "tiny-vgg", "--batch", "2", "--strategy", "2ps", "--rows", "2")
        out = os.path.join(TMP, "bench")
        r = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "torch_runner_bench.py"),
                            out, path, "--device", "cpu", "--steps", "1", "--warmup", "0"],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(os.path.join(out, "torch-runner.json")) as f:
            rows = json.load(f)["rows"]
        self.assertEqual([x["strategy"] for x in rows], ["pytorch", "2ps"])
        self.assertEqual(rows[1]["counted_peak_bytes"], rows[1]["predicted_peak_bytes"])


class Reader(unittest.TestCase):
    """Files the reader refuses, naming the file and the JSON path."""

    @classmethod
    def setUpClass(cls):
        with open(emit("reader", "--net", "tiny-vgg", "--strategy", "2ps", "--rows", "2")) as f:
            cls.doc = json.load(f)

    def refused(self, doc, pattern):
        path = os.path.join(TMP, "bad.json")
        with open(path, "w") as f:
            f.write(doc if isinstance(doc, str) else json.dumps(doc))
        with self.assertRaisesRegex(ScheduleError, "^" + path + ": " + pattern):
            load(path)
        return path

    def test_refuses_other_versions_fields_ops_and_text(self):
        self.refused(dict(self.doc, version=99), "version: version 99 is not supported")
        self.refused(dict(self.doc, format="x"), "format: not an lrcnn schedule")
        self.refused(dict(self.doc, tensor_fields=self.doc["tensor_fields"] + ["lane"]),
                     "tensor_fields: field 'lane' is not known")
        fields = [f for f in self.doc["tensor_fields"] if f != "tier"]
        self.refused(dict(self.doc, tensor_fields=fields), "tensor_fields: field 'tier' is missing")
        enums = dict(self.doc["enums"], tier=self.doc["enums"]["tier"] + ["disk"])
        self.refused(dict(self.doc, enums=enums), "enums.tier: 'disk' is not known")
        enums = dict(self.doc["enums"], op=self.doc["enums"]["op"] + ["HOST_COPY"])
        self.refused(dict(self.doc, enums=enums), "enums.op: 'HOST_COPY' is not known")
        self.refused(dict(self.doc, steps=[[1, 2]]), r"steps\[0\]: expected a row of 13 values")
        self.refused(json.dumps(self.doc)[:200], "line 1 column")

    def test_check_exit_codes(self):
        good = emit("cli", "--net", "tiny-vgg", "--batch", "2", "--strategy", "row", "--rows", "2")
        py = [sys.executable, "-m", "lrcnn_torch.check"]
        env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "python"))
        r = subprocess.run(py + [good], capture_output=True, text=True, env=env)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertTrue(r.stdout.rstrip().endswith("ok"), r.stdout)
        with open(good) as f:
            doc = json.load(f)
        doc["prediction"]["peak_bytes"] += 4  # a prediction the runner cannot meet
        wrong = os.path.join(TMP, "wrong.json")
        with open(wrong, "w") as f:
            json.dump(doc, f)
        r = subprocess.run(py + [wrong], capture_output=True, text=True, env=env)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("DISAGREE: memory", r.stdout)
        bad = self.refused(dict(self.doc, version=99), "version")
        r = subprocess.run(py + [bad], capture_output=True, text=True, env=env)
        self.assertEqual(r.returncode, 2)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
        # training BatchNorm on one value per channel (batch 1 after a flatten): refused as bad
        # input, as lrcnn-validate refuses it, instead of a traceback from F.batch_norm
        one = emit("bn-one", "--net", TINY_FLAT, "--batch", "1", "--strategy", "2ps")
        r = subprocess.run(py + [one], capture_output=True, text=True, env=env)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
        self.assertIn("BatchNorm bn: 1 value per channel", r.stderr)


if __name__ == "__main__":
    if not os.access(SIM, os.X_OK):
        print("FAIL  lrcnn-sim not found at %s (set LRCNN_BIN)" % SIM)
        sys.exit(1)
    print("torch %s at %s, %d threads" % (torch.__version__, sys.executable, torch.get_num_threads()))
    result = unittest.main(exit=False, verbosity=2).result
    for what, n, secs in TIMES:
        print("time  %-45s %2d schedules %6.1f s" % (what, n, secs))
    sys.exit(0 if result.wasSuccessful() else 1)
