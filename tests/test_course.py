"genaibook.course: notebook discovery, cell skipping, real notebook runs, progress estimates, timings and the summary."

import re

import nbformat
import pytest

from pathlib import Path

from genaibook.course import (
    CPU_SECONDS,
    DEFAULT_CPU_SECONDS,
    KEY_RESULT,
    SKIPPED_NOTE,
    TIMINGS_FILE,
    NotebookRun,
    cell_directives,
    estimate_seconds,
    eta,
    find_notebooks,
    fmt_duration,
    key_results,
    load_timings,
    main,
    progress_line,
    run_course,
    run_notebook,
    save_timing,
    scrub_outputs,
    should_skip,
    summary_table,
)


def write_nb(path, *sources):
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources]), path)
    return path


def test_find_notebooks_skips_private(tmp_path):
    for name in ("a.ipynb", "lib/b.ipynb", "_scratch/c.ipynb", "lib/_d.ipynb", ".ipynb_checkpoints/e.ipynb"):
        write_nb(tmp_path / name, "1")
    assert [p.relative_to(tmp_path).as_posix() for p in find_notebooks(tmp_path)] == ["a.ipynb", "lib/b.ipynb"]
    assert [p.name for p in find_notebooks(tmp_path, only=["lib/"])] == ["b.ipynb"]
    with pytest.raises(FileNotFoundError, match="No notebooks folder"):
        find_notebooks(tmp_path / "missing")


@pytest.mark.parametrize(
    "src, flags, skip",
    [
        ("#| gpu\nx", {"gpu"}, True),
        ("#|slow\nx", {"gpu"}, False),
        ("#| slow\nx", {"slow"}, True),
        ("#| eval: false\nx", set(), True),
        ("#| export\nx", {"gpu"}, False),
        ("# | notest\nx", {"notest"}, True),
        ("x = '#| gpu'", {"gpu"}, False),
        ("nbdev_export()", set(), True),
        ("import nbdev; nbdev.nbdev_export()\n", set(), True),
        ("check('nbdev.nbdev_export()')", set(), False),
    ],
)
def test_should_skip(src, flags, skip):
    assert should_skip(src, flags) is skip


def test_cell_directives():
    assert cell_directives("#| hide\n#| eval: False\ncode") == {"hide", "eval: false"}


def test_run_notebook_success_and_failure(tmp_path, monkeypatch):
    monkeypatch.delenv("GENAIBOOK_MODE", raising=False)
    good = write_nb(
        tmp_path / "good.ipynb",
        "import os\nprint(os.environ['GENAIBOOK_MODE'])",
        "#| gpu\n1/0",
        "print('KEY RESULT: loss 0.12')",
    )
    run = run_notebook(good, tmp_path / "out/good.ipynb", mode="tiny")
    assert run.ok and run.skipped_cells == 1 and run.seconds > 0 and run.key_result == "loss 0.12"
    executed = nbformat.read(tmp_path / "out/good.ipynb", as_version=4)
    assert executed.cells[0].outputs[0]["text"] == "tiny\n" and "skipped" in executed.cells[1].outputs[0]["text"]
    bad = write_nb(tmp_path / "bad.ipynb", "raise ValueError('broken on purpose')", "print('never')")
    run = run_notebook(bad, None)
    assert not run.ok and "broken on purpose" in run.error and run.key_result == ""
    assert "GENAIBOOK_MODE" not in __import__("os").environ  # restored


def test_run_course_and_cli(tmp_path, capsys):
    nbs = tmp_path / "nbs"
    write_nb(nbs / "01_ok.ipynb", "x = 1", "print('KEY RESULT: x is', x)")
    write_nb(nbs / "02_fails.ipynb", "assert False, 'nope'")
    runs = run_course(nbs, tmp_path / "_run", mode="tiny")
    assert [r.ok for r in runs] == [True, False]
    assert (tmp_path / "_run/01_ok.ipynb").exists()
    out = capsys.readouterr().out
    assert "1 passed, 1 failed" in out
    assert (
        "[1/2] 01_ok: starting after 0 s; this one not timed yet, with the rest unknown (2 never timed in tiny mode)"
    ) in out
    assert re.search(r"^\[2/2\] 02_fails: starting after \d+ s; this one not timed yet$", out, re.M)  # no "rest"
    table = out[out.index("\nnotebook ") :].splitlines()
    name, minutes, *rest = table[2].split()
    assert name == "01_ok" and float(minutes) >= 0 and rest == ["ok", "x", "is", "1"]  # no timing is asserted
    assert table[3].split() == ["02_fails", "0.0", "FAILED", "-"]
    timings = load_timings(tmp_path / "_run" / TIMINGS_FILE)  # only the notebook that passed is timed
    assert list(timings) == ["tiny"] and list(timings["tiny"]) == ["01_ok"] and timings["tiny"]["01_ok"] > 0
    run_course(nbs, tmp_path / "_run", mode="tiny", only=["01_"])  # the second run estimates from the first
    assert "[1/1] 01_ok: starting after 0 s; this one about " in capsys.readouterr().out
    assert main(["--nbs", str(nbs), "--out", str(tmp_path / "o"), "--mode", "tiny", "--only", "01_"]) == 0
    assert main(["--nbs", str(nbs), "--out", str(tmp_path / "o"), "--mode", "tiny"]) == 1


def test_run_course_errors(tmp_path):
    with pytest.raises(ValueError, match="mode must be one of"):
        run_course(tmp_path, mode="huge")
    write_nb(tmp_path / "a.ipynb", "1")
    with pytest.raises(FileNotFoundError, match="No notebook under"):
        run_course(tmp_path, only=["zzz"])


def test_inplace_run_replaces_outputs_and_leaves_skipped_cells_empty(tmp_path):
    nb = write_nb(tmp_path / "nbs/01_a.ipynb", "print(6 * 7)", "#| eval: false\nprint('never')")
    stale = nbformat.read(nb, as_version=4)
    stale.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="stale error\n")]
    nbformat.write(stale, nb)
    assert main(["--nbs", str(tmp_path / "nbs"), "--out", str(tmp_path / "_run"), "--mode", "tiny", "--inplace"]) == 0
    cells = nbformat.read(nb, as_version=4).cells
    assert cells[0].outputs[0]["text"] == "42\n" and cells[1].outputs == []
    assert [p.name for p in (tmp_path / "_run").iterdir()] == [TIMINGS_FILE]  # no copies, only the timings


def _stream(text, name="stderr"):
    return nbformat.v4.new_output("stream", name=name, text=text)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Found the latest cached dataset configuration 'mnist' at /x/y (last modified)\nok\n", "ok\n"),
        (
            "/tmp/ipykernel_5571/1889708042.py:10: UserWarning: few images\n  return {...}\nafter\n",
            "UserWarning: few images\nafter\n",
        ),
        (
            "training:  40%|████      | 4/10 [00:01<00:02,  2.9step/s]\rtraining: 100%|██████████| 10/10 [00:03<00:00]\n",
            None,
        ),
        (f"{Path.home()}/data ready\n", "~/data ready\n"),
        (
            "Skipping publisher trust check for 'kernels-community/quantization-bitsandbytes' because Hugging Face "
            "Hub is in offline mode.\nFailed to load CPU gemm_4bit_forward from kernels-community: Version 1 of "
            "'kernels-community/quantization-bitsandbytes' is not available\n",
            None,
        ),
        ("plain text stays\n", "plain text stays\n"),
    ],
)
def test_scrub_stream_outputs(text, expected):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x", outputs=[_stream(text)])])
    scrub_outputs(nb)
    outs = nb.cells[0].outputs
    assert (outs[0]["text"] if outs else None) == expected


def test_scrub_drops_widgets_and_empty_results_but_keeps_figures():
    figure = nbformat.v4.new_output("display_data", data={"image/png": "iVBOR", "text/plain": "<Figure>"})
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell(
                "x",
                outputs=[
                    nbformat.v4.new_output(
                        "display_data", data={"application/vnd.jupyter.widget-view+json": {}, "text/plain": "bar"}
                    ),
                    nbformat.v4.new_output("execute_result", data={"text/plain": ""}, execution_count=1),
                    figure,
                ],
            ),
            nbformat.v4.new_markdown_cell("/root/ in markdown is not an output"),
        ]
    )
    assert scrub_outputs(nb) == 2
    assert nb.cells[0].outputs == [figure] and scrub_outputs(nb) == 0


def test_scrub_cli_rewrites_only_changed_notebooks(tmp_path, capsys):
    clean = write_nb(tmp_path / "nbs/a.ipynb", "1")
    dirty = tmp_path / "nbs/b.ipynb"
    nbformat.write(
        nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x", outputs=[_stream("Loading weights: 100%\n")])]),
        dirty,
    )
    before = clean.stat().st_mtime_ns
    assert main(["--nbs", str(tmp_path / "nbs"), "--scrub"]) == 0
    assert "scrubbed" in capsys.readouterr().out and clean.stat().st_mtime_ns == before
    assert nbformat.read(dirty, as_version=4).cells[0].outputs == []
    assert SKIPPED_NOTE.startswith("[skipped")


# ---- progress, estimates, timings and the summary ----


@pytest.mark.parametrize(
    "names, mode, measured, expected",
    [
        (
            ["04_diffusion", "05_stable_diffusion", "03_compressing"],
            "cpu",
            {},
            (sum(CPU_SECONDS[n] for n in ("04_diffusion", "05_stable_diffusion", "03_compressing")), 0),
        ),
        (
            ["04_diffusion", "lib/01_viz"],
            "cpu",
            {"04_diffusion": 1e3},
            (1e3 + DEFAULT_CPU_SECONDS, 0),
        ),  # measured first
        (["04_diffusion", "lib/01_viz"], "book", {"lib/01_viz": 5.0}, (5.0, 1)),  # no table outside cpu mode
        (["a", "b"], "tiny", {}, (0, 2)),
        ([], "cpu", {}, (0, 0)),
    ],
)
def test_eta_arithmetic(names, mode, measured, expected):
    assert eta(names, mode, measured) == expected


def test_estimate_seconds_and_table():
    assert estimate_seconds("04_diffusion", "cpu", {}) == CPU_SECONDS["04_diffusion"]
    assert estimate_seconds("04_diffusion", "tiny", {}) is None
    assert estimate_seconds("04_diffusion", "tiny", {"04_diffusion": 12.5}) == 12.5
    assert all(isinstance(v, int) and v > 0 for v in CPU_SECONDS.values())


@pytest.mark.parametrize(
    "seconds, text",
    [
        (0, "0 s"),
        (0.4, "0 s"),
        (59.4, "59 s"),
        (59.6, "1 min"),
        (89, "1 min"),
        (3569, "59 min"),
        (3570, "1 h 00 min"),
        (7000, "1 h 57 min"),
        (36000, "10 h 00 min"),
    ],
)
def test_fmt_duration(seconds, text):
    assert fmt_duration(seconds) == text


def test_progress_line():
    assert progress_line(2, 5, "lib/00_core", 61, 60, (3000.0, 0), "cpu") == (
        "[2/5] lib/00_core: starting after 1 min; this one about 1 min, with the rest about 50 min"
    )
    assert progress_line(2, 5, "x", 5, 30, (90.0, 3), "tiny").endswith(
        "this one about 30 s, with the rest about 2 min + 3 never timed in tiny mode"
    )


def test_timings_round_trip(tmp_path):
    f = tmp_path / "sub" / TIMINGS_FILE
    assert load_timings(f) == {}
    save_timing(f, "cpu", "04_diffusion", 3100.04)
    save_timing(f, "cpu", "lib/00_core", 20)
    save_timing(f, "tiny", "lib/00_core", 3)
    save_timing(f, "cpu", "lib/00_core", 25)  # a later run replaces the earlier time
    assert load_timings(f) == {"cpu": {"04_diffusion": 3100.0, "lib/00_core": 25.0}, "tiny": {"lib/00_core": 3.0}}


@pytest.mark.parametrize(
    "content", ["", "{oops", "[1, 2]", '{"cpu": 3}', '{"cpu": {"a": "fast"}}', '{"cpu": {"a": null}}']
)
def test_damaged_timings_file_is_ignored_then_replaced(tmp_path, content):
    f = tmp_path / TIMINGS_FILE
    f.write_text(content)
    assert load_timings(f) == {}
    save_timing(f, "cpu", "a", 1)
    assert load_timings(f) == {"cpu": {"a": 1.0}}


def _nb_with_outputs(*outputs):
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x", outputs=list(outputs))])


def test_key_results():
    assert KEY_RESULT == "KEY RESULT:"
    nb = _nb_with_outputs(
        _stream("noise\nKEY RESULT: FID 12.5\nmore\n", "stdout"),
        _stream(["KEY RESULT:", " accuracy 91%\n"]),  # a list of pieces, as nbformat may store it
        nbformat.v4.new_output("execute_result", data={"text/plain": "'KEY RESULT: a value'"}, execution_count=1),
    )
    nb.cells.append(nbformat.v4.new_markdown_cell("KEY RESULT: prose"))
    assert key_results(nb) == "FID 12.5; accuracy 91%"
    assert key_results(_nb_with_outputs(_stream("the KEY RESULT: is not at the start\n", "stdout"))) == ""
    assert key_results(nbformat.v4.new_notebook()) == ""


def test_summary_table():
    runs = [
        NotebookRun(Path("nbs/lib/00_core.ipynb"), 30, True),
        NotebookRun(Path("nbs/04_diffusion.ipynb"), 3100, True, key_result="FID 31.5"),
        NotebookRun(Path("nbs/05_stable_diffusion.ipynb"), 6, False, error="boom", key_result="partial"),
    ]
    assert summary_table(runs, Path("nbs")).splitlines() == [
        "notebook             minutes  status  key result",
        "lib/00_core              0.5  ok      -",
        "04_diffusion            51.7  ok      FID 31.5",
        "05_stable_diffusion      0.1  FAILED  partial",
        "total                   52.3  2/3 ok",
    ]
    assert summary_table([], Path("nbs")).splitlines() == [
        "notebook  minutes  status  key result",
        "total         0.0  0/0 ok",
    ]


def test_figures_survive_an_inherited_agg_backend(tmp_path, monkeypatch):
    "course.sh exports MPLBACKEND=Agg for pytest; the notebooks' kernels must still draw figures inline."
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = write_nb(tmp_path / "plot.ipynb", "import matplotlib.pyplot as plt\nplt.plot([1, 2]);")
    assert run_notebook(nb, tmp_path / "out.ipynb", mode="tiny").ok
    outputs = nbformat.read(tmp_path / "out.ipynb", as_version=4).cells[0].outputs
    assert any("image/png" in o.get("data", {}) for o in outputs)


def test_compact_png_shrinks_figures_and_leaves_other_data_alone():
    import base64
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    from genaibook.course import compact_png

    fig, ax = plt.subplots()
    ax.plot(range(100), [i * i for i in range(100)])
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    png = base64.b64encode(buffer.getvalue()).decode()
    packed = compact_png(png)
    assert len(packed) < len(png) and Image.open(io.BytesIO(base64.b64decode(packed))).mode == "P"
    assert compact_png(packed) == packed
    assert compact_png("iVBOR") == "iVBOR" and compact_png("not base64 at all!") == "not base64 at all!"


def test_a_dead_kernel_fails_the_notebook_and_the_run_goes_on(tmp_path):
    write_nb(tmp_path / "nbs/01_a.ipynb", "import os\nos._exit(1)")
    write_nb(tmp_path / "nbs/02_b.ipynb", "print(6 * 7)")
    runs = run_course(tmp_path / "nbs", tmp_path / "_run", mode="tiny")
    assert [r.ok for r in runs] == [False, True]
    assert "kernel died" in runs[0].error


def test_an_inplace_run_keeps_no_twin_output(tmp_path):
    "Committed notebooks store real results only: --inplace clears a cell that printed the twin notice."
    from genaibook.offline import TWIN_NOTICE

    nb = write_nb(tmp_path / "nbs/01_a.ipynb", f"print({TWIN_NOTICE!r} + ' of gpt2')\nprint('noise')", "print(6 * 7)")
    assert main(["--nbs", str(tmp_path / "nbs"), "--out", str(tmp_path / "_run"), "--mode", "tiny", "--inplace"]) == 0
    assert [len(c.outputs) for c in nbformat.read(nb, as_version=4).cells] == [0, 1]
    copy = write_nb(tmp_path / "copy/01_a.ipynb", f"print({TWIN_NOTICE!r})")
    run_notebook(copy, tmp_path / "copy_run.ipynb", mode="tiny")  # a learner's copy keeps it, with its warning
    assert TWIN_NOTICE in nbformat.read(tmp_path / "copy_run.ipynb", as_version=4).cells[0].outputs[0]["text"]
