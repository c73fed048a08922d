"""lrcnn_torch - run an lrcnn plan in PyTorch.

    $ lrcnn-sim --net tiny-vgg --batch 32 --strategy 2ps --emit-schedule plan.json
    >>> import lrcnn_torch
    >>> sched = lrcnn_torch.load("plan.json")
    >>> runner = lrcnn_torch.Runner(sched, device="cpu", lr=1e-3)
    >>> loss = runner.step(images, labels)          # one training step, row by row
    >>> runner.counted_peak_bytes == sched.predicted_peak_bytes
    True

Modules: schedule (reading the file), runner (executing it), ops (the row-range kernels),
names (torchvision state_dict names), reference (the same net in plain PyTorch autograd),
check (`python -m lrcnn_torch.check PLAN.json`), data (Fashion-MNIST), train
(`python -m lrcnn_torch.train PLAN.json`). torch is the only dependency.
"""

from .schedule import Schedule, ScheduleError, load, parse
from .runner import Runner, RunnerError

__all__ = ["Schedule", "ScheduleError", "load", "parse", "Runner", "RunnerError"]
