"""A slice of the CIFAR-10 pack (tasks/cifar10_slice.py) gives its cells exactly the data the
whole pack gives, and refuses any other cell. On a generated pack in the shared pack's format
(JPEG bytes concatenated, offsets, labels), read whole through the loader's image-folder layout."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.io import encode_jpeg

from hgbench.contracts.errors import DataUnavailableError
from hgbench.contracts.task import TASKS
from hgbench.engine.plugins import load_plugins
from hgbench.tasks.cifar10_data import CIFAR10_CLASSES
from hgbench.tasks.cifar10_slice import SLICE_NPZ, make, unpack

load_plugins()
pytestmark = pytest.mark.filterwarnings("ignore:The image decoding:DeprecationWarning")
PER_CLASS = {"train": 120, "test": 30}


def _pack(root: Path) -> Path:
    """A pack of random images, classes interleaved, and the same images as an image-folder
    tree (the loader's own second layout: the whole pack, decoded by the loader)."""
    gen = torch.Generator().manual_seed(0)
    arrays: dict[str, np.ndarray] = {"label_names": np.array(CIFAR10_CLASSES)}
    for split, per in PER_CLASS.items():
        labels = np.tile(np.arange(10, dtype=np.uint8), per)
        blobs = []
        for i, c in enumerate(labels):
            image = torch.randint(0, 256, (3, 32, 32), generator=gen, dtype=torch.uint8)
            blob = encode_jpeg(image, quality=75).numpy()
            blobs.append(blob)
            folder = root / "whole" / split / CIFAR10_CLASSES[c]
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{i:05d}.jpg").write_bytes(blob.tobytes())
        arrays[f"{split}_jpeg"] = np.concatenate(blobs)
        arrays[f"{split}_offsets"] = np.concatenate([[0], np.cumsum([len(b) for b in blobs])])
        arrays[f"{split}_labels"] = labels
    np.savez(root / "pack.npz", **arrays)
    return root / "pack.npz"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("slice")
    pack = _pack(root)
    make(pack, root / "slice", ["small"], [0, 2], {})
    unpack(root / "slice" / SLICE_NPZ, root / "sliced")
    return root


@pytest.fixture(scope="module", autouse=True)
def _small_task():
    task = dataclasses.replace(TASKS["cifar10_1k_none"], name="small", n_labelled=400)
    TASKS._items["small"] = task  # a registered name of its own, removed afterwards
    yield
    del TASKS._items["small"]


def _splits(monkeypatch: pytest.MonkeyPatch, root: Path, seed: int):
    monkeypatch.setenv("HGBENCH_DATA", str(root))
    return TASKS["small"].load_data(seed)


@pytest.mark.parametrize("seed", [0, 2])
def test_a_slice_gives_its_cells_the_whole_packs_data(data: Path, monkeypatch, seed: int) -> None:
    whole = _splits(monkeypatch, data / "whole", seed)
    sliced = _splits(monkeypatch, data / "sliced", seed)
    for field in dataclasses.fields(whole):
        a, b = getattr(whole, field.name), getattr(sliced, field.name)
        assert torch.equal(a, b), field.name
    assert len(whole.y_train) == 360 and whole.x_train.abs().sum() > 0


def test_the_slice_holds_only_what_its_cells_use(data: Path) -> None:
    sliced = np.load(data / "slice" / SLICE_NPZ)
    present = int((np.diff(sliced["train_offsets"]) > 0).sum())
    assert 400 <= present < 800  # two seeds' 400 images, overlapping, of the pack's 1,200
    assert (data / "slice" / SLICE_NPZ).stat().st_size < (data / "pack.npz").stat().st_size


def test_a_cell_outside_the_slice_is_refused(data: Path, monkeypatch) -> None:
    with pytest.raises(DataUnavailableError, match="seed 1: .* lacks .* train images"):
        _splits(monkeypatch, data / "sliced", 1)
