"""The docs pre-processing (nbdev's `exec_show_docs`) executes only exported cells, `show_doc` cells and cells with
imports. A cell that mixes imports with other code is executed there without the cells before it, so any name it uses
from them is missing (CI failed that way on `17_diffusion`). Keep imports in cells of their own, or mark a
self-contained cell `#| exec_doc`."""

import ast
import json

import pytest

from conftest import NOTEBOOKS

SHOWN = {"export", "exports", "exporti", "exec_doc"}


def directives(source: str) -> set:
    "The names of a cell's `#| name` directives."
    return {
        line[2:].strip().split()[0].rstrip(":")
        for line in source.splitlines()
        if line.startswith("#|") and line[2:].strip()
    }


def mixes_imports(source: str) -> bool:
    "Whether the code has an import and also a statement nbdev counts as other code (an expression or assignment)."
    code = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return False
    nodes = list(ast.walk(tree))
    has = lambda *types: any(isinstance(n, types) for n in nodes)
    return has(ast.Import, ast.ImportFrom) and has(ast.Expr, ast.Assign)


def test_rule_matches_nbdev():
    assert mixes_imports("import os\nx = 1")
    assert mixes_imports("import matplotlib.pyplot as plt\nplt.plot([1])")
    assert not mixes_imports("import os\nfrom pathlib import Path")
    assert not mixes_imports("x = 1\nprint(x)")
    assert directives("#| export\n#| echo: false\nx=1") == {"export", "echo"}


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_no_cell_mixes_imports_with_code(nb):
    cells = json.loads(nb.read_text())["cells"]
    bad = [
        i
        for i, c in enumerate(cells)
        if c["cell_type"] == "code"
        and not directives(src := "".join(c["source"])) & SHOWN
        and "eval: false" not in src
        and "nbdev_export()" not in src
        and mixes_imports(src)
    ]
    assert not bad, (
        f"{nb.name}: cells {bad} mix imports with other code; the docs build runs them alone. "
        "Move the imports to a cell of their own (or mark a self-contained cell `#| exec_doc`)."
    )
