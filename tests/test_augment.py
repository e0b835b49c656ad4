"""Batched augmentation: exact geometry on tiny images, identities, gradients, determinism."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from hgbench.numerics.augment import (
    AFFINE_GENERATORS,
    affine,
    flip_crop,
    sample_affine_noise,
    translate,
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _image(b: int = 3, c: int = 2, h: int = 6, w: int = 6, dtype=torch.float64) -> torch.Tensor:
    return torch.randn(b, c, h, w, generator=_gen(123), dtype=dtype)


@pytest.mark.parametrize("padding_mode", ["constant", "reflect"])
def test_flip_crop_is_a_flipped_shifted_copy(padding_mode: str) -> None:
    pad = 2
    x = torch.arange(16 * 2 * 5 * 5, dtype=torch.float32).reshape(16, 2, 5, 5)  # distinct pixels
    out = flip_crop(x, _gen(), pad=pad, padding_mode=padding_mode)
    assert out.shape == x.shape and out.dtype == x.dtype
    padded = F.pad(x, (pad,) * 4, mode=padding_mode)
    for n in range(len(x)):
        candidates = [
            img.flip(-1) if flip else img
            for flip in (False, True)
            for img in (
                padded[n, :, i : i + 5, j : j + 5]
                for i in range(2 * pad + 1)
                for j in range(2 * pad + 1)
            )
        ]
        assert len(candidates) == 2 * (2 * pad + 1) ** 2
        assert any(torch.equal(out[n], c) for c in candidates), f"sample {n} is no flip/crop"


def test_flip_crop_uses_both_flips_and_several_shifts() -> None:
    x = torch.arange(25, dtype=torch.float32).reshape(1, 1, 5, 5).expand(64, 1, 5, 5)
    out = flip_crop(x, _gen(), pad=1)
    assert len({tuple(o.flatten().tolist()) for o in out}) > 6


def test_flip_crop_is_deterministic_per_seed() -> None:
    x = _image(8, 3, 8, 8, torch.float32)
    assert torch.equal(flip_crop(x, _gen(5)), flip_crop(x, _gen(5)))
    assert not torch.equal(flip_crop(x, _gen(5)), flip_crop(x, _gen(6)))


def test_translate_zero_magnitude_is_identity() -> None:
    x = _image()
    out = translate(x, torch.tensor(0.0, dtype=torch.float64), _gen())
    torch.testing.assert_close(out, x, atol=1e-12, rtol=0)


def test_translate_by_one_pixel() -> None:
    x = _image(2, 1, 6, 6)
    # Grid units: the 6-pixel image spans 2, so one pixel is 1/3; u = (1, 0) samples x + 1 px.
    noise = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    out = translate(x, torch.tensor(1 / 3, dtype=torch.float64), noise=noise)
    torch.testing.assert_close(out[0, :, :, :-1], x[0, :, :, 1:])
    torch.testing.assert_close(out[1, :, :-1, :], x[1, :, 1:, :])
    assert out[0, :, :, -1].abs().max() == 0  # zeros padding


def test_affine_zero_magnitudes_is_identity() -> None:
    x = _image()
    out = affine(x, torch.zeros(6, dtype=torch.float64), _gen(), n_samples=4)
    assert out.shape == (4 * 3, 2, 6, 6)
    torch.testing.assert_close(out, x.repeat(4, 1, 1, 1), atol=1e-12, rtol=0)


def test_affine_rotation_generator_by_half_pi_is_rot90() -> None:
    x = _image(2, 3, 8, 8)
    magnitudes = torch.zeros(6, dtype=torch.float64)
    magnitudes[2] = math.pi / 2
    noise = torch.zeros(1, 2, 6, dtype=torch.float64)
    noise[..., 2] = 1.0
    out = affine(x, magnitudes, noise=noise)
    expected = torch.rot90(x, 1, dims=(2, 3))
    torch.testing.assert_close(out[..., 1:-1, 1:-1], expected[..., 1:-1, 1:-1])


def test_affine_is_sample_major() -> None:
    x = _image(3, 1, 6, 6)
    noise = sample_affine_noise(2, 3, _gen())
    magnitudes = torch.full((6,), 0.3, dtype=torch.float64)
    out = affine(x, magnitudes, noise=noise).view(2, 3, 1, 6, 6)
    for s in range(2):
        for b in range(3):
            single = affine(x[b : b + 1], magnitudes, noise=noise[s : s + 1, b : b + 1])
            torch.testing.assert_close(out[s, b], single[0])


def test_affine_generators_shape_and_rotation() -> None:
    assert AFFINE_GENERATORS.shape == (6, 3, 3)
    rotation = torch.linalg.matrix_exp(AFFINE_GENERATORS[2] * math.pi / 2)
    torch.testing.assert_close(rotation[:2, :2], torch.tensor([[0.0, -1.0], [1.0, 0.0]]))


def test_affine_is_deterministic_per_seed() -> None:
    x = _image(4, 1, 6, 6, torch.float32)
    magnitudes = torch.full((6,), 0.2)
    a = affine(x, magnitudes, _gen(3), n_samples=2)
    assert torch.equal(a, affine(x, magnitudes, _gen(3), n_samples=2))
    assert not torch.equal(a, affine(x, magnitudes, _gen(4), n_samples=2))


def test_gradcheck_translate() -> None:
    x = _image(2, 1, 5, 5)
    noise = 2 * torch.rand(2, 2, generator=_gen(), dtype=torch.float64) - 1
    magnitude = torch.tensor(0.37, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda m: translate(x, m, noise=noise), (magnitude,))


def test_gradcheck_affine() -> None:
    x = _image(2, 1, 5, 5)
    noise = sample_affine_noise(2, 2, _gen()).double()
    magnitudes = torch.tensor([0.1, -0.2, 0.3, 0.15, -0.1, 0.05], dtype=torch.float64)
    magnitudes.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda m: affine(x, m, noise=noise), (magnitudes,))


def test_float32_gradient_reaches_magnitudes() -> None:
    x = _image(4, 3, 8, 8, torch.float32)
    magnitudes = torch.full((6,), 0.1, requires_grad=True)
    affine(x, magnitudes, _gen(), n_samples=3).square().sum().backward()
    assert magnitudes.grad is not None and torch.all(magnitudes.grad != 0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_input_with_cpu_generator_matches_cpu() -> None:
    x = _image(4, 3, 8, 8, torch.float32)
    magnitudes = torch.full((6,), 0.2)
    cpu = affine(x, magnitudes, _gen(7), n_samples=2)
    cuda = affine(x.cuda(), magnitudes.cuda(), _gen(7), n_samples=2)
    torch.testing.assert_close(cuda.cpu(), cpu, atol=1e-5, rtol=1e-4)
    assert torch.equal(flip_crop(x.cuda(), _gen(7)).cpu(), flip_crop(x, _gen(7)))
