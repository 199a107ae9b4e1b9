"genaibook.core is a superset of the book authors' genaibook 0.1.1: every name, with compatible signatures."

import ast
import inspect
import pkgutil

import pytest

import genaibook
import genaibook.core as core
from conftest import ROOT, modules_loaded_by, reachable, run_python

MODULES = sorted(m.name for m in pkgutil.iter_modules(genaibook.__path__) if not m.name.startswith("_"))

# Recorded from genaibook 0.1.1's core.py (PyPI): positional parameters in order, and whether each has a default.
UPSTREAM = {
    "get_device": [("cuda_ordinal", True)],
    "show_image": [("im", False), ("ax", True), ("figsize", True), ("title", True), ("noframe", True), "**"],
    "subplots": [("nrows", True), ("ncols", True), ("figsize", True), ("imsize", True), ("suptitle", True), "**"],
    "get_grid": [
        ("n", False),
        ("nrows", True),
        ("ncols", True),
        ("title", True),
        ("weight", True),
        ("size", True),
        "**",
    ],
    "show_images": [("ims", False), ("nrows", True), ("ncols", True), ("titles", True), "**"],
    "init_ddpm": [("model", False)],
    "load_image": [("url", False), ("size", True), ("return_tensor", True)],
    "image_grid": [("imgs", False), ("rows", False), ("cols", False)],
    "plot_scheduler": [("scheduler", False), ("ax", True), ("plot_both", True), ("label", True)],
    "plot_noise_and_denoise": [("scheduler_output", False), ("step", False)],
    "spectrogram_from_image": [("image", False), ("max_volume", False), ("power_for_image", False)],
    "waveform_from_spectrogram": [
        ("Sxx", False),
        ("n_fft", False),
        ("hop_length", False),
        ("win_length", False),
        ("sample_rate", False),
        ("n_mels", False),
        ("num_griffin_lim_iters", False),
        ("device", True),
    ],
    "wav_bytes_from_spectrogram_image": [("image", False), ("device", True)],
    "measure_latency_and_memory_use": [
        ("pipeline", False),
        ("inputs", False),
        ("model_name", False),
        ("device", False),
        ("nb_loops", True),
    ],
    "generate_long_audio": [],
    "get_speaker_embeddings": [("id", True)],
}
SAMPLE_URLS = [
    "CatExample",
    "LionExample",
    "LlamaExample",
    "DogExample",
    "ToyAstronauts",
    "DogBenchImage",
    "DogBenchMask",
    "ManInGlasses",
    "Mountain",
    "WomanSpeaking",
    "ItemsVariation",
    "Mamoeiro",
]


@pytest.mark.parametrize("name", sorted(UPSTREAM))
def test_signature_is_compatible(name):
    ours = list(inspect.signature(getattr(core, name)).parameters.values())
    theirs = [p for p in UPSTREAM[name] if p != "**"]
    positional = [p for p in ours if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    for i, (pname, has_default) in enumerate(theirs):
        assert i < len(positional) and positional[i].name == pname, f"{name}: parameter {i} should be {pname!r}"
        if has_default:
            assert positional[i].default is not inspect.Parameter.empty, f"{name}({pname}) lost its default"
    extra = positional[len(theirs) :]
    assert all(p.default is not inspect.Parameter.empty for p in extra), f"{name}: new parameters need defaults"
    if "**" in UPSTREAM[name]:
        assert any(p.kind is p.VAR_KEYWORD for p in ours), f"{name} must accept **kwargs"


def test_every_upstream_name_is_public():
    assert set(UPSTREAM) | {"SampleURL"} <= set(core.__all__)
    assert set(UPSTREAM) <= set(dir(core))


def test_sample_urls():
    for n in SAMPLE_URLS:
        assert getattr(core.SampleURL, n).startswith("https://")
    assert sorted(core.SampleURL.names()) == sorted(SAMPLE_URLS)


def test_book_chapter6_import():
    from genaibook import get_device  # the book's chapter 6 spells it this way

    assert get_device is core.get_device


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'not_a_helper'"):
        core.not_a_helper
    assert not hasattr(core, "_ipython_canary_method_should_not_exist_")


def test_reexports_are_the_home_modules_objects():
    from genaibook import audio, perf, viz

    assert core.show_images is viz.show_images
    assert core.measure_latency_and_memory_use is perf.measure_latency_and_memory_use
    assert core.wav_bytes_from_spectrogram_image is audio.wav_bytes_from_spectrogram_image


def _type_checking_imports() -> dict[str, str]:
    "The names genaibook/core.py imports under `if TYPE_CHECKING:`, each with the module it names."
    tree = ast.parse((ROOT / "genaibook" / "core.py").read_text())
    blocks = [n for n in tree.body if isinstance(n, ast.If) and getattr(n.test, "id", None) == "TYPE_CHECKING"]
    return {
        a.asname or a.name: node.module
        for b in blocks
        for node in b.body
        if isinstance(node, ast.ImportFrom)
        for a in node.names
    }


def test_reexports_are_declared_for_tools():
    "Linters and editors see each re-exported name where it is defined: the TYPE_CHECKING imports match `_all_`."
    declared = _type_checking_imports()
    assert sorted(declared) == sorted(core._all_)
    for name, home in declared.items():
        assert getattr(core, name).__module__ == home, f"{name} is not defined in {home}"


def test_import_is_light_and_device_free():
    assert modules_loaded_by("import genaibook.core", ("matplotlib", "diffusers", "transformers", "datasets")) == [], (
        "genaibook.core imported heavy modules at import time"
    )


def test_modules_are_found():
    assert {"core", "viz", "search", "unets", "diffusion"} <= set(MODULES)


@pytest.mark.parametrize("module", MODULES)
def test_every_module_imports_without_a_gpu(module):
    r = run_python(f"import genaibook.{module}")
    assert r.returncode == 0, r.stderr


def _imports_that_run(module: str) -> set[str]:
    "The genaibook modules `module` imports at run time (module level or inside functions; not `if TYPE_CHECKING:`)."
    found = set()

    def visit(node):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            return  # read by linters and editors only
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found.update({node.module.split(".")[0]} if node.module else {a.name for a in node.names})
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("genaibook."):
            found.add(node.module.split(".")[1])
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse((ROOT / "genaibook" / f"{module}.py").read_text()))
    return found & set(MODULES)


def test_no_import_cycle_in_the_package():
    "Dependencies run one way: no module reaches itself through the imports that run (the core shim is name lookups)."
    graph = {m: _imports_that_run(m) for m in MODULES}
    assert [m for m in MODULES if m in reachable(graph, m)] == []
    assert "core" in graph["viz"] and graph["core"] == set()  # core is the base, not the top


def test_package_code_imports_each_helper_from_its_home():
    "The book's `from genaibook.core import show_images` works, but the package itself never goes through the shim."
    for m in MODULES:
        for node in ast.walk(ast.parse((ROOT / "genaibook" / f"{m}.py").read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module in ("core", "genaibook.core")):
                shimmed = {a.name for a in node.names} & set(core._all_)
                assert not shimmed, f"genaibook.{m} imports {shimmed} through genaibook.core"
