"""Keep the stored output of every `show_code(name)` cell equal to the code it shows.

A chapter shows the code it teaches with `genaibook.viz.show_code(name)`, and its committed output is that code as it
was when the notebook last ran. When the package's code changes without changing what it does (a rename inside a
function, reformatting), the chapter's other outputs stay valid but those listings go stale. This rewrites them from
the installed package, without running the notebook: the output of `show_code` is the source and nothing else.

Usage: python scripts/refresh_show_code.py [--check] [NOTEBOOK ...]   (default: every notebook under nbs/)
       --check: change nothing; exit 1, naming each stale cell, if any listing differs from the code
"""

import argparse
import importlib
import json
import pkgutil
import re
import sys
from pathlib import Path

import genaibook
from genaibook.viz import show_code

ROOT = Path(__file__).resolve().parent.parent
SHOW_CODE_CELL = re.compile(r"^show_code\(([A-Za-z_][\w.]*)\)\s*(#.*)?$")  # a cell that is one show_code call


def find_object(dotted: str):
    "The package object `dotted` names (`Learner.fit`, `corrupt`), from the module whose `__all__` exports its first part."
    first, *rest = dotted.split(".")
    for info in pkgutil.iter_modules(genaibook.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"genaibook.{info.name}")
        if first in getattr(module, "__all__", ()):
            obj = getattr(module, first)
            for part in rest:
                obj = getattr(obj, part)
            return obj
    raise LookupError(f"no genaibook module exports {first!r}")


def listing_output(obj, execution_count=None) -> dict:
    "The execute_result a notebook stores for `show_code(obj)`."
    source = show_code(obj)
    return {
        "data": {"text/markdown": source._repr_markdown_(), "text/plain": str(source)},
        "execution_count": execution_count,
        "metadata": {},
        "output_type": "execute_result",
    }


def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else value


def stale_cells(nb: dict) -> list[tuple[dict, dict]]:
    "Each (cell, fresh output) whose stored listing differs from the code it names; cells with no output are skipped."
    found = []
    for cell in nb["cells"]:
        match = SHOW_CODE_CELL.match("".join(cell["source"]).strip()) if cell["cell_type"] == "code" else None
        results = [o for o in cell.get("outputs", []) if o.get("output_type") == "execute_result"]
        if not match or not results:
            continue
        fresh = listing_output(find_object(match.group(1)), results[0].get("execution_count"))
        if _text(results[0]["data"].get("text/plain", "")) != fresh["data"]["text/plain"]:
            found.append((cell, fresh))
    return found


def refresh(path: Path, check: bool) -> int:
    "Rewrite (or, with `check`, only count) the stale listings of one notebook."
    nb = json.loads(path.read_text())
    stale = stale_cells(nb)
    for cell, fresh in stale:
        name = SHOW_CODE_CELL.match("".join(cell["source"]).strip()).group(1)
        print(f"{path.relative_to(ROOT)}: show_code({name}) {'is stale' if check else 'refreshed'}")
        if not check:
            cell["outputs"] = [fresh if o.get("output_type") == "execute_result" else o for o in cell["outputs"]]
    if stale and not check:
        path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return len(stale)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if any listing is stale")
    p.add_argument("notebooks", nargs="*", type=Path)
    args = p.parse_args(argv)
    paths = args.notebooks or sorted((ROOT / "nbs").rglob("*.ipynb"))
    stale = sum(refresh(Path(n).resolve(), args.check) for n in paths if ".ipynb_checkpoints" not in str(n))
    if args.check and stale:
        print("run python scripts/refresh_show_code.py to bring them up to date", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
