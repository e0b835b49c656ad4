"""hgbench.engine.memory.SavedTensors counts what autograd saves, and l2_penalty saves nothing of
the parameters' size beyond the parameters (the unrolled MLP held half as much again as `higher`
through the old penalty's saved p² and its double backward)."""

from __future__ import annotations

import torch

from hgbench.contracts.hparams import WD_PREFIX, l2_penalty
from hgbench.engine.memory import SavedTensors


def test_counts_saved_storages_once_and_frees_them_with_the_graph():
    x = torch.randn(1000, dtype=torch.float64, requires_grad=True)
    with SavedTensors() as saved:
        y = x.tanh()  # saves its output: 8000 bytes
        z = (y * y).sum()  # saves y twice: the same storage, counted once
        saved.mark()
        z.backward()  # the graph is freed, y still held here
        saved.mark()
        del y
        saved.mark()
    assert saved.total == 8000 and saved.peak == 8000
    assert saved.marks == [8000, 8000, 0]


def _reference_penalty(params, hparams):
    return sum(0.5 * (hparams[WD_PREFIX + k].exp() * p.square()).sum() for k, p in params.items())


def test_l2_penalty_value_gradients_and_what_it_saves():
    torch.manual_seed(0)
    params = {
        "a": torch.randn(30, 20, dtype=torch.float64, requires_grad=True),
        "b": torch.randn(20, dtype=torch.float64, requires_grad=True),
    }
    hparams = {  # one decay for a tensor, one per weight
        WD_PREFIX + "a": torch.tensor(-1.5, dtype=torch.float64, requires_grad=True),
        WD_PREFIX + "b": torch.randn(20, dtype=torch.float64, requires_grad=True),
    }
    inputs = [*params.values(), *hparams.values()]
    ours, ref = l2_penalty(params, hparams), _reference_penalty(params, hparams)
    torch.testing.assert_close(ours, ref, rtol=1e-14, atol=0)
    g_ours = torch.autograd.grad(ours, inputs, create_graph=True)
    g_ref = torch.autograd.grad(ref, inputs, create_graph=True)
    for a, b in zip(g_ours, g_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-14, atol=0)
    # second order, as an unrolled step and a mixed product use it: d/dλ <∇_w P, v>
    v = [torch.randn_like(p) for p in params.values()]
    mixed = [
        torch.autograd.grad(
            sum((g * u).sum() for g, u in zip(gs[:2], v, strict=True)), list(hparams.values())
        )
        for gs in (g_ours, g_ref)
    ]
    for a, b in zip(*mixed, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=0)

    # a tensor with one decay: nothing of its size saved but itself, through a double backward
    big = {"w": torch.randn(100, 100, requires_grad=True)}
    h = {WD_PREFIX + "w": torch.tensor(-2.0, requires_grad=True)}

    def saved_tensors_of_w(penalty) -> float:
        with SavedTensors() as saved:
            (g,) = torch.autograd.grad(penalty(big, h), list(big.values()), create_graph=True)
        return saved.peak / big["w"].nbytes

    assert saved_tensors_of_w(l2_penalty) < 1.01
    # the old form saved p², and two more in the double backward: the count can tell them apart
    assert saved_tensors_of_w(_reference_penalty) > 2.99
