"""data.py - Fashion-MNIST from its idx files (Debian's dataset-fashion-mnist installs them in
/usr/share/datasets/fashion-mnist), normalised as lrcnn-validate does: (x / 255 - 0.2860) / 0.3530.

Deliberately not here: augmentation, other datasets.
"""

import gzip
import os
import struct

import torch

DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"
MEAN, STD = 0.2860, 0.3530


def _read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        raise ValueError("%s: not an idx file of unsigned bytes" % path)
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    body = data[4 + 4 * ndim:]
    count = 1
    for d in dims:
        count *= d
    if len(body) != count:
        raise ValueError("%s: %d bytes of data, the header says %d" % (path, len(body), count))
    return torch.frombuffer(bytearray(body), dtype=torch.uint8).view(*dims)


def _find(directory, stem):
    for name in (stem + ".gz", stem):
        path = os.path.join(directory, name)
        if os.path.exists(path):
            return path
    raise FileNotFoundError("%s: no %s(.gz) (Debian: apt-get install dataset-fashion-mnist)"
                            % (directory, stem))


def load(split, directory=DEFAULT_DIR, limit=None):
    """(images (N, 1, 28, 28) float32 normalised, labels (N) int64) of split 'train' or 'test'."""
    prefix = "train" if split == "train" else "t10k"
    images = _read_idx(_find(directory, prefix + "-images-idx3-ubyte"))
    labels = _read_idx(_find(directory, prefix + "-labels-idx1-ubyte"))
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    x = (images.float().unsqueeze(1) / 255.0 - MEAN) / STD
    return x, labels.long()
