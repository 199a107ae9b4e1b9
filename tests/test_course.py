"genaibook.course: notebook discovery, cell skipping and real notebook runs."
import nbformat
import pytest

from pathlib import Path

from genaibook.course import (SKIPPED_NOTE, cell_directives, find_notebooks, main, run_course, run_notebook,
                              scrub_outputs, should_skip)


def write_nb(path, *sources):
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources]), path)
    return path


def test_find_notebooks_skips_private(tmp_path):
    for name in ("a.ipynb", "lib/b.ipynb", "_scratch/c.ipynb", "lib/_d.ipynb", ".ipynb_checkpoints/e.ipynb"):
        write_nb(tmp_path/name, "1")
    assert [p.relative_to(tmp_path).as_posix() for p in find_notebooks(tmp_path)] == ["a.ipynb", "lib/b.ipynb"]
    assert [p.name for p in find_notebooks(tmp_path, only=["lib/"])] == ["b.ipynb"]
    with pytest.raises(FileNotFoundError, match="No notebooks folder"): find_notebooks(tmp_path/"missing")


@pytest.mark.parametrize("src, flags, skip", [
    ("#| gpu\nx", {"gpu"}, True), ("#|slow\nx", {"gpu"}, False), ("#| slow\nx", {"slow"}, True),
    ("#| eval: false\nx", set(), True), ("#| export\nx", {"gpu"}, False), ("# | notest\nx", {"notest"}, True),
    ("x = '#| gpu'", {"gpu"}, False), ("nbdev_export()", set(), True), ("import nbdev; nbdev.nbdev_export()\n", set(), True),
    ("check('nbdev.nbdev_export()')", set(), False)])
def test_should_skip(src, flags, skip):
    assert should_skip(src, flags) is skip


def test_cell_directives():
    assert cell_directives("#| hide\n#| eval: False\ncode") == {"hide", "eval: false"}


def test_run_notebook_success_and_failure(tmp_path, monkeypatch):
    monkeypatch.delenv("GENAIBOOK_MODE", raising=False)
    good = write_nb(tmp_path/"good.ipynb", "import os\nprint(os.environ['GENAIBOOK_MODE'])", "#| gpu\n1/0")
    run = run_notebook(good, tmp_path/"out/good.ipynb", mode="tiny")
    assert run.ok and run.skipped_cells == 1 and run.seconds > 0
    executed = nbformat.read(tmp_path/"out/good.ipynb", as_version=4)
    assert executed.cells[0].outputs[0]["text"] == "tiny\n" and "skipped" in executed.cells[1].outputs[0]["text"]
    bad = write_nb(tmp_path/"bad.ipynb", "raise ValueError('broken on purpose')", "print('never')")
    run = run_notebook(bad, None)
    assert not run.ok and "broken on purpose" in run.error
    assert "GENAIBOOK_MODE" not in __import__("os").environ  # restored


def test_run_course_and_cli(tmp_path, capsys):
    nbs = tmp_path/"nbs"
    write_nb(nbs/"01_ok.ipynb", "x = 1")
    write_nb(nbs/"02_fails.ipynb", "assert False, 'nope'")
    runs = run_course(nbs, tmp_path/"_run", mode="tiny")
    assert [r.ok for r in runs] == [True, False]
    assert (tmp_path/"_run/01_ok.ipynb").exists()
    assert "1 passed, 1 failed" in capsys.readouterr().out
    assert main(["--nbs", str(nbs), "--out", str(tmp_path/"o"), "--mode", "tiny", "--only", "01_"]) == 0
    assert main(["--nbs", str(nbs), "--out", str(tmp_path/"o"), "--mode", "tiny"]) == 1


def test_run_course_errors(tmp_path):
    with pytest.raises(ValueError, match="mode must be one of"): run_course(tmp_path, mode="huge")
    write_nb(tmp_path/"a.ipynb", "1")
    with pytest.raises(FileNotFoundError, match="No notebook under"): run_course(tmp_path, only=["zzz"])


def test_inplace_run_replaces_outputs_and_leaves_skipped_cells_empty(tmp_path):
    nb = write_nb(tmp_path/"nbs/01_a.ipynb", "print(6 * 7)", "#| eval: false\nprint('never')")
    stale = nbformat.read(nb, as_version=4)
    stale.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="stale error\n")]
    nbformat.write(stale, nb)
    assert main(["--nbs", str(tmp_path/"nbs"), "--mode", "tiny", "--inplace"]) == 0
    cells = nbformat.read(nb, as_version=4).cells
    assert cells[0].outputs[0]["text"] == "42\n" and cells[1].outputs == []
    assert not (tmp_path/"_run").exists()


def _stream(text, name="stderr"): return nbformat.v4.new_output("stream", name=name, text=text)


@pytest.mark.parametrize("text, expected", [
    ("Found the latest cached dataset configuration 'mnist' at /x/y (last modified)\nok\n", "ok\n"),
    ("/tmp/ipykernel_5571/1889708042.py:10: UserWarning: few images\n  return {...}\nafter\n",
     "UserWarning: few images\nafter\n"),
    ("training:  40%|████      | 4/10 [00:01<00:02,  2.9step/s]\rtraining: 100%|██████████| 10/10 [00:03<00:00]\n", None),
    (f"{Path.home()}/data ready\n", "~/data ready\n"),
    ("plain text stays\n", "plain text stays\n")])
def test_scrub_stream_outputs(text, expected):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x", outputs=[_stream(text)])])
    scrub_outputs(nb)
    outs = nb.cells[0].outputs
    assert (outs[0]["text"] if outs else None) == expected


def test_scrub_drops_widgets_and_empty_results_but_keeps_figures():
    figure = nbformat.v4.new_output("display_data", data={"image/png": "iVBOR", "text/plain": "<Figure>"})
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x", outputs=[
        nbformat.v4.new_output("display_data", data={"application/vnd.jupyter.widget-view+json": {}, "text/plain": "bar"}),
        nbformat.v4.new_output("execute_result", data={"text/plain": ""}, execution_count=1), figure]),
        nbformat.v4.new_markdown_cell("/root/ in markdown is not an output")])
    assert scrub_outputs(nb) == 2
    assert nb.cells[0].outputs == [figure] and scrub_outputs(nb) == 0


def test_scrub_cli_rewrites_only_changed_notebooks(tmp_path, capsys):
    clean = write_nb(tmp_path/"nbs/a.ipynb", "1")
    dirty = tmp_path/"nbs/b.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x", outputs=[_stream("Loading weights: 100%\n")])]), dirty)
    before = clean.stat().st_mtime_ns
    assert main(["--nbs", str(tmp_path/"nbs"), "--scrub"]) == 0
    assert "scrubbed" in capsys.readouterr().out and clean.stat().st_mtime_ns == before
    assert nbformat.read(dirty, as_version=4).cells[0].outputs == []
    assert SKIPPED_NOTE.startswith("[skipped")
