"genaibook.core is a superset of the book authors' genaibook 0.1.1: every name, with compatible signatures."
import inspect
import subprocess
import sys

import pytest

import genaibook.core as core

# Recorded from genaibook 0.1.1's core.py (PyPI): positional parameters in order, and whether each has a default.
UPSTREAM = {
    "get_device": [("cuda_ordinal", True)],
    "show_image": [("im", False), ("ax", True), ("figsize", True), ("title", True), ("noframe", True), "**"],
    "subplots": [("nrows", True), ("ncols", True), ("figsize", True), ("imsize", True), ("suptitle", True), "**"],
    "get_grid": [("n", False), ("nrows", True), ("ncols", True), ("title", True), ("weight", True), ("size", True), "**"],
    "show_images": [("ims", False), ("nrows", True), ("ncols", True), ("titles", True), "**"],
    "init_ddpm": [("model", False)],
    "load_image": [("url", False), ("size", True), ("return_tensor", True)],
    "image_grid": [("imgs", False), ("rows", False), ("cols", False)],
    "plot_scheduler": [("scheduler", False), ("ax", True), ("plot_both", True), ("label", True)],
    "plot_noise_and_denoise": [("scheduler_output", False), ("step", False)],
    "spectrogram_from_image": [("image", False), ("max_volume", False), ("power_for_image", False)],
    "waveform_from_spectrogram": [("Sxx", False), ("n_fft", False), ("hop_length", False), ("win_length", False),
                                  ("sample_rate", False), ("n_mels", False), ("num_griffin_lim_iters", False), ("device", True)],
    "wav_bytes_from_spectrogram_image": [("image", False), ("device", True)],
    "measure_latency_and_memory_use": [("pipeline", False), ("inputs", False), ("model_name", False), ("device", False),
                                       ("nb_loops", True)],
    "generate_long_audio": [],
    "get_speaker_embeddings": [("id", True)],
}
SAMPLE_URLS = ["CatExample", "LionExample", "LlamaExample", "DogExample", "ToyAstronauts", "DogBenchImage", "DogBenchMask",
               "ManInGlasses", "Mountain", "WomanSpeaking", "ItemsVariation", "Mamoeiro"]


@pytest.mark.parametrize("name", sorted(UPSTREAM))
def test_signature_is_compatible(name):
    ours = list(inspect.signature(getattr(core, name)).parameters.values())
    theirs = [p for p in UPSTREAM[name] if p != "**"]
    positional = [p for p in ours if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    for i, (pname, has_default) in enumerate(theirs):
        assert i < len(positional) and positional[i].name == pname, f"{name}: parameter {i} should be {pname!r}"
        if has_default: assert positional[i].default is not inspect.Parameter.empty, f"{name}({pname}) lost its default"
    extra = positional[len(theirs):]
    assert all(p.default is not inspect.Parameter.empty for p in extra), f"{name}: new parameters need defaults"
    if "**" in UPSTREAM[name]: assert any(p.kind is p.VAR_KEYWORD for p in ours), f"{name} must accept **kwargs"


def test_every_upstream_name_is_public():
    assert set(UPSTREAM) | {"SampleURL"} <= set(core.__all__)
    assert set(UPSTREAM) <= set(dir(core))


def test_sample_urls():
    for n in SAMPLE_URLS: assert getattr(core.SampleURL, n).startswith("https://")
    assert sorted(core.SampleURL.names()) == sorted(SAMPLE_URLS)


def test_book_chapter6_import():
    from genaibook import get_device  # the book's chapter 6 spells it this way
    assert get_device is core.get_device


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'not_a_helper'"): core.not_a_helper
    assert not hasattr(core, "_ipython_canary_method_should_not_exist_")


def test_reexports_are_the_home_modules_objects():
    from genaibook import audio, perf, viz
    assert core.show_images is viz.show_images
    assert core.measure_latency_and_memory_use is perf.measure_latency_and_memory_use
    assert core.wav_bytes_from_spectrogram_image is audio.wav_bytes_from_spectrogram_image


def _run(code):
    env = {"CUDA_VISIBLE_DEVICES": "", "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)


def test_import_is_light_and_device_free():
    r = _run("import sys, genaibook.core; print(sorted(m for m in ('matplotlib', 'diffusers', 'transformers', 'datasets') if m in sys.modules))")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]", f"genaibook.core imported heavy modules at import time: {r.stdout}"


@pytest.mark.parametrize("module", ["core", "viz", "perf", "audio", "course", "offline", "standins", "text", "schedulers", "sampling", "train", "stable_diffusion", "demo", "metrics"])
def test_every_module_imports_without_a_gpu(module):
    r = _run(f"import genaibook.{module}")
    assert r.returncode == 0, r.stderr
