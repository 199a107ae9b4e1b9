"Repository invariants: layout, Quarto link, README in sync, light and clean notebooks, pinned nbdev 2."

import configparser
import json
import re
import subprocess
import sys

import pytest

from conftest import NOTEBOOKS, ROOT


def test_top_level_layout():
    for name in ("nbs", "genaibook", "settings.ini", "setup.py", "README.md", "tests", "_quarto.yml", ".ci/run"):
        assert (ROOT / name).exists(), f"missing {name}"


def test_quarto_config_is_one_file():
    link = ROOT / "nbs" / "_quarto.yml"
    assert link.is_symlink() and link.readlink().as_posix() == "../_quarto.yml"
    assert link.resolve() == (ROOT / "_quarto.yml").resolve()


def test_readme_is_built_from_index():
    r = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "build_readme.py"), "--check"], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr + r.stdout


def test_no_notebook_stores_a_twins_output():
    r = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "strip_twin_outputs.py"), "--check"], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_every_show_code_listing_is_the_current_code():
    "A chapter's `show_code(name)` output must be the package's code as it is now (scripts/refresh_show_code.py)."
    r = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "refresh_show_code.py"), "--check"], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_refresh_show_code_rewrites_a_stale_listing(tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import refresh_show_code as rsc
    finally:
        sys.path.pop(0)
    from genaibook.schedulers import corrupt

    stale = rsc.listing_output(corrupt, 3)
    stale["data"]["text/plain"] = "def corrupt(x, noise, amount): ...  # an old version"
    nb = {"cells": [{"cell_type": "code", "source": "show_code(corrupt)", "outputs": [stale], "metadata": {}}]}
    assert [fresh["data"]["text/plain"] for _, fresh in rsc.stale_cells(nb)] == [
        rsc.listing_output(corrupt)["data"]["text/plain"]
    ]
    nb["cells"][0]["outputs"] = [rsc.listing_output(corrupt, 3)]
    assert rsc.stale_cells(nb) == []
    with pytest.raises(LookupError, match="no genaibook module exports 'nothing_here'"):
        rsc.find_object("nothing_here")


def test_readme_gives_the_two_commands():
    text = (ROOT / "README.md").read_text()
    assert "bash scripts/course.sh run" in text and "bash scripts/course.sh test" in text
    assert "bash scripts/course.sh test" in (ROOT / ".ci" / "run").read_text()


def test_nbdev2_pins():
    cfg = configparser.ConfigParser(delimiters=["="])
    cfg.read(ROOT / "settings.ini")
    s = cfg["DEFAULT"]
    dev = s["dev_requirements"].split()
    for pin in ("nbdev>=2.4.14,<3", "fastcore>=1.14,<2", "execnb>=0.1.18,<0.2", "ghapi<2"):
        assert pin in dev
    assert "torch" in s["requirements"].split(), "torch is a requirement, unpinned"
    assert s["tst_flags"].split() == ["notest", "slow", "gpu"]
    assert s["update_pyproject"] == "False" and not (ROOT / "pyproject.toml").exists()


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.relative_to(ROOT / "nbs").as_posix())
def test_notebook_is_light_and_clean(nb):
    assert nb.stat().st_size < 1_000_000, f"{nb.name} is {nb.stat().st_size:,} bytes: keep notebooks under 1 MB"
    cells = json.loads(nb.read_text())["cells"]
    for c in cells:
        src = "".join(c["source"])
        assert not any(o.get("output_type") == "error" for o in c.get("outputs", [])), f"{nb.name} has an error output"
        if c["cell_type"] == "code":
            assert not re.search(r"^\s*[%!]pip ", src, re.M), f"{nb.name}: no %pip/!pip in code cells"
        if c["cell_type"] == "markdown":
            assert "data:image" not in src, f"{nb.name}: no base64 images in markdown"


@pytest.mark.parametrize("nb", sorted((ROOT / "nbs" / "lib").glob("*.ipynb")), ids=lambda p: p.name)
def test_library_notebook_exports_its_own_module(nb):
    src = "".join("".join(c["source"]) for c in json.loads(nb.read_text())["cells"])
    expected = re.sub(r"^\d+[a-zA-Z0-9]*_", "", nb.stem)
    assert f"#| default_exp {expected}" in src
    assert (ROOT / "genaibook" / f"{expected}.py").exists()
    assert src.lstrip().startswith("# "), "a library notebook opens with a title cell"
