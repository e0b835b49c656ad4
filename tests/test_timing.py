"""Peak memory per region on a CPU: what the region added to the resident set, so cells run one
after another in one process compare (the process's lifetime high-water mark would not)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hgbench.engine.timing import PeakMemory

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/clear_refs").exists(), reason="needs Linux's RSS high-water reset"
)


def _touch(mb: int) -> torch.Tensor:
    return torch.ones(mb * 2**20 // 4)  # float32, every page written


def test_each_region_reports_its_own_peak() -> None:
    mem = PeakMemory(torch.device("cpu"))
    mem.reset()
    big = _touch(200)
    del big
    first = mem.read_mb()
    mem.reset()  # a later, small region is not charged the big one's peak
    small = _touch(20)
    second = mem.read_mb()
    del small
    assert 170 < first < 260, first
    assert 10 < second < 60, second
