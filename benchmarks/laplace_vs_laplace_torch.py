"""One full-batch marginal-likelihood step, hgbench.numerics.laplace vs laplace-torch, side by side.

A step is what `laplace_full` does per curvature fit: fit the GGN structure on all N training
points at the current params, evaluate the log marginal likelihood at layer-wise prior precisions
and differentiate it with respect to them. Both sides get the same model (a plain nn.Sequential:
every laplace-torch backend hooks every layer of it), params, data and dtype, and the same batch
size (hgbench's `chunk_size`, laplace-torch's DataLoader). laplace-torch runs with each backend
that implements the structure (BackPACK, ASDL, Curvlinops); values and gradients are checked in
float64 first, and hgbench is compared with the fastest backend that agrees.

    python benchmarks/laplace_vs_laplace_torch.py [--models mlp,cnn] [--structures diag,kron,full]
        [--rounds 5] [--dtype float32]

is `python benchmarks/peers.py --parts laplace` (the same options): this module holds the laplace
part of peers.py's ratio table, peers.py the measuring, the models and the driver.
"""

from __future__ import annotations

import math
import sys
from argparse import Namespace

import torch
from peers_cli import run  # benchmarks/ is on sys.path
from peers_common import Part, Row, batch_of, build, compare, digits, trainable
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from hgbench.contracts.hparams import WD_PREFIX
from hgbench.numerics.laplace import Structure, fit_laplace

# training points per structure, fitted in chunks of the model's batch size; full on 300 points
# and, for the original MLP, a narrower one (a dense P × P GGN on the 26k-parameter one is 2.7 GB
# in float32 for laplace-torch)
SIZES = {"diag": 1000, "kron": 1000, "full": 300}
BACKENDS = ("BackPackGGN", "AsdlGGN", "CurvlinopsGGN")


def hgbench_step(
    model: nn.Module, log_delta: Tensor, x: Tensor, y: Tensor, structure: str, batch: int
) -> tuple[Tensor, Tensor]:
    """log q and d log q / d log δ (one δ per tensor); hgbench's hparam is log δ − log N."""
    n = y.shape[0]
    params = {k: v.detach() for k, v in model.named_parameters()}
    hparams = {
        WD_PREFIX + k: (log_delta[i] - math.log(n)).clone().requires_grad_(True)
        for i, k in enumerate(params)
    }
    fit = fit_laplace(model, params, hparams, x, y, Structure(structure), chunk_size=batch)
    value = fit.log_marglik(params, hparams, n)
    grads = torch.autograd.grad(value, list(hparams.values()))
    return value.detach(), torch.stack(grads)


def laplace_torch_step(
    model: nn.Module,
    log_delta: Tensor,
    x: Tensor,
    y: Tensor,
    structure: str,
    batch: int,
    backend: str,
) -> tuple[Tensor, Tensor]:
    import laplace
    import laplace.curvature

    net = trainable(model)
    la = laplace.Laplace(
        net,
        "classification",
        subset_of_weights="all",
        hessian_structure=structure,
        backend=getattr(laplace.curvature, backend),
    )
    la.fit(DataLoader(TensorDataset(x, y), batch_size=batch))
    log_delta = log_delta.clone().requires_grad_(True)
    value = la.log_marginal_likelihood(prior_precision=log_delta.exp())
    (grad,) = torch.autograd.grad(value, log_delta)
    return value.detach(), grad


def _case(name: str, structure: str, device: torch.device, dtype: torch.dtype):
    from peers_family import Act, Arch, Kind

    n, batch = SIZES[structure], batch_of(name)
    if name == "mlp" and structure == "full":
        torch.manual_seed(0)
        model = Arch(Kind.MLP, (32, 32), Act.TANH).module().to(device, dtype)
        for p in model.parameters():
            p.requires_grad_(False)
    else:
        model = build(name, device, dtype)
    x, y, _, _ = digits(n, 10, device, dtype)
    n_tensors = len(list(model.parameters()))
    log_delta = torch.linspace(-1.0, 2.0, n_tensors, dtype=dtype, device=device)
    return model, log_delta, x, y, batch


def _agreement(ours: tuple[Tensor, Tensor], theirs: tuple[Tensor, Tensor]) -> tuple[str, bool]:
    value = float(abs(ours[0] - theirs[0]) / abs(theirs[0]))
    grad = float((ours[1] - theirs[1]).norm() / theirs[1].norm())
    return f"value {value:.1e}, gradient {grad:.1e}", value <= 1e-6 and grad <= 1e-6


def peer_rows(name: str, device: torch.device, dtype: torch.dtype, rounds: int, structures=None):
    """peers.py's rows: every structure against every laplace-torch backend on model `name`."""

    rows = []
    for structure in structures or SIZES:
        model, log_delta, x, y, batch = _case(name, structure, device, torch.float64)
        ours = hgbench_step(model, log_delta, x, y, structure, batch)
        agreement = {}
        for backend in BACKENDS:
            try:
                theirs = laplace_torch_step(model, log_delta, x, y, structure, batch, backend)
            except Exception as err:  # a backend without this structure or layer, or memory
                agreement[backend] = (_failure(err), False)
            else:
                agreement[backend] = _agreement(ours, theirs)
        running = {b for b, (text, _) in agreement.items() if not text.startswith("failed")}
        model, log_delta, x, y, batch = _case(name, structure, device, dtype)
        n = y.shape[0]
        rows += compare(
            "laplace",
            f"{name} {structure} N={n}",
            lambda m=model, d=log_delta, x=x, y=y, s=structure, b=batch: hgbench_step(
                m, d, x, y, s, b
            ),
            {
                backend: (
                    lambda m=model, d=log_delta, x=x, y=y, s=structure, b=batch, k=backend: (
                        laplace_torch_step(m, d, x, y, s, b, k)
                    )
                )
                for backend in BACKENDS
                if backend in running
            },
            agreement,
            rounds,
            device,
        )
    return rows


def _failure(err: Exception) -> str:
    text = str(err)
    if isinstance(err, MemoryError) or "can't allocate memory" in text:
        return "failed: out of memory (peers.py --max-memory-gb)"
    return f"failed: {type(err).__name__}: {text[:60]}"


def _rows(name: str, device: torch.device, dtype: torch.dtype, args: Namespace) -> list[Row]:
    return peer_rows(name, device, dtype, args.rounds, args.structures.split(","))


PART = Part(needs=("laplace",), rows=_rows)


def main(argv: list[str] | None = None) -> None:
    """peers.py's laplace part alone (same options: --models, --structures, --rounds, ...)."""
    argv = sys.argv[1:] if argv is None else argv
    run(["--parts", "laplace", *argv], {"laplace": PART}, __doc__.split("\n\n")[0])


if __name__ == "__main__":
    main()
