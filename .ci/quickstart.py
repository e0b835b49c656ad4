"""The README's quick-start commands, one a line, as CI runs them.

They are read from the first ```bash block after the README's "## Quick start" heading, so that
what CI runs and what a new user reads cannot drift apart (tests/test_quickstart.py checks the
shape: two commands, the first with no extra, the second with the `test` extra).

    python3 .ci/quickstart.py [README.md]
"""

from __future__ import annotations

import re
import sys
from pathlib import Path


def commands(readme: Path) -> list[str]:
    text = readme.read_text()
    section = re.search(r"^## Quick start\n(.*?)(?=^## )", text, re.S | re.M)
    if section is None:
        raise SystemExit(f"{readme}: no '## Quick start' section")
    block = re.search(r"```bash\n(.*?)```", section.group(1), re.S)
    if block is None:
        raise SystemExit(f"{readme}: no ```bash block in the quick start")
    return [line.strip() for line in block.group(1).splitlines() if line.strip()]


if __name__ == "__main__":
    path = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parents[1] / "README.md")
    print("\n".join(commands(path)))
