"""CIFAR-10 loading from both layouts, the missing-data error, and balanced subsets and splits."""

from __future__ import annotations

import pickle
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from cifar_fakes import write_fake_cifar_pickles, write_pickle
from torchvision.io import write_jpeg, write_png

from hgbench.contracts.errors import DataUnavailableError, UsageError
from hgbench.tasks.cifar10_data import (
    CIFAR10_CLASSES,
    balanced_subset,
    load_cifar10,
    train_val_split,
)

# torchvision 0.29 deprecates its image codecs (for torchcodec); the test writes images with them.
pytestmark = pytest.mark.filterwarnings("ignore:The image decoding:DeprecationWarning")


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- layout 1: python pickles -----------------------------------------------------------------


def test_pickle_roundtrip_shapes_and_pixels(tmp_path: Path) -> None:
    folder = write_fake_cifar_pickles(tmp_path, n_train_per_batch=20, n_test=30, seed=0)
    data = load_cifar10(tmp_path, download=False)
    assert data.layout == "pickle"
    assert data.classes == CIFAR10_CLASSES
    assert data.train_x.shape == (100, 3, 32, 32) and data.train_x.dtype == torch.uint8
    assert data.train_y.shape == (100,) and data.train_y.dtype == torch.int64
    assert data.test_x.shape == (30, 3, 32, 32) and data.test_y.shape == (30,)
    assert data.train_y[:12].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]

    # Pixel (c, i, j) of an image is row entry c * 1024 + i * 32 + j: red plane, green, blue.
    with (folder / "data_batch_2").open("rb") as f:
        raw = pickle.load(f, encoding="bytes")[b"data"]  # (20, 3072) uint8
    image = data.train_x[20 + 7]  # 8th image of the second batch
    for c, i, j in [(0, 0, 0), (0, 0, 1), (0, 1, 0), (1, 0, 0), (2, 31, 31), (1, 5, 17)]:
        assert image[c, i, j].item() == raw[7, c * 1024 + i * 32 + j]
    assert torch.equal(image.flatten(), torch.from_numpy(raw[7]))


def test_pickle_folder_can_be_given_directly(tmp_path: Path) -> None:
    folder = write_fake_cifar_pickles(tmp_path, n_train_per_batch=2, n_test=3, seed=1)
    direct = load_cifar10(folder, download=False)
    parent = load_cifar10(tmp_path, download=False)
    assert torch.equal(direct.train_x, parent.train_x) and torch.equal(direct.test_y, parent.test_y)


def test_fake_pickles_match_torchvisions_reader(tmp_path: Path) -> None:
    write_fake_cifar_pickles(tmp_path, n_train_per_batch=4, n_test=5, seed=2)
    # Read as torchvision's CIFAR10 does (latin1, then (N, 32, 32, 3)): the same images.
    with (tmp_path / "cifar-10-batches-py" / "test_batch").open("rb") as f:
        entry = pickle.load(f, encoding="latin1")
    hwc = entry["data"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    data = load_cifar10(tmp_path, download=False)
    assert torch.equal(data.test_x.permute(0, 2, 3, 1), torch.from_numpy(hwc))
    assert data.test_y.tolist() == entry["labels"]


def test_pickle_from_numpy_1_loads(tmp_path: Path) -> None:
    # The official files name numpy.core.multiarray, which numpy >= 2 calls numpy._core.
    folder = write_fake_cifar_pickles(tmp_path, n_train_per_batch=2, n_test=2, seed=0)
    path = folder / "test_batch"
    raw = path.read_bytes()
    path.write_bytes(raw.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n"))
    assert b"numpy.core.multiarray\n" in path.read_bytes()
    assert load_cifar10(tmp_path, download=False).test_x.shape == (2, 3, 32, 32)


def test_pickle_with_foreign_globals_is_refused(tmp_path: Path) -> None:
    folder = write_fake_cifar_pickles(tmp_path, n_train_per_batch=2, n_test=2, seed=0)
    with (folder / "test_batch").open("wb") as f:
        pickle.dump({b"data": Path("x"), b"labels": []}, f)  # a global outside numpy
    with pytest.raises(DataUnavailableError, match="refusing"):
        load_cifar10(tmp_path, download=False)


# --- layout 2: image folders ------------------------------------------------------------------


def _write_folder(root: Path, counts: dict[str, int], seed: int) -> dict[str, list[torch.Tensor]]:
    g = _gen(seed)
    written: dict[str, list[torch.Tensor]] = {}
    for cls, n in counts.items():
        (root / cls).mkdir(parents=True)
        written[cls] = []
        for k in range(n):
            image = torch.randint(0, 256, (3, 32, 32), generator=g, dtype=torch.uint8)
            write_png(image, str(root / cls / f"img_{k:03d}.png"))
            written[cls].append(image)
    return written


def test_image_folder_roundtrip_exact_pixels(tmp_path: Path) -> None:
    # Class folders are created in non-sorted order: labels follow sorted names (ImageFolder).
    train = _write_folder(tmp_path / "train", {"zebra": 2, "cat": 3, "dog": 1}, seed=0)
    test = _write_folder(tmp_path / "test", {"dog": 2, "zebra": 1, "cat": 1}, seed=1)
    (tmp_path / "train" / "cat" / "notes.txt").write_text("not an image")
    data = load_cifar10(tmp_path, download=False)
    assert data.layout == "folder"
    assert data.classes == ["cat", "dog", "zebra"]
    assert data.train_x.shape == (6, 3, 32, 32) and data.train_x.dtype == torch.uint8
    assert data.train_y.tolist() == [0, 0, 0, 1, 2, 2]
    assert data.test_y.tolist() == [0, 1, 1, 2]
    expected_train = torch.stack([*train["cat"], *train["dog"], *train["zebra"]])
    expected_test = torch.stack([*test["cat"], *test["dog"], *test["zebra"]])
    assert torch.equal(data.train_x, expected_train)
    assert torch.equal(data.test_x, expected_test)


def test_image_folder_reads_jpeg(tmp_path: Path) -> None:
    _write_folder(tmp_path / "train", {"a": 1, "b": 1}, seed=0)
    _write_folder(tmp_path / "test", {"a": 1, "b": 1}, seed=1)
    flat = torch.full((3, 32, 32), 100, dtype=torch.uint8)
    flat[1] = 200
    write_jpeg(flat, str(tmp_path / "train" / "b" / "img_999.jpg"), quality=95)
    data = load_cifar10(tmp_path, download=False)
    assert data.train_y.tolist() == [0, 1, 1]
    assert (data.train_x[-1].int() - flat.int()).abs().max() <= 4  # JPEG is lossy


def test_image_folder_names_a_corrupt_file(tmp_path: Path) -> None:
    _write_folder(tmp_path / "train", {"a": 2}, seed=0)
    _write_folder(tmp_path / "test", {"a": 1}, seed=1)
    (tmp_path / "train" / "a" / "broken.jpg").write_bytes(b"\xff\xd8\xff" + b"\x00" * 50)
    with pytest.raises(DataUnavailableError, match="broken.jpg"):
        load_cifar10(tmp_path, download=False)


def test_image_folder_rejects_wrong_size(tmp_path: Path) -> None:
    _write_folder(tmp_path / "train", {"a": 1}, seed=0)
    _write_folder(tmp_path / "test", {"a": 1}, seed=1)
    write_png(torch.zeros(3, 16, 16, dtype=torch.uint8), str(tmp_path / "test" / "a" / "x.png"))
    with pytest.raises(DataUnavailableError, match="shape"):
        load_cifar10(tmp_path, download=False)


def test_image_folder_with_numbered_files_keeps_the_numeric_order(tmp_path: Path) -> None:
    # As the JPEG copy of CIFAR-10 names its files: the image's index in the original order.
    g = _gen(0)
    images = torch.randint(0, 256, (5, 3, 32, 32), generator=g, dtype=torch.uint8)
    labels = [1, 0, 1, 1, 0]
    for split in ("train", "test"):
        for i, (image, label) in enumerate(zip(images, labels, strict=True)):
            folder = tmp_path / split / ("cat", "dog")[label]
            folder.mkdir(parents=True, exist_ok=True)
            write_png(image, str(folder / f"{i:05d}.png"))
    data = load_cifar10(tmp_path, download=False)
    assert data.train_y.tolist() == labels and data.test_y.tolist() == labels
    assert torch.equal(data.train_x, images) and torch.equal(data.test_x, images)


# --- malformed data: one clean error naming the file, never a traceback ---------------------


@pytest.mark.parametrize(
    ("batch", "match"),
    [
        ({b"data": "not pixels", b"labels": [0]}, "data must be a 2-d integer array"),
        ({b"data": np.zeros((1, 3072)), b"labels": [0]}, "dtype float64"),
        ({b"data": np.zeros((1, 3072), np.uint8), b"labels": ["cat"]}, "labels must be"),
        ({b"data": np.zeros((1, 3072), np.uint8), b"labels": [[0], [1, 2]]}, "labels is not"),
        ({b"data": np.zeros((1, 3072), np.uint8), b"labels": None}, "labels must be"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "expected \\(N, 3072\\)"),
        ({b"data": np.zeros((1, 100), np.uint8), b"labels": [0]}, "expected \\(N, 3072\\)"),
        ({b"data": np.full((1, 3072), 300), b"labels": [0]}, "outside 0..255"),
        ({b"labels": [0]}, "lacks key"),
    ],
)
def test_pickle_with_wrong_fields_is_a_clean_error(tmp_path: Path, batch: dict, match: str) -> None:
    folder = write_fake_cifar_pickles(tmp_path, n_train_per_batch=2, n_test=2, seed=0)
    write_pickle(folder / "data_batch_3", batch)
    with pytest.raises(DataUnavailableError, match=match) as info:
        load_cifar10(tmp_path, download=False)
    assert "data_batch_3" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("names", [None, [b"a", b"b"], [1] * 10])
def test_pickle_meta_with_wrong_label_names_is_a_clean_error(tmp_path: Path, names) -> None:
    folder = write_fake_cifar_pickles(tmp_path, n_train_per_batch=2, n_test=2, seed=0)
    write_pickle(folder / "batches.meta", {b"label_names": names})
    with pytest.raises(DataUnavailableError, match="label_names"):
        load_cifar10(tmp_path, download=False)


@pytest.mark.parametrize("how", ["missing", "directory"])
def test_incomplete_batches_folder_names_the_file_and_downloads_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    def download(root: str, train: bool, download: bool) -> None:
        raise AssertionError("no download over a batches folder")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", download)
    folder = write_fake_cifar_pickles(tmp_path, n_train_per_batch=2, n_test=2, seed=0)
    (folder / "data_batch_4").unlink()
    if how == "directory":
        (folder / "data_batch_4").mkdir()
    with pytest.raises(DataUnavailableError, match="data_batch_4") as info:
        load_cifar10(tmp_path)
    assert "\n" not in str(info.value)


def test_truncated_pickle_is_a_clean_error(tmp_path: Path) -> None:
    folder = write_fake_cifar_pickles(tmp_path, n_train_per_batch=2, n_test=2, seed=0)
    raw = (folder / "test_batch").read_bytes()
    (folder / "test_batch").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataUnavailableError, match="cannot read CIFAR-10 batch .*test_batch"):
        load_cifar10(tmp_path, download=False)


@pytest.mark.parametrize("name", ["empty.png", "empty.jpg"])
def test_empty_image_file_is_a_clean_error(tmp_path: Path, name: str) -> None:
    _write_folder(tmp_path / "train", {"a": 2}, seed=0)
    _write_folder(tmp_path / "test", {"a": 1}, seed=1)
    (tmp_path / "train" / "a" / name).write_bytes(b"")
    with pytest.raises(DataUnavailableError, match=f"{name} is empty"):
        load_cifar10(tmp_path, download=False)


def test_directory_named_like_an_image_is_a_clean_error(tmp_path: Path) -> None:
    _write_folder(tmp_path / "train", {"cat": 2}, seed=0)
    _write_folder(tmp_path / "test", {"cat": 1}, seed=1)
    (tmp_path / "train" / "cat" / "x.png").mkdir()
    with pytest.raises(DataUnavailableError, match="x.png is a directory"):
        load_cifar10(tmp_path, download=False)


def test_file_that_is_no_image_is_a_clean_error(tmp_path: Path) -> None:
    _write_folder(tmp_path / "train", {"a": 2}, seed=0)
    _write_folder(tmp_path / "test", {"a": 1}, seed=1)
    (tmp_path / "test" / "a" / "notes.png").write_text("hello")
    with pytest.raises(DataUnavailableError, match="cannot decode image .*notes.png"):
        load_cifar10(tmp_path, download=False)


# --- missing data -----------------------------------------------------------------------------


def test_missing_without_download_names_directory_and_layouts(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DataUnavailableError) as info:
        load_cifar10(missing, download=False)
    message = str(info.value)
    assert isinstance(info.value, UsageError)
    assert str(missing.resolve()) in message
    assert "cifar-10-batches-py" in message and "train/<class>" in message
    assert "HGBENCH_DATA" in message and "--data-dir" in message
    assert not missing.exists()


def test_failed_download_raises_data_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Stands in for an offline machine, so the test never touches the network.
    calls = []

    def offline(root: str, train: bool, download: bool) -> None:
        calls.append((root, socket.getdefaulttimeout()))
        raise OSError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    missing = tmp_path / "data"
    default_timeout = socket.getdefaulttimeout()
    with pytest.raises(DataUnavailableError, match="download failed: OSError") as info:
        load_cifar10(missing)
    assert calls == [(str(missing.resolve()), 60.0)]  # attempted under a 60 s socket timeout
    assert socket.getdefaulttimeout() == default_timeout  # and the default restored afterwards
    assert str(missing.resolve()) in str(info.value)
    assert not missing.exists()  # the empty directory made for the download is removed


def test_failed_download_removes_every_directory_it_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def offline(root: str, train: bool, download: bool) -> None:
        raise OSError("offline")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    (tmp_path / "kept").mkdir()
    with pytest.raises(DataUnavailableError):
        load_cifar10(tmp_path / "kept" / "a" / "b" / "c")
    assert list(tmp_path.iterdir()) == [tmp_path / "kept"]
    assert not any((tmp_path / "kept").iterdir())  # kept: it was there before


def _offline() -> bool:
    try:
        socket.getaddrinfo("www.cs.toronto.edu", 443)
    except OSError:
        return True
    return False


@pytest.mark.skipif(not _offline(), reason="online: a real attempt would download 170 MB")
def test_real_download_attempt_fails_fast_offline(tmp_path: Path) -> None:
    with pytest.raises(DataUnavailableError, match="download failed") as info:
        load_cifar10(tmp_path / "cifar10", download=True)
    assert str((tmp_path / "cifar10").resolve()) in str(info.value)


def test_successful_download_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_download(root: str, train: bool, download: bool) -> None:
        write_fake_cifar_pickles(Path(root), n_train_per_batch=3, n_test=4, seed=0)

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", fake_download)
    data = load_cifar10(tmp_path / "fresh")
    assert data.layout == "pickle" and data.train_x.shape == (15, 3, 32, 32)


# --- balanced subsets and splits --------------------------------------------------------------


def _labels(per_class: int = 30, n_classes: int = 10) -> torch.Tensor:
    labels = torch.arange(n_classes).repeat(per_class)
    return labels[torch.randperm(len(labels), generator=_gen(99))]


def test_balanced_subset_is_balanced_and_unique() -> None:
    labels = _labels()
    idx = balanced_subset(labels, 50, _gen(0))
    assert idx.dtype == torch.int64 and len(idx) == 50 and len(idx.unique()) == 50
    assert torch.bincount(labels[idx], minlength=10).tolist() == [5] * 10


def test_balanced_subset_accepts_narrow_label_dtypes() -> None:
    labels = _labels(per_class=40).to(torch.uint8)  # 400 examples: ranks overflow uint8
    idx = balanced_subset(labels, 300, _gen(0))
    assert torch.bincount(labels[idx].long(), minlength=10).tolist() == [30] * 10


def test_balanced_subset_is_deterministic_per_seed() -> None:
    labels = _labels()
    assert torch.equal(balanced_subset(labels, 100, _gen(1)), balanced_subset(labels, 100, _gen(1)))
    assert not torch.equal(
        balanced_subset(labels, 100, _gen(1)), balanced_subset(labels, 100, _gen(2))
    )


def test_balanced_subset_rejects_bad_sizes() -> None:
    labels = _labels(per_class=30)
    with pytest.raises(ValueError, match="multiple"):
        balanced_subset(labels, 55, _gen(0))
    with pytest.raises(ValueError, match="per class"):
        balanced_subset(labels, 310, _gen(0))
    assert len(balanced_subset(labels, 300, _gen(0))) == 300  # every example


def test_train_val_split_is_disjoint_balanced_and_deterministic() -> None:
    labels = _labels(per_class=30)
    train, val = train_val_split(labels, 200, 100, _gen(0))
    assert len(train) == 200 and len(val) == 100
    assert not set(train.tolist()) & set(val.tolist())
    assert torch.bincount(labels[train], minlength=10).tolist() == [20] * 10
    assert torch.bincount(labels[val], minlength=10).tolist() == [10] * 10
    again = train_val_split(labels, 200, 100, _gen(0))
    assert torch.equal(train, again[0]) and torch.equal(val, again[1])
    # The training part of a split is the balanced subset drawn with the same seed.
    assert torch.equal(train, balanced_subset(labels, 200, _gen(0)))


def test_train_val_split_rejects_too_large() -> None:
    labels = _labels(per_class=30)
    with pytest.raises(ValueError, match="n_train=250 \\+ n_val=100"):
        train_val_split(labels, 250, 100, _gen(0))
    with pytest.raises(ValueError, match="n_val=15"):
        train_val_split(labels, 100, 15, _gen(0))
