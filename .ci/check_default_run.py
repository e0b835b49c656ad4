"""After the README's first command: did the default suite write its report, with every method
the committed reference run has, each ending as it does there (ok, or skipped where the
reference skipped it)? Standard library only: it runs outside the fresh virtual environments.

    python3 .ci/check_default_run.py runs/default reports/default
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path


def final_rows(folder: Path) -> list[dict]:
    plain, packed = folder / "results.jsonl", folder / "results.jsonl.gz"
    text = plain.read_text() if plain.exists() else gzip.decompress(packed.read_bytes()).decode()
    rows = []
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and row.get("final"):
            rows.append(row)
    return rows


def outcomes(rows: list[dict]) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for row in rows:
        out.setdefault((row["task"], row["method"]), set()).add(row["status"])
    return out


def main(run: Path, reference: Path) -> int:
    problems = []
    if not (run / "report.md").exists():
        problems.append(f"{run / 'report.md'} was not written")
    got, want = outcomes(final_rows(run)), outcomes(final_rows(reference))
    for key in sorted(want):
        if key not in got:
            problems.append(f"{key[0]} × {key[1]}: in the reference run, missing here")
        elif "failed" in got[key] or "timeout" in got[key]:
            problems.append(f"{key[0]} × {key[1]}: {sorted(got[key])} here")
        elif got[key] != want[key]:
            problems.append(
                f"{key[0]} × {key[1]}: {sorted(got[key])}, reference {sorted(want[key])}"
            )
    for problem in problems:
        print(f"default run: {problem}", file=sys.stderr)
    cells = sum(1 for _ in final_rows(run))
    print(f"default run: {cells} cells, {len(got)} task × method pairs, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
