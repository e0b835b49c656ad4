"""hgbench against its peers, side by side in one process: one ratio table of time and memory.

    pip install -e ".[test]" torchopt     # higher, laplace-torch (+ backends), torchopt
    python benchmarks/peers.py [--parts unroll,ift,laplace,tse] [--models family] [--rounds 5]
        [--structures diag,kron] [--device cpu|cuda] [--threads 1] [--max-memory-gb 12]

On a family of ten generated held-out models (benchmarks/peers_family.py: plain nn.Sequential
MLPs and CNNs on the 8×8 digits varying width, depth, activation, bias and batch size; `mlp` and
`cnn` are the first two, the benchmark's original MLP 64-128-128-10 and CNN), one weight-decay
hparam per tensor; the run ends with the family's table, each contest's median and worst ratio
(docs/peers.md).

- unroll: `hgbench.numerics.unroll` against `higher` (weight decay through its differentiable
optimizer,
  its fastest exact use) and torchopt's MetaSGD (penalty in the loss), K = 20 steps of SGD with
  momentum on the model's batches, the validation loss on 400 points; and hgbench with its
  penalty in the loss against `higher` (benchmarks/unroll_vs_higher.py).
- ift: `hgbench.numerics.implicit` against torchopt's implicit differentiation, CG with 20
iterations
  (benchmarks/ift_vs_torchopt.py).
- laplace: one full-batch marginal-likelihood step (fit, value, gradient in the log prior
  precisions) against laplace-torch with each backend: BackPACK, ASDL, Curvlinops
  (benchmarks/laplace_vs_laplace_torch.py).
- tse: each hypergradient in training-step equivalents beside its operation count
  (benchmarks/hypergradient_cost.py).
- counts: what each side of the unroll and IFT contests runs and keeps, counted (aten ops,
  FLOPs, host reads, saved tensors by op, HVPs; deterministic: benchmarks/peers_counts.py).

Every pair is first checked for agreement in float64 (relative error of the hypergradient, or of
the value and its gradient); a peer that disagrees is listed but is no baseline. Timings are in
float32, `--rounds` alternating rounds (every job once per round, so drifts in machine load hit
all alike); the table gives medians, the ratio hgbench / peer (below 1: hgbench is faster) with
its range over rounds, and memory: first the peak of what autograd saves for backward during
one call (`saved_mb`: deterministic, by saved-tensor hooks); then on a GPU the allocator's peak,
on a CPU the peak of tensor memory held during one call, from the profiler's allocation events
(an op's temporary buffers freed within it are not seen; nor, it seems, allocations inside
torch.func transforms), and beside it the peak RSS over the call (`rss_peak_mb`). Seconds are
the process's CPU time on a CPU (see `Clock`), CUDA events on a GPU. Never asserts on times.
"""

from __future__ import annotations

import hypergradient_cost  # benchmarks/ is on sys.path
import ift_vs_torchopt
import laplace_vs_laplace_torch
import peers_counts
import unroll_vs_higher
from peers_cli import run
from peers_common import Part

# every part; each part's own script (where it has one) runs it alone through the same driver
PARTS: dict[str, Part] = {
    "unroll": unroll_vs_higher.PART,
    "ift": ift_vs_torchopt.PART,
    "laplace": laplace_vs_laplace_torch.PART,
    "tse": hypergradient_cost.PART,
    "counts": peers_counts.PART,
}


def main(argv: list[str] | None = None) -> None:
    run(argv, PARTS, __doc__.split("\n\n")[0])


if __name__ == "__main__":
    main()
