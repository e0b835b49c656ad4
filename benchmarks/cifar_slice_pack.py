"""A slice of the CIFAR-10 JPEG pack small enough to carry to a GPU machine, and its unpacking.

The shared pack (`cifar10_jpeg_q75.npz`: all 60,000 images, 56 MB) no longer fits beside the
checkout in what a device run carries (64 MiB in all, the tracked tree about 42 MiB of it). A
grid slice needs far less: every test image, and the training images its tasks draw for its seeds
(a class-balanced draw from all 50,000 that depends on the labels, the subset size and the seed
only: `Cifar10Task.split_indices`). `make` writes those into `cifar10_slice.npz` with every
label; `unpack` writes CIFAR-10's python layout from it, zeros in place of the images it lacks
and `present_train.npy` beside the batches, so that a task drawing an image the slice lacks fails
with the reason instead of training on zeros (tasks/cifar10.py). Pixels are decoded as the pack's
own unpack.py decodes them (torchvision.io.decode_jpeg), so a cell sees the same images as from
the full pack.

    python benchmarks/cifar_slice_pack.py make PACK_DIR/cifar10_jpeg_q75.npz .cifar \\
        --tasks 'cifar10_1k_*,lila_cifar10_*_1k_*' --seeds 0,1,2
    python benchmarks/cifar_slice_pack.py unpack .cifar/cifar10_slice.npz DATA_DIR
"""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path

import numpy as np

SLICE_FILE = "cifar10_slice.npz"
PRESENT_FILE = "present_train.npy"  # tasks/cifar10_data.py reads it (PRESENT_FILE there)
SLICE_INFO = "slice.txt"  # tasks=..., seeds=...: what benchmarks/gpu_reference.sh runs from it


def drawn_indices(
    labels: np.ndarray, tasks: str, seeds: list[int], suite: str
) -> tuple[list[str], np.ndarray]:
    """The tasks of `suite` matching `tasks` and the training images they draw (sorted)."""
    import torch

    from hgbench.contracts.suites import SUITES
    from hgbench.contracts.task import TASKS
    from hgbench.engine.plugins import load_plugins
    from hgbench.tasks.cifar10 import Cifar10Task

    load_plugins()
    names = set(TASKS.names([p.strip() for p in tasks.split(",") if p.strip()]))
    chosen = [n for n in SUITES[suite].task_names() if n in names]
    if not chosen or not all(isinstance(TASKS[n], Cifar10Task) for n in chosen):
        raise SystemExit(f"{tasks!r} names no CIFAR-10 task of suite {suite!r}")
    y = torch.from_numpy(labels.astype(np.int64))
    keep: set[int] = set()
    for name in chosen:
        for seed in seeds:
            train, val = TASKS[name].split_indices(y, seed)
            keep.update(train.tolist(), val.tolist())
    return chosen, np.array(sorted(keep), dtype=np.int64)


def make(source: Path, out: Path, tasks: str, seeds: list[int], suite: str) -> Path:
    pack = np.load(source)
    names, idx = drawn_indices(pack["train_labels"], tasks, seeds, suite)
    data, offsets = pack["train_jpeg"], pack["train_offsets"]
    blobs = [data[offsets[i] : offsets[i + 1]] for i in idx]
    sizes = np.array([len(b) for b in blobs], dtype=np.int64)
    out.mkdir(parents=True, exist_ok=True)
    path = out / SLICE_FILE
    np.savez(
        path,
        train_jpeg=np.concatenate(blobs),
        train_offsets=np.concatenate([[0], np.cumsum(sizes)]),
        train_index=idx,
        train_labels=pack["train_labels"],  # every label: the draw reads all 50,000
        test_jpeg=pack["test_jpeg"],
        test_offsets=pack["test_offsets"],
        test_labels=pack["test_labels"],
        label_names=pack["label_names"],
        tasks=np.array(names),
        seeds=np.array(seeds, dtype=np.int64),
    )
    print(
        f"wrote {path}: {len(idx)} of {len(pack['train_labels'])} training images "
        f"({len(names)} tasks x seeds {','.join(map(str, seeds))}), every test image; "
        f"{path.stat().st_size / 2**20:.1f} MiB"
    )
    return path


def _decode(data: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    import torch
    from torchvision.io import decode_jpeg

    blobs = [
        torch.frombuffer(bytearray(data[a:b].tobytes()), dtype=torch.uint8)
        for a, b in zip(offsets[:-1], offsets[1:], strict=True)
    ]
    return torch.stack(decode_jpeg(blobs)).reshape(len(blobs), -1).numpy()  # (n, 3072)


def _dump(path: Path, name: str, labels: np.ndarray, data: np.ndarray) -> None:
    batch = {b"batch_label": name.encode(), b"labels": labels.tolist(), b"data": data}
    with open(path / name, "wb") as f:
        pickle.dump(batch, f, protocol=4)


def unpack(slice_path: Path, out: Path) -> Path:
    """CIFAR-10's python layout (as the pack's unpack.py writes it) from a slice."""
    pack = np.load(slice_path)
    base = out / "cifar-10-batches-py"
    base.mkdir(parents=True, exist_ok=True)
    labels = pack["train_labels"]
    train = np.zeros((len(labels), 3072), dtype=np.uint8)
    train[pack["train_index"]] = _decode(pack["train_jpeg"], pack["train_offsets"])
    for b, part in enumerate(np.array_split(np.arange(len(labels)), 5), 1):
        _dump(base, f"data_batch_{b}", labels[part], train[part])
    _dump(base, "test_batch", pack["test_labels"], _decode(pack["test_jpeg"], pack["test_offsets"]))
    names = [str(n).encode() for n in pack["label_names"]]
    with open(base / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": names, b"num_cases_per_batch": 10000, b"num_vis": 3072}, f)
    np.save(base / PRESENT_FILE, pack["train_index"])
    tasks, seeds = [str(t) for t in pack["tasks"]], [int(s) for s in pack["seeds"]]
    (out / SLICE_INFO).write_text(f"tasks={','.join(tasks)}\nseeds={','.join(map(str, seeds))}\n")
    print(f"unpacked {slice_path} into {base}: {len(pack['train_index'])} training images")
    return base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("make", help="write OUT/cifar10_slice.npz from the shared pack")
    m.add_argument("source", type=Path)
    m.add_argument("out", type=Path)
    m.add_argument("--tasks", required=True, help="task-name patterns, comma-separated")
    m.add_argument("--seeds", default="0,1,2")
    m.add_argument("--suite", default="cifar10", help="the suite whose tasks the slice serves")
    u = sub.add_parser("unpack", help="write CIFAR-10's python layout from a slice")
    u.add_argument("slice", type=Path)
    u.add_argument("out", type=Path)
    args = parser.parse_args()
    if args.command == "make":
        seeds = [int(s) for s in args.seeds.split(",")]
        make(args.source, args.out, args.tasks, seeds, args.suite)
    else:
        unpack(args.slice, args.out)


if __name__ == "__main__":
    main()
