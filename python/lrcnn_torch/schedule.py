"""schedule.py - reading a schedule written by `lrcnn-sim --emit-schedule FILE.json`.

The file's schema is docs/schedule-format.md. This module checks the format and version, turns
the field-list rows into records with one attribute per field, and refuses what it does not know
(a newer version, a field, an op, a pass or a flag this reader has no meaning for), naming the
file and the JSON path, so that a runner never executes a schedule it would misread.

Deliberately not here: executing the schedule (runner.py), torch (this module needs only json).
"""

import json
import keyword

FORMAT = "lrcnn-schedule"
VERSIONS = (1, 2, 3)

TENSOR_FIELDS = ("node", "part", "row_lo", "row_hi", "class", "kind", "tier", "bytes")
TIERS = ("device", "host")


def tensor_fields(version):
    """The tensor fields of a file version (version 3 added `tier`)."""
    return TENSOR_FIELDS if version >= 3 else tuple(f for f in TENSOR_FIELDS if f != "tier")
STEP_FIELDS = ("op", "pass", "flags", "accumulate", "node", "part", "stage", "row_lo",
               "row_hi", "t", "src", "run", "flops")
RUN_FIELDS = ("in", "din", "out", "dout", "param", "param_grad", "opt_state", "running", "aux",
              "gred", "own_lo", "own_hi", "labels", "loss", "workspace")
OPS = ("ALLOC", "FREE", "RUN", "COPY")
PASSES = ("FWD", "BWD", "RECOMPUTE", "UPDATE", "STATS", "GSTATS")
FLAGS = ("NO_WGRAD", "BN_STRIPE", "BN_GLOBAL", "BN_PARTIAL", "FINALIZE", "STATS_ACC",
         "GSTATS_ACC", "BN_FROZEN", "ROW_SUM")
NODE_OPS = ("input", "conv", "relu", "maxpool", "avgpool", "adaptive_avgpool", "global_avgpool",
            "batchnorm", "add", "concat", "upsample", "flatten", "fc", "dropout", "softmax_xent")


class ScheduleError(ValueError):
    """A schedule file this reader refuses; the message names the file and the JSON path."""


class Record:
    """One row of a table, with an attribute per field (`in` and `pass` are spelled `in_` and
    `pass_`)."""

    __slots__ = ("__dict__",)

    def __init__(self, fields, row):
        for name, value in zip(fields, row):
            setattr(self, name + "_" if keyword.iskeyword(name) else name, value)

    def __repr__(self):
        return "Record(%s)" % ", ".join("%s=%r" % kv for kv in self.__dict__.items())


class Node:
    """A network node: name, op, inputs (node indices), out shape (C, H, W), params, and the op's
    parameters as the file gives them (kernel, stride, pad, dilation: [h, w] pairs)."""

    def __init__(self, index, d):
        self.index = index
        self.name = d["name"]
        self.op = d["op"]
        self.inputs = list(d["inputs"])
        self.c, self.h, self.w = d["out"]
        self.params = d["params"]
        self.attrs = {k: v for k, v in d.items()
                      if k not in ("name", "op", "inputs", "out", "params")}

    def __getattr__(self, key):
        try:
            return self.__dict__["attrs"][key]
        except KeyError:
            raise AttributeError("node %s (%s) has no %r" % (self.name, self.op, key)) from None


class Schedule:
    """A parsed schedule: net (name, nodes), config, plan, prediction, tensors, steps, runs,
    step_begin, step_end. Flags are tested with `step.flags & sched.flag["BN_GLOBAL"]`."""

    def __init__(self, doc, origin):
        self.origin = origin
        self.doc = doc
        self.version = doc["version"]
        self.net_name = doc["net"]["name"]
        self.nodes = [Node(i, d) for i, d in enumerate(doc["net"]["nodes"])]
        self.config = doc["config"]
        self.plan = doc["plan"]
        self.prediction = doc["prediction"]
        self.flag = dict(doc["enums"]["flags"])
        self.step_begin = doc["step_begin"]
        self.step_end = doc["step_end"]
        self.tensors = [Record(doc["tensor_fields"], r) for r in doc["tensors"]]
        for t in self.tensors:
            if not hasattr(t, "tier"):  # versions 1 and 2: every tensor on the device
                t.tier = "device"
        self.steps = [Record(doc["step_fields"], r) for r in doc["steps"]]
        self.runs = [Record(doc["run_fields"], r) for r in doc["runs"]]

    @property
    def batch(self):
        return self.config["batch"]

    @property
    def optimizer(self):
        return self.config["optimizer"]

    @property
    def approximate(self):
        return self.plan["approximate"]

    @property
    def predicted_peak_bytes(self):
        return self.prediction["peak_bytes"]

    def describe(self):
        """'tiny-vgg 2ps (rows 3), batch 4, momentum, bn exact'"""
        rows = ",".join(str(s["parts"]) for s in self.plan["stages"]) or "-"
        return "%s %s (rows %s), batch %d, %s, bn %s" % (
            self.net_name, self.plan["strategy"], rows, self.batch, self.optimizer,
            self.config["bn"])


def _fail(origin, path, msg):
    raise ScheduleError("%s: %s: %s" % (origin, path, msg))


def _check_fields(doc, origin, key, known):
    fields = doc.get(key)
    if not isinstance(fields, list):
        _fail(origin, key, "expected a list of field names")
    unknown = [f for f in fields if f not in known]
    if unknown:
        _fail(origin, key, "field %r is not known to this reader (it knows %s)"
              % (unknown[0], ", ".join(known)))
    missing = [f for f in known if f not in fields]
    if missing:
        _fail(origin, key, "field %r is missing" % missing[0])


def _check_names(doc, origin):
    enums = doc.get("enums", {})
    for key, known in (("op", OPS), ("pass", PASSES), ("tier", TIERS)):
        unknown = [n for n in enums.get(key, []) if n not in known]
        if unknown:
            _fail(origin, "enums." + key, "%r is not known to this reader" % unknown[0])
    unknown = [n for n in enums.get("flags", {}) if n not in FLAGS]
    if unknown:
        _fail(origin, "enums.flags", "%r is not known to this reader" % unknown[0])
    for i, node in enumerate(doc["net"]["nodes"]):
        if node.get("op") not in NODE_OPS:
            _fail(origin, "net.nodes[%d].op" % i, "%r is not known to this reader" % node.get("op"))


def _check_rows(doc, origin, key, n_fields):
    rows = doc.get(key)
    if not isinstance(rows, list):
        _fail(origin, key, "expected a list of rows")
    for i, r in enumerate(rows):
        if not isinstance(r, list) or len(r) != n_fields:
            _fail(origin, "%s[%d]" % (key, i), "expected a row of %d values" % n_fields)


def parse(text, origin="<schedule>"):
    """A Schedule from the JSON text; ScheduleError naming `origin` and the JSON path."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise ScheduleError("%s: line %d column %d: %s" % (origin, e.lineno, e.colno, e.msg)) from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        _fail(origin, "format", "not an lrcnn schedule (expected \"format\": \"%s\")" % FORMAT)
    if doc.get("version") not in VERSIONS:
        _fail(origin, "version", "version %r is not supported (this reader knows %s)"
              % (doc.get("version"), ", ".join(map(str, VERSIONS))))
    for key in ("net", "config", "plan", "prediction", "enums", "step_begin", "step_end"):
        if key not in doc:
            _fail(origin, key, "missing")
    _check_fields(doc, origin, "tensor_fields", tensor_fields(doc["version"]))
    _check_fields(doc, origin, "step_fields", STEP_FIELDS)
    _check_fields(doc, origin, "run_fields", RUN_FIELDS)
    _check_names(doc, origin)
    _check_rows(doc, origin, "tensors", len(tensor_fields(doc["version"])))
    _check_rows(doc, origin, "steps", len(STEP_FIELDS))
    _check_rows(doc, origin, "runs", len(RUN_FIELDS))
    return Schedule(doc, origin)


def load(path):
    """Reads and checks a schedule file (see parse)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ScheduleError("%s: %s" % (path, e.strerror)) from None
    return parse(text, path)
