"""How each method's cost grows: the scaling sweep (`python -m hgbench scaling`).

- `sweep`: the axes (hparams, width, horizon, block), their sizes and series;
- `worker`: one cell measured in its own process (cost state, memory region, timed calls);
- `pool`: the worker processes, with time limits enforced from outside;
- `memory`: per-cell peak memory on a CPU (RSS over a reset high-water mark) or a GPU;
- `counts`: operation counts from timed units, to set beside each measured cost;
- `run`: the sweep into a result store; `cli`: the command.

The report is hgbench.report.scaling.writer.
"""
