"""Batched data augmentation on the input's device, differentiable in its magnitudes.

Every function takes a whole batch `x` (B, C, H, W) of floats and transforms all samples at once
(no Python loop over samples). Randomness comes from a `torch.Generator` or from noise drawn
beforehand, so two methods can be fed exactly the same augmented batch. Magnitudes are tensors:
they are hparams, and hypergradients flow into them through `F.grid_sample`.

Geometry follows `F.affine_grid` (align_corners=False): the image spans [-1, 1] on both axes,
x to the right, y downwards, and a transform maps output coordinates to the input coordinates
sampled, so the content moves by its inverse.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hgbench.contracts.hparams import AUG_PREFIX, HParam

# Generators of the 2D affine group's Lie algebra, acting on homogeneous (x, y, 1).
AFFINE_GENERATORS = torch.tensor(
    [
        [[0, 0, 1], [0, 0, 0], [0, 0, 0]],  # translate x
        [[0, 0, 0], [0, 0, 1], [0, 0, 0]],  # translate y
        [[0, -1, 0], [1, 0, 0], [0, 0, 0]],  # rotate
        [[1, 0, 0], [0, 0, 0], [0, 0, 0]],  # scale x (log-scale)
        [[0, 0, 0], [0, 1, 0], [0, 0, 0]],  # scale y (log-scale)
        [[0, 1, 0], [1, 0, 0], [0, 0, 0]],  # shear (symmetric)
    ],
    dtype=torch.float32,
)  # (6, 3, 3)
AFFINE_NAMES = ("translate_x", "translate_y", "rotate", "scale_x", "scale_y", "shear")


def _uniform(
    shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device
) -> Tensor:
    """U[-1, 1] noise drawn on the generator's device (so a seed gives the same draws anywhere)."""
    where = generator.device if generator is not None else device
    return (2 * torch.rand(shape, generator=generator, device=where) - 1).to(device)


def _randint(
    high: int, shape: tuple[int, ...], generator: torch.Generator, device: torch.device
) -> Tensor:
    return torch.randint(high, shape, generator=generator, device=generator.device).to(device)


def flip_crop(
    x: Tensor, generator: torch.Generator, pad: int = 4, padding_mode: str = "constant"
) -> Tensor:
    """Random horizontal flip and random crop after padding by `pad` pixels: the CIFAR standard.

    Each sample independently is flipped with probability 1/2 and shifted by a uniform integer
    in [-pad, pad] on each axis; `padding_mode` is "constant" (zeros) or "reflect".
    Not differentiable and without magnitudes; `x` may be of any dtype.
    """
    b, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode=padding_mode)  # (B, C, H + 2p, W + 2p)
    flip = _randint(2, (b,), generator, x.device).bool()
    top = _randint(2 * pad + 1, (b,), generator, x.device)
    left = _randint(2 * pad + 1, (b,), generator, x.device)
    rows = top[:, None] + torch.arange(h, device=x.device)  # (B, H)
    cols = torch.arange(w, device=x.device).expand(b, w)  # (B, W)
    cols = left[:, None] + torch.where(flip[:, None], cols.flip(1), cols)
    # One gather for the whole batch: output[n, c, i, j] = padded[n, c, rows[n, i], cols[n, j]].
    batch = torch.arange(b, device=x.device)[:, None, None, None]
    channel = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    return padded[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]


def _sample(x: Tensor, theta: Tensor) -> Tensor:
    """Resample `x` (N, C, H, W) through affine maps `theta` (N, 2, 3): bilinear, zero padding."""
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)  # (N, H, W, 2)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def translate(
    x: Tensor,
    magnitude: Tensor,
    generator: torch.Generator | None = None,
    noise: Tensor | None = None,
) -> Tensor:
    """Shift each sample by u * magnitude, u ~ U[-1, 1]^2, in grid units (the image spans 2).

    `magnitude` is a scalar tensor (or one per axis, shape (2,)); gradients flow into it.
    `noise` (B, 2) replaces the draw from `generator`.
    """
    b = x.shape[0]
    u = noise if noise is not None else _uniform((b, 2), generator, x.device)  # (B, 2)
    shift = u.to(magnitude.device, magnitude.dtype) * magnitude  # (B, 2)
    eye = torch.eye(2, dtype=shift.dtype, device=shift.device).expand(b, 2, 2)
    theta = torch.cat([eye, shift[:, :, None]], dim=2)  # (B, 2, 3)
    return _sample(x, theta)


def sample_affine_noise(
    n_samples: int,
    batch: int,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """The U[-1, 1] noise `affine` draws itself, (S, B, 6), for callers that fix it beforehand."""
    return _uniform((n_samples, batch, 6), generator, torch.device(device or "cpu"))


def affine_matrices(magnitudes: Tensor, noise: Tensor) -> Tensor:
    """The maps exp(Σ_k u_k η_k G_k) as homogeneous matrices: noise (..., 6) -> (..., 3, 3)."""
    generators = AFFINE_GENERATORS.to(magnitudes.device, magnitudes.dtype)
    algebra = torch.einsum(
        "...k,k,kij->...ij", noise.to(magnitudes.device, magnitudes.dtype), magnitudes, generators
    )
    return torch.linalg.matrix_exp(algebra)


def affine(
    x: Tensor,
    magnitudes: Tensor,
    generator: torch.Generator | None = None,
    noise: Tensor | None = None,
    n_samples: int = 1,
) -> Tensor:
    """`n_samples` random affine transforms of each sample, from the Lie-algebra magnitudes η.

    Per sample and draw, u ~ U[-1, 1]^6 and the map is matrix_exp(Σ_k u_k η_k G_k) with G the
    `AFFINE_GENERATORS`; gradients flow into `magnitudes` (6,). `noise` (S, B, 6) replaces the
    draw from `generator` (S is then taken from it). Returns (S * B, C, H, W) ordered sample-major,
    so `out.view(S, B, C, H, W)[s]` is draw s of the whole batch (average logits over S).
    Orientation: rotate magnitude pi/2 with u_rotate = 1 gives `torch.rot90(x, 1, dims=(2, 3))`.
    """
    b = x.shape[0]
    if noise is None:
        noise = sample_affine_noise(n_samples, b, generator, x.device)
    if noise.ndim != 3 or noise.shape[1:] != (b, 6):
        raise ValueError(f"noise must have shape (S, {b}, 6), got {tuple(noise.shape)}")
    s = noise.shape[0]
    theta = affine_matrices(magnitudes, noise)[..., :2, :].reshape(s * b, 2, 3)
    repeated = x.expand(s, *x.shape).reshape(s * b, *x.shape[1:])  # (S * B, C, H, W)
    return _sample(repeated, theta)


# --- learned invariance (lila, Immer et al. 2022): S affine copies, logits averaged over them --

AFFINE = AUG_PREFIX + "affine"  # the hparam: 6 magnitudes η, in AFFINE_NAMES order


def affine_hparam(init: float) -> HParam:
    """The `learned_affine` setting's hparam: all six magnitudes start at `init`."""
    return HParam(AFFINE, (6,), init, 0.0, 1.0)


def learned_affine_copies(
    x: Tensor, magnitudes: Tensor, n_samples: int, generator: torch.Generator
) -> Tensor:
    """S affine copies of each image from magnitudes η (6,): (B, C, H, W) -> (B, S, C, H, W)."""
    b = x.shape[0]
    out = affine(x, magnitudes, generator, n_samples=n_samples)  # (S * B, C, H, W) sample-major
    return out.view(n_samples, b, *x.shape[1:]).transpose(0, 1)


def learned_affine_prediction(
    problem, params, hparams: dict[str, Tensor], x: Tensor, n_samples: int
) -> Tensor:
    """Test-time logits of a `learned_affine` task: averaged over `n_samples` copies from the
    learned distribution, drawn from a fixed noise stream so every evaluation of a state agrees.
    `problem` is the task's Problem (its forward and named generators)."""
    gen = problem.generator("test-augmentation")
    return problem.forward(params, learned_affine_copies(x, hparams[AFFINE], n_samples, gen))


class AveragedLogits(nn.Module):
    """Wraps a classifier: (B, C, H, W) as it is; (B, S, C, H, W) -> logits averaged over S.

    Examples stay independent (per-example Jacobians and K-FAC see S copies of each example).
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim == 5:
            b, s = x.shape[:2]
            return self.net(x.flatten(0, 1)).view(b, s, -1).mean(1)
        return self.net(x)


# --- a learned augmentation network (Lorraine et al. 2020, §5.3): every weight is an hparam ----

AUGNET_PREFIX = "augnet."


def _kaiming(gen: torch.Generator, shape: tuple[int, ...]) -> Tensor:
    fan_in = shape[1] * shape[2] * shape[3]
    return torch.randn(shape, generator=gen) * (2.0 / fan_in) ** 0.5


def _zeros(gen: torch.Generator, shape: tuple[int, ...]) -> Tensor:
    return torch.zeros(shape)


def augnet_hparams(channels: int, hidden: int = 16) -> list[HParam]:
    """The hparams of `augment_net`: two 3×3 convolutions. The second starts at zero, so the net
    starts as the identity map and its first hypergradients are those of a small residual."""

    def spec(name: str, shape: tuple[int, ...], init_fn) -> HParam:
        return HParam(AUGNET_PREFIX + name, shape, 0.0, 0.0, 0.0, init_fn, searchable=False)

    return [
        spec("conv1.weight", (hidden, channels + 1, 3, 3), _kaiming),
        spec("conv1.bias", (hidden,), _zeros),
        spec("conv2.weight", (channels, hidden, 3, 3), _zeros),
        spec("conv2.bias", (channels,), _zeros),
    ]


def augment_net(x: Tensor, hparams: dict[str, Tensor], generator: torch.Generator) -> Tensor:
    """x + g([x, ε]; hparams) with ε ~ N(0, 1) one noise channel per sample: a stochastic,
    learned, batched augmentation whose every weight the hypergradient reaches."""
    b, _, h, w = x.shape
    noise = torch.randn((b, 1, h, w), generator=generator, device=generator.device)
    z = torch.cat([x, noise.to(x.device, x.dtype)], dim=1)  # (B, C + 1, H, W)
    p = AUGNET_PREFIX
    z = F.relu(F.conv2d(z, hparams[p + "conv1.weight"], hparams[p + "conv1.bias"], padding=1))
    return x + F.conv2d(z, hparams[p + "conv2.weight"], hparams[p + "conv2.bias"], padding=1)
