"""The CIFAR-10 path on the real images: the shared JPEG pack (all 60,000 images, JPEG q75, exact
labels and order), unpacked once per session by its own `unpack.py` into image folders.

Checks that the image-folder reader delivers CIFAR-10 in its original order with its labels, and
that `fixed` plus one method of each family trains on `cifar10_1k_flipcrop` through the command
line on the CPU, with test accuracy above chance. Skipped, saying why, where the pack is absent
(set HGBENCH_CIFAR_PACK to its folder if it lives elsewhere). Results from this data are
"CIFAR-10 (JPEG q75 copy)".
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from hgbench.contracts.method import METHODS, Family
from hgbench.contracts.schema import RESULTS_FILE, Status
from hgbench.engine.plugins import load_plugins
from hgbench.tasks.cifar10_data import Layout, load_cifar10

load_plugins()

REPO = Path(__file__).resolve().parents[1]
PACK_FILE = "cifar10_jpeg_q75.npz"
# where the pack lives: $HGBENCH_CIFAR_PACK, the shared data folder beside the checkout, or a
# git-ignored copy in the checkout (how a GPU machine receives it)
CANDIDATES = [
    *([Path(os.environ["HGBENCH_CIFAR_PACK"])] if os.environ.get("HGBENCH_CIFAR_PACK") else []),
    REPO.parent / "shared" / "data" / "cifar10-jpeg",
    REPO.parents[1] / "shared" / "data" / "cifar10-jpeg",  # a worktree one folder deeper
    REPO / ".cifar",
]
PACK = next(
    (p for p in CANDIDATES if (p / PACK_FILE).is_file() and (p / "unpack.py").is_file()), None
)
pytestmark = pytest.mark.skipif(
    PACK is None,
    reason="the CIFAR-10 JPEG pack (cifar10_jpeg_q75.npz + unpack.py) is not in "
    + ", ".join(str(p) for p in CANDIDATES),
)

# CIFAR-10's first images, known to anyone who has looked at the data set
TRAIN_FIRST = ["frog", "truck", "truck", "deer", "automobile"]
TEST_FIRST = ["cat", "ship", "ship", "airplane", "frog"]
# one method of each family besides the floor (reversal: exact reversal of SGD)
FAMILY_METHODS = {
    Family.BLACKBOX: "random_search",
    Family.IMPLICIT: "ift_neumann",
    Family.UNROLLED: "unroll",
    Family.REVERSAL: "reversible_sgd",
    Family.MARGLIK: "laplace_ntk",
}
# 3 epochs in batches of 32: 84 steps, enough to leave chance behind (NLL ~2.05 where 24 steps of
# 128 leave it at ~2.29, still near log 10), at about the compute of 3 epochs in batches of 128
EPOCHS, BATCH = 3, 32
N_TEST = 1000  # a class-balanced tenth of the test set: enough to tell 0.13 from chance (0.10)


@pytest.fixture(scope="session")
def unpacked(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The pack as image folders (train/<class>/NNNNN.jpg, test/...), once per session."""
    assert PACK is not None
    out = tmp_path_factory.mktemp("cifar10-jpeg")
    subprocess.run([sys.executable, str(PACK / "unpack.py"), str(out)], check=True, timeout=300)
    return out


@pytest.fixture(scope="session")
def pack_labels() -> dict[str, np.ndarray]:
    assert PACK is not None
    with np.load(PACK / PACK_FILE) as pack:
        return {k: pack[k] for k in ("train_labels", "test_labels", "label_names")}


def test_folders_hold_cifar10_in_its_order_with_its_labels(unpacked: Path, pack_labels) -> None:
    data = load_cifar10(unpacked, download=False)
    assert data.layout == Layout.FOLDER
    assert data.classes == [str(n) for n in pack_labels["label_names"]]
    assert data.train_x.shape == (50000, 3, 32, 32) and data.train_x.dtype == torch.uint8
    assert data.test_x.shape == (10000, 3, 32, 32)
    assert torch.bincount(data.train_y).tolist() == [5000] * 10
    assert torch.bincount(data.test_y).tolist() == [1000] * 10
    assert [data.classes[i] for i in data.train_y[:5]] == TRAIN_FIRST
    assert [data.classes[i] for i in data.test_y[:5]] == TEST_FIRST
    # every label, in order: the folder reader restores CIFAR-10's order from the file names
    assert np.array_equal(data.train_y.numpy(), pack_labels["train_labels"])
    assert np.array_equal(data.test_y.numpy(), pack_labels["test_labels"])
    # and the pixels are the decoded JPEG of the same image (the last of the training set)
    from torchvision.io import decode_jpeg

    with np.load(PACK / PACK_FILE) as pack:
        lo, hi = pack["train_offsets"][-2:]
        blob = torch.from_numpy(pack["train_jpeg"][lo:hi].copy())
    assert torch.equal(data.train_x[-1], decode_jpeg(blob))
    assert data.train_x.float().mean() == pytest.approx(0.47 * 255, rel=0.05)  # not noise


def test_fixed_and_one_method_per_family_learn_on_real_images(
    cli, unpacked: Path, tmp_path: Path
) -> None:
    for family, name in FAMILY_METHODS.items():
        assert METHODS[name].family == family
    methods = ["fixed", *FAMILY_METHODS.values()]
    out = tmp_path / "out"
    res = cli(
        "run",
        "--tasks",
        "cifar10_1k_flipcrop",
        "--methods",
        ",".join(methods),
        "--seeds",
        "0",
        "--device",
        "cpu",
        "--threads",
        "2",
        "--set",
        f"task.epochs={EPOCHS}",
        "--set",
        f"task.batch_size={BATCH}",
        "--set",
        f"task.n_test={N_TEST}",
        "--set",
        "reversible_sgd.T=10",  # its unit is one meta-iteration of T steps, forward and back
        # an NTK block of 16 points (160 Jacobian rows) every 20 steps: on a CPU the default
        # block of 64 every 10 steps costs more than all the training
        "--set",
        "laplace_ntk.block_size=16",
        "--set",
        "laplace_ntk.hyper_every=20",
        "--data-dir",
        unpacked,
        "--out",
        out,
        "--no-report",
    )
    assert res.code == 0, res.err
    rows = [json.loads(line) for line in (out / RESULTS_FILE).read_text().splitlines()]
    final = {r["method"]: r for r in rows if r["final"]}
    assert sorted(final) == sorted(methods)
    for name, row in final.items():
        assert row["status"] == Status.OK.value, (name, row["error"])
        assert row["test_n"] == N_TEST
        if name == "reversible_sgd":
            continue  # 10 SGD steps from the init: it ran, but has not learned yet
        assert EPOCHS <= row["epoch"] < EPOCHS + 1, name  # unroll ends on a window's end
        assert row["test_acc"] > 0.13, (name, row["test_acc"])  # chance is 0.10
    assert final["reversible_sgd"]["test_acc"] is not None


@pytest.mark.slow  # a slice of the pack, two cells, their cost pass and a report: about a minute
def test_gpu_reference_script_in_smoke_mode_grows_the_reference_and_packs_it(
    tmp_path: Path,
) -> None:
    """benchmarks/gpu_reference.sh end to end on the CPU (HGBENCH_GPU_SMOKE=1), as a GPU run uses
    it: its data from a slice of the pack (benchmarks/cifar_slice_pack.py), its report folder a
    copy of the committed reports/cifar10_gpu/ grown by the time-budgeted plan with its cost
    pass, and that folder, its README.md carrying this run's record after the earlier ones,
    back as one archive beside the log."""
    pack, out = tmp_path / "pack", tmp_path / "out"
    subprocess.run([sys.executable, str(REPO / "benchmarks" / "cifar_slice_pack.py"), "make",
                    str(PACK / PACK_FILE), str(pack), "--tasks", "cifar10_1k_flipcrop",
                    "--seeds", "0"], check=True, timeout=300)  # fmt: skip
    reference = REPO / "reports" / "cifar10_gpu"
    env = {
        **os.environ,
        "OUT": str(out),
        "HGBENCH_GPU_SMOKE": "1",
        "HGBENCH_GPU_GROW": str(reference),
    }
    env.pop("HGBENCH_GPU_REPORT", None)
    env["PYTHON"] = sys.executable  # the interpreter that holds torch and hgbench
    proc = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_reference.sh"), str(pack)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    log = (out / "gpu_reference.log").read_text()
    assert proc.returncode == 0, log[-3000:]
    for part in ("setup", "plan"):
        assert f"part {part}: ok" in log, log[-3000:]
    assert "unpacked" in log and "1000 training images" in log  # the slice, not the whole pack
    assert sorted(p.name for p in out.iterdir()) == ["cifar10_gpu.tar.gz", "gpu_reference.log"]
    with tarfile.open(out / "cifar10_gpu.tar.gz") as tar:
        names = set(tar.getnames())
        read = {n: tar.extractfile(f"cifar10_gpu/{n}").read().decode()
                for n in ("README.md", "report.md", RESULTS_FILE)}  # fmt: skip
    assert {"cifar10_gpu/cost/results.jsonl", "cifar10_gpu/report.html"} <= names
    readme, report, results = read["README.md"], read["report.md"], read[RESULTS_FILE]
    # grown: the committed rows first, unchanged, then this run's; its README's record appended
    committed = (reference / RESULTS_FILE).read_text()
    assert results.startswith(committed) and len(results) > len(committed)
    assert readme.startswith((reference / "README.md").read_text())
    record = readme[len((reference / "README.md").read_text()) :]
    assert "CIFAR-10 (JPEG q75 copy)" in record and "cifar10_slice.npz" in record
    assert "--suite cifar10" in record and "plan for" in record  # the command and the plan
    assert f"{len(committed.splitlines())} rows before this run" in record
    assert report.splitlines()[0] == "# hgbench report: CIFAR-10 (JPEG q75 copy)"
    assert "(NVIDIA H200: 60 rows" in report or "NVIDIA H200: 60 rows" in report
    new = [json.loads(line) for line in results[len(committed) :].splitlines()]
    final = [r for r in new if r["final"]]
    assert len(final) == 2 and all(r["status"] == Status.OK.value for r in final)


def test_gpu_reference_script_refuses_a_report_folder_that_holds_rows(tmp_path: Path) -> None:
    """Run into a folder with rows, the runner would resume from them and mix two runs."""
    report = tmp_path / "cifar10_gpu"
    report.mkdir()
    (report / RESULTS_FILE).write_text('{"cell": "x"}\n')
    env = {**os.environ, "OUT": str(tmp_path / "out"), "HGBENCH_GPU_REPORT": str(report)}
    proc = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_reference.sh"), str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "already holds results" in proc.stderr
    assert (report / RESULTS_FILE).read_text() == '{"cell": "x"}\n'


@pytest.mark.slow  # 30 epochs of the short protocol on the CPU: ~2 min on a shared 2-core machine
def test_short_protocol_trains_fixed_on_real_images(cli, unpacked: Path, tmp_path: Path) -> None:
    """The short protocol (tasks/cifar10_protocol.py) end to end on `cifar10_1k_none`: its epoch
    count, an evaluation every tenth of the run on one test set (what the convergence bar reads),
    and `fixed` learning above chance. CPU-sized: 1k's schedule on a fifth of its images, in
    batches of 32 (the schedule's shape is the protocol's; the sizes are a CPU's)."""
    from hgbench.report.cifar_grid import cell_change
    from hgbench.report.load import load_rows
    from hgbench.tasks.cifar10_protocol import Protocol, eval_every, short_sets, subset_epochs

    epochs = subset_epochs("1k", Protocol.SHORT)
    every = eval_every(epochs)
    out = tmp_path / "out"
    sets = [*short_sets("1k"), f"task.n_test={N_TEST}", "task.n_labelled=200", "task.batch_size=32"]
    argv = ["run", "--suite", "cifar10", "--tasks", "cifar10_1k_none", "--methods", "fixed"]
    argv += ["--seeds", "0", "--device", "cpu", "--threads", "2", "--data-dir", unpacked]
    argv += ["--out", out, "--no-report"]
    for item in sets:
        argv += ["--set", item]
    res = cli(*argv)
    assert res.code == 0, res.err
    cell = load_rows(out)
    assert len(cell) > 0 and (cell["status"] == Status.OK).all(), cell["error"].tolist()
    assert sorted(cell["epoch"]) == [float(e) for e in range(0, epochs + 1, every)]
    assert set(cell["test_n"]) == {N_TEST}
    assert cell_change(cell) is not None  # the sanity bar can read the curve
    assert float(cell["test_acc"].iloc[-1]) > 0.15  # chance is 0.10


@pytest.mark.slow  # decodes the pack's 60,000 images twice: about a minute
def test_a_slice_pack_holds_the_images_its_cells_draw_and_refuses_others(
    unpacked: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """benchmarks/cifar_slice_pack.py: the slice for cifar10_1k_none seed 0 gives that cell the
    same pixels and labels as the whole pack, every test image, and a seed it was not made for
    fails with the reason instead of training on the zeros in place of missing images."""
    from hgbench.contracts.errors import UsageError
    from hgbench.contracts.task import TASKS

    script = REPO / "benchmarks" / "cifar_slice_pack.py"
    run = [sys.executable, str(script)]
    subprocess.run([*run, "make", str(PACK / PACK_FILE), str(tmp_path / "slice"), "--tasks",
                    "cifar10_1k_none", "--seeds", "0"], check=True, timeout=300)  # fmt: skip
    data = tmp_path / "data"
    subprocess.run([*run, "unpack", str(tmp_path / "slice" / "cifar10_slice.npz"), str(data)],
                   check=True, timeout=300)  # fmt: skip
    assert (data / "slice.txt").read_text() == "tasks=cifar10_1k_none\nseeds=0\n"
    whole, part = load_cifar10(unpacked, download=False), load_cifar10(data, download=False)
    assert part.train_present is not None and int(part.train_present.sum()) == 1000
    present = part.train_present
    assert torch.equal(part.train_y, whole.train_y) and torch.equal(part.test_y, whole.test_y)
    assert torch.equal(part.train_x[present], whole.train_x[present])
    assert torch.equal(part.test_x, whole.test_x)
    assert int(part.train_x[~present].abs().sum()) == 0
    task = TASKS["cifar10_1k_none"]
    train, val = task.split_indices(whole.train_y, 0)
    assert bool(present[train].all()) and bool(present[val].all())
    monkeypatch.setenv("HGBENCH_DATA", str(data))
    splits = task.load_data(0)
    assert len(splits.y_train) + len(splits.y_val) == 1000
    with pytest.raises(UsageError, match="holds a slice of CIFAR-10's training images"):
        task.load_data(1)
