"""hgbench against its peers, side by side in one process: one ratio table of time and memory.

    pip install -e ".[test]" torchopt     # higher, laplace-torch (+ backends), torchopt
    python benchmarks/peers.py [--parts unroll,ift,laplace,tse] [--models mlp,cnn] [--rounds 5]
        [--structures diag,kron,full] [--device cpu] [--threads 1] [--max-memory-gb 12]

On held-out models (plain nn.Sequential, so every peer's backend can hook every layer):
MLP 64-128-128-10 (tanh) and a CNN (two 3×3 convolutions of width 16, ReLU, 2×2 max-pools,
linear head) on 8×8 digits, one weight-decay hparam per tensor.

- unroll: `hgbench.numerics.unroll` against `higher` (weight decay through its differentiable
optimizer,
  its fastest exact use) and torchopt's MetaSGD (penalty in the loss), K = 20 steps of SGD with
  momentum on batches of 100, the validation loss on 400 points (benchmarks/unroll_vs_higher.py).
- ift: `hgbench.numerics.implicit` against torchopt's implicit differentiation, CG with 20
iterations
  (benchmarks/ift_vs_torchopt.py).
- laplace: one full-batch marginal-likelihood step (fit, value, gradient in the log prior
  precisions) against laplace-torch with each backend: BackPACK, ASDL, Curvlinops
  (benchmarks/laplace_vs_laplace_torch.py).
- tse: each hypergradient in training-step equivalents beside its operation count
  (benchmarks/hypergradient_cost.py).

Every pair is first checked for agreement in float64 (relative error of the hypergradient, or of
the value and its gradient); a peer that disagrees is listed but is no baseline. Timings are in
float32, `--rounds` alternating rounds (every job once per round, so drifts in machine load hit
all alike); the table gives medians, the ratio hgbench / peer (below 1: hgbench is faster) with
its range over rounds, and peak memory: on a GPU the allocator's peak, on a CPU the peak of
tensor memory held during one call, from the profiler's allocation events (an op's temporary
buffers freed within it are not seen; nor, it seems, allocations inside torch.func transforms),
and beside it the peak RSS over the call (`rss_peak_mb`). Seconds are the process's CPU time on
a CPU (see `Clock`), the wall clock on a GPU. Never asserts on times.
"""

from __future__ import annotations

from peers_common import Row, configure, parse_options, print_table  # benchmarks/ on sys.path


def main(argv: list[str] | None = None) -> None:
    args = parse_options(argv)
    device, dtype = configure(args)
    parts = args.parts.split(",")
    models = args.models.split(",")
    rows: list[Row] = []
    for name in models:
        if "unroll" in parts:
            from unroll_vs_higher import unroll_rows

            rows += unroll_rows(name, device, dtype, args.rounds)
        if "ift" in parts:
            from ift_vs_torchopt import peer_rows as ift_rows

            rows += ift_rows(name, device, dtype, args.rounds)
        if "laplace" in parts:
            from laplace_vs_laplace_torch import peer_rows as laplace_rows

            rows += laplace_rows(name, device, dtype, args.rounds, args.structures.split(","))
    if rows:
        print_table(rows)
    if "tse" in parts:
        from hypergradient_cost import print_tse, tse_table

        print_tse({name: tse_table(name, device, dtype, args.rounds) for name in models})


if __name__ == "__main__":
    main()
