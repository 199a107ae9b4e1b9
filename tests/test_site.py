"""The docs site: the sidebar lists every notebook and nothing else, the navbar and workflows are sound, the Colab
badge reaches chapters only, and the rendered pages pass scripts/render_site.py's check in headless Chromium."""

import configparser
import shutil
import sys
import time

import pytest
import yaml

from conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))  # scripts/ is a folder of scripts, not a package
import docs_procs  # noqa: E402
import render_site  # noqa: E402

NBS = ROOT / "nbs"
WORKFLOWS = ROOT / ".github" / "workflows"


def site_notebooks() -> set[str]:
    "The notebooks nbdev puts on the site: all under nbs/, except in or named `_...` or `.…`."
    rels = (p.relative_to(NBS) for p in NBS.rglob("*.ipynb"))
    return {r.as_posix() for r in rels if not any(part.startswith(("_", ".")) for part in r.parts)}


def entries(node) -> list[str]:
    "Every file a Quarto sidebar (or navbar) node names, sections included."
    if isinstance(node, str):
        return [node]
    if isinstance(node, list):
        return [e for n in node for e in entries(n)]
    return ([node["href"]] if "href" in node else []) + entries(node.get("contents", []))


def sidebar() -> list:
    return yaml.safe_load((NBS / "sidebar.yml").read_text())["website"]["sidebar"]["contents"]


def settings() -> configparser.SectionProxy:
    cp = configparser.ConfigParser(delimiters=["="])
    cp.read(ROOT / "settings.ini")
    return cp["DEFAULT"]


# ---- sidebar and navbar ----------------------------------------------------------------------------------------------
def test_sidebar_is_kept_by_hand():
    assert settings().getboolean("custom_sidebar"), "with custom_sidebar = False nbdev would overwrite nbs/sidebar.yml"


def test_sidebar_lists_every_notebook_and_only_existing_files():
    listed = entries(sidebar())
    missing = sorted(site_notebooks() - set(listed))
    assert not missing, f"nbs/sidebar.yml does not list {missing}: add each where it belongs"
    absent = [f for f in listed if not (NBS / f).is_file()]
    assert not absent, f"nbs/sidebar.yml names files that don't exist: {absent}"
    assert len(listed) == len(set(listed)), "nbs/sidebar.yml lists a notebook twice"


def test_sidebar_follows_the_book():
    sections = {n["section"]: entries(n) for n in sidebar() if isinstance(n, dict)}
    assert sidebar()[0] == "index.ipynb"
    part_one = next(v for k, v in sections.items() if k.startswith("Part I:"))
    assert part_one == [
        f"{n}.ipynb"
        for n in ("01_introduction", "02_transformers", "03_compressing", "04_diffusion", "05_stable_diffusion")
    ]
    assert sections["Library"] == sorted(f for f in site_notebooks() if f.startswith("lib/"))
    chapters = [f for k, v in sections.items() if k != "Library" for f in v]
    assert all(docs_procs.is_chapter(f) for f in chapters), "only chapters (top-level notebooks) go in the parts"


def test_navbar():
    quarto = yaml.safe_load((NBS / "_quarto.yml").read_text())
    nav = quarto["website"]["navbar"]
    assert [i["text"] for i in nav["left"]] == ["Home", "Chapters", "Library"]
    assert all((NBS / i["href"]).is_file() for i in nav["left"])
    assert [i["href"] for i in nav["right"] if i.get("icon") == "github"] == [settings()["git_url"]]
    assert "sidebar.yml" in quarto["metadata-files"]


# ---- workflows -------------------------------------------------------------------------------------------------------
def workflow(name: str) -> tuple[dict, list]:
    "A workflow's triggers (YAML 1.1 reads the key `on` as True) and its steps, all jobs together."
    wf = yaml.safe_load((WORKFLOWS / name).read_text())
    return wf.get("on", wf.get(True)), [s for job in wf["jobs"].values() for s in job["steps"]]


def test_test_workflow_runs_the_readme_command():
    on, steps = workflow("test.yaml")
    assert set(on) == {"push", "pull_request"}
    runs = " ".join(s.get("run", "") for s in steps)
    assert "bash scripts/course.sh test" in runs and "dataset-fashion-mnist" in runs
    assert any(s.get("with", {}).get("python-version") == "3.11" for s in steps)


def test_deploy_workflow_publishes_to_pages():
    on, steps = workflow("deploy.yaml")
    assert on["push"]["branches"] == ["main"] and "workflow_dispatch" in on
    uses = [s.get("uses", "").split("@")[0] for s in steps]
    for action in ("quarto-dev/quarto-actions/setup", "actions/upload-pages-artifact", "actions/deploy-pages"):
        assert action in uses, f"deploy.yaml does not use {action}"
    runs = "\n".join(s.get("run", "") for s in steps)
    assert runs.index("scripts/proc_docs.py") < runs.index("nbdev_docs"), "the badges are added by proc_docs.py"
    perms = yaml.safe_load((WORKFLOWS / "deploy.yaml").read_text())["permissions"]
    assert perms["pages"] == "write" and perms["id-token"] == "write"
    assert next(s for s in steps if "upload-pages-artifact" in s.get("uses", ""))["with"]["path"] == "_docs"


# ---- docs-time processing --------------------------------------------------------------------------------------------
def fake_nb() -> dict:
    warning = "<!-- WARNING: THIS FILE WAS AUTOGENERATED! DO NOT EDIT! -->"
    cells = [("raw", "---\ntitle: T\n---"), ("markdown", warning), ("markdown", "Text")]
    return {"cells": [{"cell_type": t, "source": s} for t, s in cells]}


def test_colab_badge_goes_under_a_chapters_title_only():
    cfg = docs_procs.settings()
    nb = fake_nb()
    assert docs_procs.add_badge(nb, "04_diffusion.ipynb", cfg)
    url = "https://colab.research.google.com/github/genaibook-course/genaibook/blob/main/nbs/04_diffusion.ipynb"
    assert nb["cells"][2]["source"] == f"[![Open In Colab]({docs_procs.BADGE_IMG})]({url})"
    assert not docs_procs.add_badge(nb, "04_diffusion.ipynb", cfg) and len(nb["cells"]) == 4  # once only
    for rel in ("index.ipynb", "lib/10_schedulers.ipynb", "_draft.ipynb"):
        assert not docs_procs.add_badge(fake_nb(), rel, cfg)
    assert docs_procs.add_badge(fake_nb(), "10_advancing.ipynb", cfg)  # chapters to come get one too


def test_show_doc_headings_keep_their_underscores():
    md = "---\n\n### __dir__\n\n```python\ndef __dir__():\n```"
    nb = {"cells": [{"cell_type": "code", "source": "", "outputs": [{"data": {"text/markdown": md}}]}]}
    assert docs_procs.escape_show_doc_headings(nb)
    assert "### \\_\\_dir\\_\\_\n" in nb["cells"][0]["outputs"][0]["data"]["text/markdown"]
    assert not docs_procs.escape_show_doc_headings(nb)  # a second pass changes nothing


# ---- the rendered pages in a browser ---------------------------------------------------------------------------------
def test_rendered_pages_in_chromium(tmp_path):
    if not render_site.find_chromium():
        pytest.skip("no chromium on PATH (apt-get install chromium)")
    if not render_site.PROC.is_dir():
        pytest.skip("no _proc/: run python scripts/proc_docs.py first (CI does)")
    pytest.importorskip("websocket", reason="render_site drives Chromium with websocket-client")
    t0 = time.time()
    pages = render_site.render(render_site.PROC, tmp_path)
    assert set(pages) == {p.replace(".ipynb", ".html") for p in site_notebooks()}
    results = render_site.check(pages, out=tmp_path, shots={})
    bad = {page: fails for page, (fails, _, _) in results.items() if fails}
    assert not bad, f"pages failing in Chromium (is _proc/ stale? run python scripts/proc_docs.py): {bad}"
    print(f"{len(pages)} pages rendered and checked in {time.time() - t0:.0f} s")
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_browser_check_catches_a_missing_badge_and_a_broken_image(tmp_path):
    if not render_site.find_chromium():
        pytest.skip("no chromium on PATH (apt-get install chromium)")
    pytest.importorskip("websocket", reason="render_site drives Chromium with websocket-client")
    import nbformat

    proc, out = tmp_path / "_proc", tmp_path / "site"
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_raw_cell("---\ntitle: A chapter\n---"),
            nbformat.v4.new_markdown_cell("![a figure](figures/missing.png)"),
        ]
    )
    proc.mkdir()
    nbformat.write(nb, proc / "01_introduction.ipynb")
    results = render_site.check(render_site.render(proc, out), out=out, proc=proc, shots={})
    fails = results["01_introduction.html"][0]
    assert any("broken image 'figures/missing.png'" in f for f in fails), fails
    assert any("no Colab badge" in f for f in fails), fails
