"""Network architectures for the tasks, all free of normalisation layers.

No BatchNorm anywhere: per-example Jacobians (NTK, GGN, Kron curvature) and `torch.func.vmap`
need every example's output to depend on that example alone. The residual networks use Fixup
initialisation (Zhang, Dauphin and Ma, ICLR 2019) to train without normalisation. Every activation
is out-of-place, so `torch.func` transforms (vmap, jacrev, jvp) apply to every model here.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Activation = Literal["tanh", "relu"]
_ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU}


def count_params(module: nn.Module) -> int:
    """Number of scalar parameters in `module` (trainable or not)."""
    return sum(p.numel() for p in module.parameters())


class MLP(nn.Sequential):
    """Fully connected network on the flattened input: Linear, activation, ..., Linear."""

    def __init__(
        self,
        in_features: int,
        hidden: tuple[int, ...],
        out_features: int,
        activation: Activation = "tanh",
    ) -> None:
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {list(_ACTIVATIONS)}, got {activation!r}")
        act = _ACTIVATIONS[activation]
        layers: list[nn.Module] = [nn.Flatten()]
        widths = [in_features, *hidden]
        for fan_in, fan_out in zip(widths[:-1], widths[1:], strict=True):
            layers += [nn.Linear(fan_in, fan_out), act()]
        layers.append(nn.Linear(widths[-1], out_features))
        super().__init__(*layers)


class SmallCNN(nn.Module):
    """Two 3x3 conv + ReLU + 2x2 max-pool stages and a linear head; about 3k params at width 16.

    Sized for 8x8 digits (8 -> 4 -> 2 pixels); other sizes work through the adaptive pool to 2x2.
    """

    def __init__(self, in_channels: int = 1, n_classes: int = 10, width: int = 16) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.head = nn.Linear(width * 4, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)  # (B, w, H/2, W/2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)  # (B, w, H/4, W/4)
        x = F.adaptive_avg_pool2d(x, 2)  # (B, w, 2, 2)
        return self.head(x.flatten(1))


# --- Fixup residual networks ------------------------------------------------------------------


class Bias(nn.Module):
    """Adds one learned scalar (init 0): Fixup's stand-in for a normalisation layer's shift.

    A module rather than a bare parameter, so per-layer curvature code (Kron, diagonal GGN)
    finds every parameter inside a leaf module, as with asdl's Bias.
    """

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1))

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.bias)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.bias


class Scale(nn.Module):
    """Multiplies by one learned scalar (init 1): Fixup's stand-in for a normalisation's scale."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1))

    def reset_parameters(self) -> None:
        nn.init.ones_(self.weight)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.weight


def _conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)


def _he_normal_(weight: Tensor, gain: float = 1.0) -> None:
    """He-normal initialisation on fan-out, as in the Fixup reference code, times `gain`."""
    fan_out = weight.shape[0] * math.prod(weight.shape[2:])
    nn.init.normal_(weight, mean=0.0, std=gain * math.sqrt(2.0 / fan_out))


class _FixupBlock(nn.Module):
    """Two 3x3 convs with Fixup's scalar biases and multiplier; a 1x1 conv where shapes change.

    Subclasses define `branch` (the residual path) and `shortcut`; `forward` combines them.
    """

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.bias1a, self.bias1b, self.bias2a, self.bias2b = Bias(), Bias(), Bias(), Bias()
        self.scale = Scale()
        self.conv1 = _conv3x3(c_in, c_out, stride)
        self.conv2 = _conv3x3(c_out, c_out)
        self.proj: nn.Conv2d | None = None
        if stride != 1 or c_in != c_out:
            self.proj = nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)

    def branch(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def shortcut(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def fixup_init_(self, n_blocks: int) -> None:
        """Fixup initialisation for a net of `n_blocks` residual blocks."""
        # m = 2 layers per branch: scale the first conv by L^(-1/(2m-2)) = L^(-1/2) and zero the
        # last, so every branch starts at zero and every block starts as its shortcut.
        _he_normal_(self.conv1.weight, gain=n_blocks**-0.5)
        nn.init.zeros_(self.conv2.weight)
        if self.proj is not None:
            _he_normal_(self.proj.weight)  # fan-out He keeps the 2nd moment for c -> 2c channels
        for scalar in (self.bias1a, self.bias1b, self.bias2a, self.bias2b, self.scale):
            scalar.reset_parameters()


class FixupBasicBlock(_FixupBlock):
    """Post-activation basic block of the CIFAR ResNet: relu(branch(x) + shortcut(x)).

    branch(x) = scale * conv2(relu(conv1(x + b1a) + b1b) + b2a) + b2b
    """

    def branch(self, x: Tensor) -> Tensor:
        out = F.relu(self.bias1b(self.conv1(self.bias1a(x))))
        return self.bias2b(self.scale(self.conv2(self.bias2a(out))))

    def shortcut(self, x: Tensor) -> Tensor:
        return x if self.proj is None else self.proj(self.bias1a(x))

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.branch(x) + self.shortcut(x))


class FixupWideBlock(_FixupBlock):
    """Pre-activation block of the wide ResNet: branch(x) + shortcut(x).

    branch(x) = scale * conv2(relu(conv1(relu(x + b1a)) + b1b) + b2a) + b2b; where the shape
    changes, the shortcut is a 1x1 conv of relu(x + b1a), as in WRN.
    """

    def branch(self, x: Tensor) -> Tensor:
        out = F.relu(self.bias1b(self.conv1(F.relu(self.bias1a(x)))))
        return self.bias2b(self.scale(self.conv2(self.bias2a(out))))

    def shortcut(self, x: Tensor) -> Tensor:
        return x if self.proj is None else self.proj(F.relu(self.bias1a(x)))

    def forward(self, x: Tensor) -> Tensor:
        return self.branch(x) + self.shortcut(x)


class _FixupNet(nn.Module):
    """Stem conv, three stages of residual blocks (strides 1, 2, 2), global pool, linear head."""

    # Pre-activation blocks start with their own ReLU and leave the last one to the net.
    pre_activation = False

    def __init__(
        self,
        block: type[_FixupBlock],
        blocks_per_stage: int,
        widths: tuple[int, int, int, int],  # stem, stage 1, stage 2, stage 3
        n_classes: int,
        in_channels: int,
    ) -> None:
        super().__init__()
        self.stem = _conv3x3(in_channels, widths[0])
        self.bias_stem = Bias()
        stages: list[_FixupBlock] = []
        for c_in, c_out, stride in zip(widths[:3], widths[1:], (1, 2, 2), strict=True):
            stages.append(block(c_in, c_out, stride))
            stages += [block(c_out, c_out, 1) for _ in range(blocks_per_stage - 1)]
        self.blocks = nn.Sequential(*stages)
        self.bias_head = Bias()
        self.head = nn.Linear(widths[3], n_classes)
        self.fixup_init_()

    def fixup_init_(self) -> None:
        """Reset every parameter to its Fixup initialisation: zero head, zero residual branches."""
        _he_normal_(self.stem.weight)
        self.bias_stem.reset_parameters()
        for block in self.blocks:
            block.fixup_init_(len(self.blocks))
        self.bias_head.reset_parameters()
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def features(self, x: Tensor) -> Tensor:
        """Globally pooled features that enter the linear head, (B, widths[3])."""
        x = self.bias_stem(self.stem(x))  # (B, widths[0], H, W)
        if self.pre_activation:
            x = F.relu(self.blocks(x))
        else:
            x = self.blocks(F.relu(x))
        return x.mean(dim=(2, 3))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.bias_head(self.features(x)))


class FixupResNet(_FixupNet):
    """CIFAR ResNet-`depth` (He et al. 2016) with Fixup instead of BatchNorm.

    Stages of width w, 2w, 4w with (depth - 2) / 6 basic blocks each; 1x1 conv shortcuts where
    the shape changes. Depth 8, width 16 is the model of the CIFAR-10 subset experiments.
    """

    def __init__(
        self, depth: int = 8, width: int = 16, n_classes: int = 10, in_channels: int = 3
    ) -> None:
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"FixupResNet depth must be 6k + 2 with k >= 1, got {depth}")
        widths = (width, width, 2 * width, 4 * width)
        super().__init__(FixupBasicBlock, (depth - 2) // 6, widths, n_classes, in_channels)


class FixupWideResNet(_FixupNet):
    """Wide ResNet WRN-`depth`-`widen` (Zagoruyko and Komodakis 2016) with Fixup, no BatchNorm.

    Stages of width 16k, 32k, 64k with (depth - 4) / 6 pre-activation blocks each; WRN-16-4 has
    about 2.75M params and is the model of the full CIFAR-10 experiments.
    """

    pre_activation = True

    def __init__(
        self, depth: int = 16, widen: int = 4, n_classes: int = 10, in_channels: int = 3
    ) -> None:
        if depth < 10 or (depth - 4) % 6:
            raise ValueError(f"FixupWideResNet depth must be 6k + 4 with k >= 1, got {depth}")
        widths = (16, 16 * widen, 32 * widen, 64 * widen)
        super().__init__(FixupWideBlock, (depth - 4) // 6, widths, n_classes, in_channels)
