"""A slice of the CIFAR-10 JPEG pack: only the images some cells use, at their original indices.

What travels to a lent GPU machine is capped (64 MiB with the checkout, which holds ~50 MB of
reference reports), and the whole pack is 56 MB. A cell's images are chosen from the labels
alone (CifarTask.split_indices: the class-balanced train/validation split of its subset and
seed, the shared test subset), so a pack that keeps every label but only the JPEG bytes of the
images the chosen cells use gives those cells exactly the data the whole pack would:

    python -m hgbench.tasks.cifar10_slice make PACK.npz OUT_DIR --tasks 'cifar10_1k_*' \\
        --seeds 0,1,2 [--set task.n_test=1000]
    python -m hgbench.tasks.cifar10_slice unpack OUT_DIR/cifar10_slice.npz DATA_DIR

`unpack` writes CIFAR-10's python layout (DATA_DIR/cifar-10-batches-py/), the images the slice
lacks as zeros, and `slice.json` beside the batches: the indices present and the cells covered.
A CIFAR task reading such a folder checks that every image its cell uses is present
(`check_slice`) and otherwise stops with DataUnavailableError, so a cell outside the slice can
never train on the zero images.
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import functools
import json
import pickle
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from hgbench.contracts.errors import DataUnavailableError

SLICE_NPZ = "cifar10_slice.npz"
SLICE_FILE = "slice.json"
SPLITS = ("train", "test")  # the pack's two sets; validation images come from `train`


@functools.cache
def _present(folder: Path) -> dict[str, frozenset[int]] | None:
    path = folder / SLICE_FILE
    if not path.exists():
        return None
    found = json.loads(path.read_text())
    return {s: frozenset(found[s]) for s in SPLITS} | {"covers": found.get("covers", [])}


def _short(covers: list[str]) -> str:
    return ", ".join(covers[:3]) + (f" and {len(covers) - 3} more" if len(covers) > 3 else "")


def check_slice(root: Path, indices: dict[str, Tensor], cell: str) -> None:
    """Where `root` holds an unpacked slice, every image of `indices` must be in it."""
    from hgbench.tasks.cifar10_data import find_layout

    layout = find_layout(root)
    present = None if layout is None else _present(layout[1])
    if present is None:
        return
    for split, idx in indices.items():
        have = present["test" if split == "test" else "train"]
        missing = [int(i) for i in idx if int(i) not in have]
        if missing:
            raise DataUnavailableError(
                f"{cell}: {layout[1]} holds a slice of CIFAR-10 that lacks {len(missing)} of its "
                f"{len(idx)} {split} images (it covers {_short(present['covers'])}); make a slice "
                "for this cell (python -m hgbench.tasks.cifar10_slice make) or use the whole pack"
            )


def needed(tasks: list[str], seeds: list[int], sets: dict[str, str], pack) -> dict[str, set]:
    """The indices of every image the cells (task × seed) use, per set of the pack."""
    from hgbench.contracts.task import TASKS
    from hgbench.engine.plugins import load_plugins

    load_plugins()
    train_y = torch.as_tensor(pack["train_labels"].astype(np.int64))
    test_y = torch.as_tensor(pack["test_labels"].astype(np.int64))
    out: dict[str, set] = {s: set() for s in SPLITS}
    for name in tasks:
        task = TASKS[name]
        changes = {k: type(getattr(task, k))(v) if getattr(task, k) is not None else int(v)
                   for k, v in sets.items()}  # fmt: skip
        task = dataclasses.replace(task, **changes)
        for seed in seeds:
            idx = task.split_indices(train_y, test_y, seed)
            out["train"] |= {int(i) for i in torch.cat([idx["train"], idx["val"]])}
            out["test"] |= {int(i) for i in idx["test"]}
    return out


def make(pack_path: Path, out: Path, tasks: list[str], seeds: list[int], sets: dict[str, str]):
    pack = np.load(pack_path)
    keep = needed(tasks, seeds, sets, pack)
    arrays: dict[str, np.ndarray] = {}
    for split in SPLITS:
        data, offsets = pack[f"{split}_jpeg"], pack[f"{split}_offsets"]
        n = len(offsets) - 1
        sizes = np.zeros(n, dtype=np.int64)
        blobs = []
        for i in sorted(keep[split]):
            sizes[i] = offsets[i + 1] - offsets[i]
            blobs.append(data[offsets[i] : offsets[i + 1]])
        arrays[f"{split}_jpeg"] = np.concatenate(blobs) if blobs else np.zeros(0, np.uint8)
        arrays[f"{split}_offsets"] = np.concatenate([[0], np.cumsum(sizes)])
        arrays[f"{split}_labels"] = pack[f"{split}_labels"]
    arrays["label_names"] = pack["label_names"]
    covers = [f"{t} seed {s}" + "".join(f" {k}={v}" for k, v in sets.items())
              for t in tasks for s in seeds]  # fmt: skip
    arrays["covers"] = np.array(json.dumps(covers))
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / SLICE_NPZ, **arrays)
    size = (out / SLICE_NPZ).stat().st_size / 2**20
    print(f"{out / SLICE_NPZ}: train {len(keep['train'])}, test {len(keep['test'])} images, "
          f"{size:.1f} MiB, covering {len(covers)} (task, seed)")  # fmt: skip


def unpack(slice_path: Path, dest: Path) -> None:
    from torchvision.io import decode_jpeg

    pack = np.load(slice_path)
    base = dest / "cifar-10-batches-py"
    base.mkdir(parents=True, exist_ok=True)
    present = {}
    for split in SPLITS:
        data, offsets = pack[f"{split}_jpeg"], pack[f"{split}_offsets"]
        n = len(offsets) - 1
        idx = [i for i in range(n) if offsets[i + 1] > offsets[i]]
        images = np.zeros((n, 3 * 32 * 32), dtype=np.uint8)  # absent images: zeros, never read
        if idx:
            raw = [bytearray(data[offsets[i] : offsets[i + 1]]) for i in idx]
            blobs = [torch.frombuffer(b, dtype=torch.uint8) for b in raw]
            with warnings.catch_warnings():  # torchvision 0.29: torchcodec will take decoding over
                warnings.filterwarnings("ignore", "The image decoding", DeprecationWarning)
                decoded = decode_jpeg(blobs)
            images[idx] = torch.stack(decoded).reshape(len(idx), -1).numpy()
        labels = pack[f"{split}_labels"].tolist()
        files = ["test_batch"] if split == "test" else [f"data_batch_{b}" for b in range(1, 6)]
        for part, name in zip(np.array_split(np.arange(n), len(files)), files, strict=True):
            batch = {b"batch_label": name.encode(), b"labels": [labels[j] for j in part],
                     b"data": images[part]}  # fmt: skip
            (base / name).write_bytes(pickle.dumps(batch, protocol=4))
        present[split] = idx
    names = [str(x).encode() for x in pack["label_names"]]
    meta = {b"label_names": names, b"num_cases_per_batch": 10000, b"num_vis": 3072}
    (base / "batches.meta").write_bytes(pickle.dumps(meta, protocol=4))
    covers = json.loads(str(pack["covers"]))
    (base / SLICE_FILE).write_text(json.dumps({**present, "covers": covers}))
    print(f"unpacked {slice_path} into {base}: train {len(present['train'])}, "
          f"test {len(present['test'])} images present")  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("make", help="a slice of the pack for some cells")
    m.add_argument("pack", type=Path)
    m.add_argument("out", type=Path)
    m.add_argument("--tasks", required=True, help="comma-separated names or patterns")
    m.add_argument("--seeds", default="0,1,2")
    m.add_argument("--set", dest="sets", action="append", default=[], help="task.FIELD=V")
    u = sub.add_parser("unpack", help="a slice into CIFAR-10's python layout")
    u.add_argument("slice", type=Path)
    u.add_argument("dest", type=Path)
    args = parser.parse_args(argv)
    if args.command == "unpack":
        unpack(args.slice, args.dest)
        return
    from hgbench.contracts.task import TASKS
    from hgbench.engine.plugins import load_plugins

    load_plugins()
    patterns = args.tasks.split(",")
    tasks = [t for t in TASKS.names() if any(fnmatch.fnmatchcase(t, p) for p in patterns)]
    if not tasks:
        raise SystemExit(f"no task matches {args.tasks!r}")
    sets = {}
    for item in args.sets:
        key, _, value = item.partition("=")
        if not key.startswith("task.") or not value:
            raise SystemExit(f"--set {item!r}: expected task.FIELD=VALUE")
        sets[key.removeprefix("task.")] = value
    seeds = [int(s) for s in args.seeds.split(",")]
    make(args.pack, args.out, tasks, seeds, sets)


if __name__ == "__main__":
    main()
