"genaibook.course: notebook discovery, cell skipping and real notebook runs."
import nbformat
import pytest

from genaibook.course import cell_directives, find_notebooks, main, run_course, run_notebook, should_skip


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
