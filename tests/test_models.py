"""Architectures: shapes, no normalisation layers, Fixup at init, torch.func compatibility."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call, jacrev, vmap

from hgbench.tasks.models import (
    MLP,
    Bias,
    FixupResNet,
    FixupWideResNet,
    Scale,
    SmallCNN,
    count_params,
)

NORM_LAYERS = (
    nn.modules.batchnorm._NormBase,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.LocalResponseNorm,
)

# (name, builder, input shape of one example)
MODELS = [
    ("mlp", lambda: MLP(64, (32, 32), 10), (1, 8, 8)),
    ("mlp_relu", lambda: MLP(12, (7,), 3, activation="relu"), (12,)),
    ("small_cnn", lambda: SmallCNN(), (1, 8, 8)),
    ("fixup_resnet8", lambda: FixupResNet(depth=8, width=8), (3, 32, 32)),
    ("fixup_resnet14", lambda: FixupResNet(depth=14, width=4, n_classes=5), (3, 16, 16)),
    ("fixup_wrn10_1", lambda: FixupWideResNet(depth=10, widen=1), (3, 16, 16)),
]
IDS = [name for name, _, _ in MODELS]


def _randomise_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Move off the Fixup init (zero head and branches) so gradients and Jacobians are generic."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.2)
    return model


@pytest.mark.parametrize(("name", "build", "shape"), MODELS, ids=IDS)
def test_output_shape_and_no_normalisation(name: str, build, shape) -> None:
    model = build()
    out = model(torch.randn(4, *shape))
    n_classes = 3 if name == "mlp_relu" else 5 if name == "fixup_resnet14" else 10
    assert out.shape == (4, n_classes)
    assert not [m for m in model.modules() if isinstance(m, NORM_LAYERS)]


@pytest.mark.parametrize(("name", "build", "shape"), MODELS, ids=IDS)
def test_backward_reaches_every_parameter(name: str, build, shape) -> None:
    model = _randomise_(build())
    model(torch.randn(3, *shape)).logsumexp(-1).sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize(("name", "build", "shape"), MODELS, ids=IDS)
def test_every_parameter_sits_in_a_leaf_layer(name: str, build, shape) -> None:
    # Per-layer curvature (Kron, diagonal GGN) walks leaf modules of these kinds.
    leaves = (nn.Linear, nn.Conv2d, Bias, Scale)
    model = build()
    owned = {
        id(p) for m in model.modules() if isinstance(m, leaves) for p in m.parameters(recurse=False)
    }
    assert owned == {id(p) for p in model.parameters()}
    assert all(
        not list(m.parameters(recurse=False)) for m in model.modules() if not isinstance(m, leaves)
    )


def test_small_cnn_is_small() -> None:
    assert 1_000 < count_params(SmallCNN()) < 10_000


def test_wrn_16_4_parameter_count() -> None:
    assert 2_600_000 < count_params(FixupWideResNet(depth=16, widen=4)) < 2_800_000


def test_resnet_stage_widths_and_blocks() -> None:
    model = FixupResNet(depth=20, width=16)
    assert len(model.blocks) == 9  # (20 - 2) / 6 blocks in each of 3 stages
    assert [b.conv2.out_channels for b in model.blocks[::3]] == [16, 32, 64]
    with pytest.raises(ValueError, match="6k"):
        FixupResNet(depth=10)
    with pytest.raises(ValueError, match="6k"):
        FixupWideResNet(depth=15)


@pytest.mark.parametrize(
    "build", [lambda: FixupResNet(depth=14, width=8), lambda: FixupWideResNet(10, 2)]
)
def test_fixup_init_branches_are_zero(build) -> None:
    model = build()
    x = torch.randn(2, 3, 16, 16)
    h = model.bias_stem(model.stem(x))
    if not model.pre_activation:
        h = torch.relu(h)
    for block in model.blocks:
        assert block.branch(h).abs().max() == 0
        shortcut = block.shortcut(h)
        expected = shortcut if model.pre_activation else torch.relu(shortcut)
        torch.testing.assert_close(block(h), expected, rtol=0, atol=0)
        h = block(h)
    # The zero head makes every initial prediction uniform.
    assert model(x).abs().max() == 0


def test_fixup_first_conv_scaled_by_depth() -> None:
    torch.manual_seed(0)
    deep, shallow = FixupResNet(depth=56, width=16), FixupResNet(depth=8, width=16)
    # Same fan-out (w=16) in the first stage: std ratio is sqrt(L_shallow / L_deep) = sqrt(3/27).
    ratio = deep.blocks[0].conv1.weight.std() / shallow.blocks[0].conv1.weight.std()
    assert ratio.item() == pytest.approx((3 / 27) ** 0.5, rel=0.15)


@pytest.mark.parametrize(
    "build", [lambda: SmallCNN(), lambda: FixupResNet(depth=8, width=4)], ids=["cnn", "resnet8"]
)
def test_per_example_jacobians_with_vmap(build) -> None:
    model = _randomise_(build())
    params = {k: v.detach() for k, v in model.named_parameters()}
    size = 8 if isinstance(model, SmallCNN) else 16
    channels = 1 if isinstance(model, SmallCNN) else 3
    x = torch.randn(3, channels, size, size)

    def f(p: dict[str, torch.Tensor], xi: torch.Tensor) -> torch.Tensor:
        return functional_call(model, p, (xi[None],))[0]  # (C,)

    jac = vmap(jacrev(f), in_dims=(None, 0))(params, x)  # name -> (B, C, *param.shape)
    for i in range(len(x)):
        single = jacrev(f)(params, x[i])
        for k in params:
            assert jac[k].shape == (len(x), 10, *params[k].shape)
            torch.testing.assert_close(jac[k][i], single[k], atol=1e-5, rtol=1e-4)


def test_mlp_rejects_unknown_activation() -> None:
    with pytest.raises(ValueError, match="activation"):
        MLP(4, (3,), 2, activation="gelu")  # type: ignore[arg-type]
