"""Clear the stored outputs of notebook cells that ran an offline twin (their output carries `twin_notice`'s line).

Committed outputs must come from real runs: real data or the real model (DEVELOPERS.md, rule 1). A notebook executed
offline shows twins' noise, labelled by `genaibook.offline.twin_notice`; this removes those outputs before a commit,
and the markdown next to each such cell states the book's result for the real model.

Usage: python scripts/strip_twin_outputs.py [--check] [NOTEBOOK ...]   (default: every notebook under nbs/)
       --check: change nothing; exit 1, naming them, if any notebook stores a twin's output
"""

import json
import sys
from pathlib import Path

from genaibook.offline import TWIN_NOTICE

ROOT = Path(__file__).resolve().parent.parent


def output_text(output: dict) -> str:
    return "".join(output.get("text", "")) + "".join(output.get("data", {}).get("text/plain", ""))


def twin_cells(nb: dict) -> list[dict]:
    "The code cells whose stored outputs carry the twin notice."
    return [c for c in nb["cells"] if any(TWIN_NOTICE in output_text(o) for o in c.get("outputs", []))]


def strip(path: Path) -> int:
    "Clear the outputs of every cell whose outputs mention the twin notice; return how many cells were cleared."
    nb = json.loads(path.read_text())
    cells = twin_cells(nb)
    for cell in cells:
        cell["outputs"], cell["execution_count"] = [], None
    if cells:
        path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return len(cells)


if __name__ == "__main__":
    check = "--check" in sys.argv[1:]
    paths = [Path(p) for p in sys.argv[1:] if p != "--check"] or sorted((ROOT / "nbs").rglob("*.ipynb"))
    found = {p: n for p in paths if (n := len(twin_cells(json.loads(p.read_text()))) if check else strip(p))}
    for p, n in found.items():
        print(f"{p}: {'stores' if check else 'cleared'} {n} twin output(s)")
    if check and found:
        sys.exit("run python scripts/strip_twin_outputs.py to clear them (committed outputs come from real runs)")
