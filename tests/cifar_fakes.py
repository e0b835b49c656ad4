"""Small files in CIFAR-10's own python-pickle format, for the tests (no real data needed).

The writer produces exactly what the official `cifar-10-batches-py/` folder holds (protocol-2
pickles whose byte strings are Python 2 `str`), so the loader is tested on the format itself.
"""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np

from hgbench.tasks.cifar10_data import (
    CIFAR10_CLASSES,
    META_FILE,
    PICKLE_DIRNAME,
    TEST_BATCH,
    TRAIN_BATCHES,
)


def write_fake_cifar_pickles(root: Path, n_train_per_batch: int, n_test: int, seed: int) -> Path:
    """Write random images in CIFAR-10's exact python-pickle format; return the batches folder.

    Creates `root/cifar-10-batches-py/` with five training batches of `n_train_per_batch` images,
    a test batch of `n_test`, and `batches.meta`. Labels cycle over the 10 classes.
    """
    folder = Path(root) / PICKLE_DIRNAME
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    batches = [
        (name, n_train_per_batch, f"training batch {i + 1} of 5")
        for i, name in enumerate(TRAIN_BATCHES)
    ]
    batches.append((TEST_BATCH, n_test, "testing batch 1 of 1"))
    for name, n, batch_label in batches:
        write_pickle(
            folder / name,
            {
                b"batch_label": batch_label.encode(),
                b"labels": [j % 10 for j in range(n)],
                b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),  # (n, 3*32*32)
                b"filenames": [f"fake_{name}_{j:05d}.png".encode() for j in range(n)],
            },
        )
    meta = {
        b"label_names": [c.encode() for c in CIFAR10_CLASSES],
        b"num_cases_per_batch": n_train_per_batch,
        b"num_vis": 3072,
    }
    write_pickle(folder / META_FILE, meta)
    return folder


class _Python2Pickler(pickle._Pickler):
    """Protocol-2 pickler that writes `bytes` as Python 2 `str`, as the official files hold them.

    Python 3 would write bytes as `_codecs.encode(...)` calls, which read back as bytes under any
    encoding; Python 2 strings read back as bytes under encoding="bytes" and as str under
    encoding="latin1" (torchvision's reader), and the fakes must behave like the real files.
    """

    dispatch = pickle._Pickler.dispatch.copy()

    def save_python2_str(self, obj: bytes) -> None:
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_python2_str


def write_pickle(path: Path, obj: dict) -> None:
    """`obj` pickled as the official batches are (protocol 2, bytes as Python 2 str)."""
    with path.open("wb") as f:
        _Python2Pickler(f, protocol=2).dump(obj)
