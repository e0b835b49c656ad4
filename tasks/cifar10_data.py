"""CIFAR-10 loading into uint8 tensors, and class-balanced subsets and splits of it.

Two on-disk layouts are read (see `load_cifar10`); nothing else is guessed. Tasks put the arrays on
their device once and draw batches by indexing, so this module returns whole tensors, not Datasets.
Whatever is wrong with the files (missing, truncated, of the wrong type or shape) ends in one
`DataUnavailableError` naming the file, which the command line prints as one line (exit 2).
"""

from __future__ import annotations

import pickle
import socket
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from hgbench.contracts.errors import DataUnavailableError
from hgbench.contracts.schema import StrEnum
from hgbench.tasks.cifar10_images import IMAGE_SHAPE, decode_images, one_line

CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip
PICKLE_DIRNAME = "cifar-10-batches-py"
TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_BATCH = "test_batch"
META_FILE = "batches.meta"
PICKLE_FILES = (*TRAIN_BATCHES, TEST_BATCH, META_FILE)
# beside the batches of a slice of the training set (benchmarks/cifar_slice_pack.py): the indices
# of the training images it holds; the others are zeros, which no task may draw
PRESENT_FILE = "present_train.npy"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
DOWNLOAD_TIMEOUT_S = 60.0
DOWNLOAD_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"


class Layout(StrEnum):
    """Which on-disk layout the arrays were read from."""

    PICKLE = "pickle"  # the official python batches, cifar-10-batches-py/
    FOLDER = "folder"  # train/<class>/*, test/<class>/* image files


@dataclass(frozen=True)
class CifarArrays:
    """The whole of CIFAR-10 as CPU tensors: images uint8 (N, 3, 32, 32), labels int64 (N,)."""

    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    classes: list[str]
    layout: Layout
    train_present: Tensor | None = None  # bool (N,): which training images a slice holds


def load_cifar10(data_dir: str | Path, download: bool = True) -> CifarArrays:
    """Read CIFAR-10 from `data_dir`, downloading the official batches first if allowed and absent.

    Accepted layouts, checked in this order:
    1. the official python-pickle batches in `data_dir/cifar-10-batches-py/` (or `data_dir` itself
       being that folder): `data_batch_1` .. `data_batch_5`, `test_batch`, `batches.meta`;
    2. image folders `data_dir/train/<class>/*` and `data_dir/test/<class>/*` (PNG or JPEG, 32x32),
       classes sorted by name as torchvision's ImageFolder does. Images come class by class, each
       class sorted by file name; except where every file name of a split is a distinct number
       (as the JPEG copy of CIFAR-10 names them: the image's index in the original order), which
       puts the split in that numeric order, image for image the order of the python batches.
    Without either, `download=True` tries torchvision's downloader (which writes layout 1) and
    `download=False` does not; both end in `DataUnavailableError` if the data is still missing.
    """
    root = Path(data_dir).expanduser().resolve()
    found = find_layout(root)
    if found is None and download:
        failure = _try_download(root)
        found = find_layout(root)
        if found is None:
            failure = failure or "downloaded, yet the files are missing"
            raise DataUnavailableError(_missing_message(root, failure))
    if found is None:
        raise DataUnavailableError(_missing_message(root, "download disabled"))
    layout, where = found
    if layout is Layout.PICKLE:
        return _read_pickles(where)
    return _read_folders(where)


def find_layout(root: Path) -> tuple[Layout, Path] | None:
    """Which layout `root` holds, and where. A batches folder holding only some of the batch
    files (or a folder in place of one) is still that layout: reading it then names what is
    missing or broken, rather than a download being tried over it."""
    for candidate in (root / PICKLE_DIRNAME, root):
        if any((candidate / name).exists() for name in PICKLE_FILES):
            return Layout.PICKLE, candidate
    if (root / "train").is_dir() and (root / "test").is_dir():
        return Layout.FOLDER, root
    return None


def _try_download(root: Path) -> str:
    """Run torchvision's CIFAR-10 downloader into `root`; return why it failed, or "".

    A failed attempt leaves the file system as it found it: every directory it created on the
    way to `root` (parents included) is removed again while still empty.
    """
    # Imported here: torchvision.datasets is slow to import and only needed for this fallback.
    import torchvision.datasets

    created = [p for p in (root, *root.parents) if not p.exists()]  # innermost first
    previous = socket.getdefaulttimeout()
    # An unreachable host must fail within a minute rather than hang the whole suite.
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        root.mkdir(parents=True, exist_ok=True)
        torchvision.datasets.CIFAR10(root=str(root), train=True, download=True)
    except Exception as exc:  # any failure (DNS, HTTP, checksum, disk) means "unavailable"
        for directory in created:
            try:
                directory.rmdir()  # only while empty: never what the download did write
            except OSError:
                break
        return f"download failed: {type(exc).__name__}: {exc}".splitlines()[0]
    finally:
        socket.setdefaulttimeout(previous)
    return ""


def _missing_message(root: Path, failure: str) -> str:
    pickles = root / PICKLE_DIRNAME
    return (
        f"CIFAR-10 not found in {root} ({failure}). Expected either the official python batches "
        f"{pickles}/{{data_batch_1..data_batch_5,test_batch,batches.meta}} (or {root} itself "
        f"holding those files), or image folders {root}/train/<class>/*.png|jpg and "
        f"{root}/test/<class>/*.png|jpg. To fix: on a machine with network, download "
        f"{DOWNLOAD_URL} and extract it into {root}, or point --data-dir (or the HGBENCH_DATA "
        "environment variable) at a directory that holds CIFAR-10 in one of these layouts."
    )


# --- layout 1: the official python-pickle batches -------------------------------------------


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals a pickled numpy array needs.

    The batches are plain dicts of bytes, lists and one uint8 array; refusing every other global
    means a tampered file cannot run code on load.
    """

    _ALLOWED = {
        ("_codecs", "encode"),  # how Python 3 writes bytes at pickle protocol 2
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),  # arrays at pickle protocol 5
        ("numpy._core.numeric", "_frombuffer"),
    }

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        return super().find_class(module, name)


def _unpickle(path: Path) -> dict:
    try:
        with path.open("rb") as f:
            obj = _NumpyOnlyUnpickler(f, encoding="bytes").load()
    except Exception as exc:
        raise DataUnavailableError(f"cannot read CIFAR-10 batch {path}: {one_line(exc)}") from exc
    if not isinstance(obj, dict):
        raise DataUnavailableError(f"CIFAR-10 batch {path} holds {type(obj).__name__}, not a dict")
    return obj


def _integer_array(value: object, path: Path, key: str, ndim: int) -> np.ndarray:
    """`value` as an integer array of `ndim` dimensions, or a DataUnavailableError naming it."""
    try:
        array = np.asarray(value)
    except Exception as exc:  # ragged lists and other objects numpy cannot make an array of
        raise DataUnavailableError(
            f"CIFAR-10 batch {path}: {key} is not an array ({one_line(exc)})"
        ) from exc
    if array.dtype.kind not in "iu" or array.ndim != ndim:
        raise DataUnavailableError(
            f"CIFAR-10 batch {path}: {key} must be a {ndim}-d integer array, got "
            f"{type(value).__name__} of dtype {array.dtype} and shape {array.shape}"
        )
    return array


def _read_batch(path: Path) -> tuple[Tensor, Tensor]:
    batch = _unpickle(path)
    for key in (b"data", b"labels"):
        if key not in batch:
            raise DataUnavailableError(f"CIFAR-10 batch {path} lacks key {key!r}")
    data = _integer_array(batch[b"data"], path, "data", ndim=2)
    labels = _integer_array(batch[b"labels"], path, "labels", ndim=1)
    if data.shape[1] != 3072 or len(labels) != len(data):
        raise DataUnavailableError(
            f"CIFAR-10 batch {path}: data has shape {data.shape} and {len(labels)} labels; "
            "expected (N, 3072) and N labels"
        )
    if data.dtype != np.uint8 and len(data) and (data.min() < 0 or data.max() > 255):
        raise DataUnavailableError(f"CIFAR-10 batch {path}: pixel values outside 0..255")
    # Each row is 1024 red, then 1024 green, then 1024 blue values, each plane row-major.
    images = torch.from_numpy(data.astype(np.uint8).reshape(-1, *IMAGE_SHAPE))  # (N, 3, 32, 32)
    return images, torch.from_numpy(labels.astype(np.int64))


def _read_pickles(folder: Path) -> CifarArrays:
    meta = _unpickle(folder / META_FILE)
    names = meta.get(b"label_names")
    if (
        not isinstance(names, list)
        or len(names) != len(CIFAR10_CLASSES)
        or not all(isinstance(n, bytes | str) for n in names)
    ):
        raise DataUnavailableError(
            f"{folder / META_FILE}: expected 10 label_names, got {_short(names)}"
        )
    classes = [n.decode(errors="replace") if isinstance(n, bytes) else n for n in names]
    train = [_read_batch(folder / name) for name in TRAIN_BATCHES]
    test_x, test_y = _read_batch(folder / TEST_BATCH)
    train_x = torch.cat([x for x, _ in train])
    train_y = torch.cat([y for _, y in train])
    for labels, split in ((train_y, "train"), (test_y, "test")):
        if len(labels) and (labels.min() < 0 or labels.max() >= len(classes)):
            raise DataUnavailableError(f"{folder}: {split} labels outside 0..{len(classes) - 1}")
    present = None
    if (folder / PRESENT_FILE).exists():
        present = torch.zeros(len(train_y), dtype=torch.bool)
        present[torch.from_numpy(np.load(folder / PRESENT_FILE).astype(np.int64))] = True
    return CifarArrays(train_x, train_y, test_x, test_y, classes, Layout.PICKLE, present)


# --- layout 2: image folders ----------------------------------------------------------------


def _read_folders(root: Path) -> CifarArrays:
    classes = _class_names(root / "train")
    test_classes = _class_names(root / "test")
    if test_classes != classes:
        raise DataUnavailableError(
            f"{root}: train classes {classes} differ from test classes {test_classes}"
        )
    train_x, train_y = _read_split(root / "train", classes)
    test_x, test_y = _read_split(root / "test", classes)
    return CifarArrays(train_x, train_y, test_x, test_y, classes, Layout.FOLDER)


def _class_names(split_dir: Path) -> list[str]:
    names = sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not names:
        raise DataUnavailableError(f"{split_dir} has no class folders (expected <class>/*.png)")
    return names


def _read_split(split_dir: Path, classes: list[str]) -> tuple[Tensor, Tensor]:
    files: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        # Sorted within a class too, so the order (and any seeded subset) is reproducible.
        found = sorted(
            p
            for p in (split_dir / name).iterdir()
            if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
        )
        files += found
        labels += [label] * len(found)
    if not files:
        raise DataUnavailableError(f"{split_dir} holds no {'/'.join(IMAGE_SUFFIXES)} images")
    order = _numeric_order(files)
    if order is not None:
        files, labels = [files[i] for i in order], [labels[i] for i in order]
    return decode_images(files), torch.tensor(labels, dtype=torch.int64)


def _numeric_order(files: list[Path]) -> list[int] | None:
    """The positions of `files` sorted by their numeric names, if every name is a distinct
    number (the index of the image in the original order); None otherwise."""
    stems = [p.stem for p in files]
    if not all(s.isdigit() for s in stems):
        return None
    numbers = [int(s) for s in stems]
    if len(set(numbers)) != len(numbers):
        return None
    return sorted(range(len(files)), key=numbers.__getitem__)


def _short(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- class-balanced subsets -----------------------------------------------------------------


def balanced_subset(labels: Tensor, n: int, generator: torch.Generator) -> Tensor:
    """Indices of `n` examples, `n / C` drawn at random from each of the C classes in `labels`.

    Deterministic for a generator state; indices are returned sorted, on `labels.device`.
    """
    train_idx, _ = train_val_split(labels, n, 0, generator)
    return train_idx


def train_val_split(
    labels: Tensor, n_train: int, n_val: int, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Disjoint class-balanced index sets of sizes `n_train` and `n_val` drawn from `labels`.

    Both sizes must be multiples of the number of classes C, and each class must hold at least
    `(n_train + n_val) / C` examples. The validation set always comes out of the same pool as the
    training set: with CIFAR-10's 50,000 training images, `n_train=45000, n_val=5000` is the
    largest split, and a task that trains on all 50,000 has no validation set from it (pass 0).
    Deterministic for a generator state; indices are returned sorted, on `labels.device`.
    """
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-d, got shape {tuple(labels.shape)}")
    if n_train < 0 or n_val < 0:
        raise ValueError(f"subset sizes must be >= 0, got n_train={n_train}, n_val={n_val}")
    classes, counts = torch.unique(labels.cpu(), return_counts=True)
    n_classes = len(classes)
    for name, n in (("n_train", n_train), ("n_val", n_val)):
        if n % n_classes:
            raise ValueError(f"{name}={n} is not a multiple of the {n_classes} classes")
    per_train, per_val = n_train // n_classes, n_val // n_classes
    if per_train + per_val > int(counts.min()):
        smallest = classes[counts.argmin()].item()
        raise ValueError(
            f"n_train={n_train} + n_val={n_val} needs {per_train + per_val} examples per class, "
            f"but class {smallest} has only {int(counts.min())}"
        )
    rank = _random_rank_within_class(labels.cpu(), generator)  # (N,)
    train = torch.nonzero(rank < per_train).flatten()
    val = torch.nonzero((rank >= per_train) & (rank < per_train + per_val)).flatten()
    return train.to(labels.device), val.to(labels.device)


def _random_rank_within_class(labels: Tensor, generator: torch.Generator) -> Tensor:
    """For each example, its position in a random order of its own class (0, 1, ...)."""
    perm = torch.randperm(len(labels), generator=generator, device=generator.device).cpu()
    # A stable sort by label keeps the random order inside each class.
    by_class = perm[torch.sort(labels[perm], stable=True).indices]  # (N,) grouped by class
    sorted_labels = labels[by_class]
    first = torch.searchsorted(sorted_labels, sorted_labels, right=False)  # class start offsets
    rank = torch.empty(len(labels), dtype=torch.int64)
    rank[by_class] = torch.arange(len(labels)) - first
    return rank
