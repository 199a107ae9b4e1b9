"""Clear the stored outputs of notebook cells that ran an offline twin (their output carries `twin_notice`'s line).

Committed outputs must come from real runs: real data or the real model (DEVELOPERS.md, rule 1). A notebook executed
offline shows twins' noise, labelled by `genaibook.offline.twin_notice`; this removes those outputs before a commit,
and the markdown next to each such cell states the book's result for the real model.

Usage: python scripts/strip_twin_outputs.py [NOTEBOOK ...]   (default: every notebook under nbs/)
"""
import json
import sys
from pathlib import Path

from genaibook.offline import TWIN_NOTICE

ROOT = Path(__file__).resolve().parent.parent

def output_text(output: dict) -> str:
    return "".join(output.get("text", "")) + "".join(output.get("data", {}).get("text/plain", ""))

def strip(path: Path) -> int:
    "Clear the outputs of every cell whose outputs mention the twin notice; return how many cells were cleared."
    nb = json.loads(path.read_text())
    cleared = 0
    for cell in nb["cells"]:
        if any(TWIN_NOTICE in output_text(o) for o in cell.get("outputs", [])):
            cell["outputs"], cell["execution_count"] = [], None
            cleared += 1
    if cleared: path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return cleared

if __name__ == "__main__":
    paths = [Path(p) for p in sys.argv[1:]] or sorted((ROOT/"nbs").rglob("*.ipynb"))
    for p in paths:
        if n := strip(p): print(f"{p}: cleared {n} twin output(s)")
