"""Clear the stored outputs of notebook cells that ran an offline twin (their output carries `twin_notice`'s line).

Committed outputs must come from real runs: real data or the real model (DEVELOPERS.md, rule 1). A notebook executed
offline shows twins' noise, labelled by `genaibook.offline.twin_notice`; `genaibook_course --inplace` clears those
outputs itself (`genaibook.course.clear_twin_outputs`), and this does the same for notebooks saved another way
(from Jupyter, say). The markdown next to each such cell states the book's result for the real model.

Usage: python scripts/strip_twin_outputs.py [--check] [NOTEBOOK ...]   (default: every notebook under nbs/)
       --check: change nothing; exit 1, naming them, if any notebook stores a twin's output
"""

import json
import sys
from pathlib import Path

from genaibook.course import clear_twin_outputs, twin_output_cells

ROOT = Path(__file__).resolve().parent.parent


def strip(path: Path) -> int:
    "Clear the outputs of every cell whose outputs mention the twin notice; return how many cells were cleared."
    nb = json.loads(path.read_text())
    cleared = clear_twin_outputs(nb)
    if cleared:
        path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return cleared


if __name__ == "__main__":
    check = "--check" in sys.argv[1:]
    paths = [Path(p) for p in sys.argv[1:] if p != "--check"] or sorted((ROOT / "nbs").rglob("*.ipynb"))
    found = {p: n for p in paths if (n := len(twin_output_cells(json.loads(p.read_text()))) if check else strip(p))}
    for p, n in found.items():
        print(f"{p}: {'stores' if check else 'cleared'} {n} twin output(s)")
    if check and found:
        sys.exit("run python scripts/strip_twin_outputs.py to clear them (committed outputs come from real runs)")
