"genaibook.demo: the apps build with the expected components; event functions called directly; clear errors; lazy Gradio."

import os
import sys

import numpy as np
import pytest
import torch
from PIL import Image

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from genaibook.demo import (
    FASHION_CLASSES,
    build_class_demo,
    build_course_demo,
    build_hello_demo,  # noqa: E402
    build_text_to_image_demo,
    class_images_fn,
    demo_components,
    gradio,
    greet,
    images_to_grid,
    text_to_image_fn,
)
from conftest import modules_loaded_by  # noqa: E402


def fake_generate(class_id, guidance_scale, steps, seed, n):
    "A stand-in model: seeded noise whose brightness encodes the class, so tests can read the class back."
    noise = torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed)) * 0.1
    return noise + class_id / 10


def event_fns(demo):
    return {f.fn.__name__: f.fn for f in demo.fns.values() if f.fn is not None}


# ---- text to image --------------------------------------------------------------------------------------------------


def test_text_to_image_size_and_seed(pipe):
    fn = text_to_image_fn(pipe, height=64, width=96)
    a = fn("Watercolor illustration of a rose", "", 7.5, 2.0, 42.0)  # sliders and number boxes send floats
    b = fn("Watercolor illustration of a rose", "", 7.5, 2, 42)
    c = fn("Watercolor illustration of a rose", "", 7.5, 2, 43)
    assert isinstance(a, Image.Image) and a.size == (96, 64) and a.mode == "RGB"
    assert np.array_equal(np.array(a), np.array(b)) and not np.array_equal(np.array(a), np.array(c))


def test_text_to_image_equals_generate(pipe):
    from genaibook.stable_diffusion import generate_images

    fn = text_to_image_fn(pipe, height=64, width=64)
    ours = fn("a lighthouse", "fog", 4.0, 2, 5)
    ref = generate_images(
        pipe, "a lighthouse", "fog", guidance_scale=4.0, num_inference_steps=2, height=64, width=64, seed=5
    )[0]
    assert np.array_equal(np.array(ours), np.array(ref))
    assert np.array_equal(np.array(fn("a lighthouse", "", 4.0, 2, 5)), np.array(fn("a lighthouse", None, 4.0, 2, 5)))


def test_text_to_image_blank_seed_draws_one(pipe):
    fn = text_to_image_fn(pipe, height=64, width=64)
    assert fn("a cat", "", 1.0, 1, None).size == (64, 64)


@pytest.mark.parametrize(
    "args, message",
    [
        (("", "", 7.5, 2, 0), "Type a prompt"),
        (("  ", "", 7.5, 2, 0), "Type a prompt"),
        ((None, "", 7.5, 2, 0), "Type a prompt"),
        (("a", "", 7.5, 0, 0), "steps must be an integer from 1 to 100, got 0"),
        (("a", "", 7.5, 2.5, 0), "steps must be an integer"),
        (("a", "", 7.5, 101, 0), "from 1 to 100, got 101"),
        (("a", "", "high", 2, 0), "guidance scale must be a number"),
        (("a", "", float("nan"), 2, 0), "guidance scale must be a number"),
        (("a", "", 7.5, 2, -1), "seed must be an integer from 0"),
        (("a", "", 7.5, 2, 0.5), "seed must be an integer"),
    ],
)
def test_text_to_image_bad_inputs(pipe, args, message):
    gr = gradio()
    with pytest.raises(gr.Error, match=message):
        text_to_image_fn(pipe, height=64, width=64)(*args)


def test_text_to_image_demo_components(pipe):
    demo = build_text_to_image_demo(pipe, title="T", description="D")
    assert type(demo).__name__ == "Interface"
    assert demo_components(demo) == [
        ("Textbox", "Prompt"),
        ("Textbox", "Negative prompt"),
        ("Slider", "Guidance scale"),
        ("Slider", "Steps"),
        ("Number", "Seed"),
        ("Image", "Image"),
    ]
    slider = next(b for b in demo.blocks.values() if getattr(b, "label", None) == "Guidance scale")
    assert (slider.minimum, slider.maximum, slider.value) == (1, 20, 7.5)
    markdown = " ".join(str(getattr(b, "value", "")) for b in demo.blocks.values() if type(b).__name__ == "Markdown")
    assert "T" in markdown and "D" in markdown  # the title and the description are on the page
    assert list(event_fns(demo)) == ["text_to_image"]


# ---- by class -------------------------------------------------------------------------------------------------------


def test_class_images_grid_and_seed():
    fn = class_images_fn(fake_generate, FASHION_CLASSES, scale=3)
    grid = fn("Sneaker", 1.0, 10.0, 0.0, 4.0)
    assert isinstance(grid, Image.Image) and grid.size == (3 * (4 * 10 + 2), 3 * (10 + 2))
    assert np.array_equal(np.array(grid), np.array(fn(7, 1.0, 10, 0, 4)))  # a class name or its id
    assert not np.array_equal(np.array(grid), np.array(fn("Sneaker", 1.0, 10, 1, 4)))
    inner = np.array(grid)[3 * 2 + 5, 3 * 2 + 5, 0] / 255  # a pixel inside the first image: brightness 0.7 + noise
    assert 0.69 <= inner <= 0.81
    assert fn("Bag", 1.0, 10, None, 16).size == (3 * (8 * 10 + 2), 3 * (2 * 10 + 2))  # 16 samples: two rows of 8


def test_class_images_passes_the_arguments():
    calls = []

    def record(*args):
        calls.append(args)
        return torch.zeros(args[-1], 3, 4, 4)

    class_images_fn(record, ["cat", "dog"])("dog", 3.0, 25.0, 9.0, 2.0)
    assert calls == [(1, 3.0, 25, 9, 2)] and all(type(v) is t for v, t in zip(calls[0], (int, float, int, int, int)))


@pytest.mark.parametrize(
    "args, message",
    [
        (("Hat", 1.0, 10, 0, 4), "unknown class 'Hat': pick one of T-shirt/top, Trouser"),
        ((10, 1.0, 10, 0, 4), "unknown class 10"),
        ((None, 1.0, 10, 0, 4), "unknown class None"),
        (("Bag", 1.0, 0, 0, 4), "steps must be an integer from 1 to 1000"),
        (("Bag", 1.0, 10, 0, 0), "number of samples must be an integer from 1 to 16"),
        (("Bag", 1.0, 10, 0, 17), "number of samples"),
        (("Bag", None, 10, 0, 4), "guidance scale must be a number"),
    ],
)
def test_class_images_bad_inputs(args, message):
    with pytest.raises(ValueError, match=message):
        class_images_fn(fake_generate)(*args)


def test_class_images_checks_generate_fn():
    with pytest.raises(ValueError, match="returned 1 images but was asked for 4"):
        class_images_fn(lambda *a: torch.rand(1, 1, 8, 8))("Bag", 1.0, 5, 0, 4)
    with pytest.raises(ValueError, match=r"\[N, 1 or 3, H, W\]"):
        class_images_fn(lambda *a: torch.rand(a[-1], 2, 8, 8))("Bag", 1.0, 5, 0, 4)
    with pytest.raises(TypeError, match="generate_fn must be callable"):
        class_images_fn("model")
    for bad in ([], ["a", "a"], "abc", [1, 2]):
        with pytest.raises(ValueError, match="non-empty list of distinct strings"):
            class_images_fn(fake_generate, bad)


def test_images_to_grid():
    assert images_to_grid(torch.rand(3, 3, 8, 8), nrow=3).size == (3 * 10 + 2, 12)
    assert images_to_grid(np.ones((2, 8, 8), dtype=np.float32), nrow=1, scale=2).size == (2 * 12, 2 * (2 * 10 + 2))
    assert np.array(images_to_grid(torch.full((1, 1, 4, 4), 2.0)))[3, 3].tolist() == [
        255,
        255,
        255,
    ]  # clamped to [0, 1]
    with pytest.raises(ValueError, match="non-empty"):
        images_to_grid(torch.zeros(0, 1, 8, 8))
    with pytest.raises(ValueError, match="scale must be a positive integer"):
        images_to_grid(torch.rand(1, 1, 4, 4), scale=0)


def test_images_to_grid_is_torchvisions_grid():  # regression: the same pixels as before it went through viz.tensor_grid
    from torchvision.utils import make_grid

    x = torch.rand(5, 3, 6, 6, generator=torch.Generator().manual_seed(0)) * 1.2 - 0.1
    ref = (make_grid(x.clamp(0, 1), nrow=2, padding=3, pad_value=1.0).permute(1, 2, 0).numpy() * 255).round()
    assert np.array_equal(np.array(images_to_grid(x, nrow=2, padding=3)), ref.astype(np.uint8))


def test_class_demo_components():
    demo = build_class_demo(fake_generate)
    assert demo_components(demo) == [
        ("Dropdown", "Class"),
        ("Slider", "Guidance scale"),
        ("Slider", "Steps"),
        ("Number", "Seed"),
        ("Slider", "Number of samples"),
        ("Image", "Samples"),
    ]
    dropdown = next(b for b in demo.blocks.values() if type(b).__name__ == "Dropdown")
    assert [c[0] for c in dropdown.choices] == list(FASHION_CLASSES) and dropdown.value == "T-shirt/top"
    fn = event_fns(demo)["class_images"]
    assert fn(dropdown.value, 1.0, 5, 0, 2).size == (4 * (2 * 10 + 2), 4 * 12)


# ---- together -------------------------------------------------------------------------------------------------------


def test_course_demo_tabs_and_functions(pipe):
    demo = build_course_demo(pipe, fake_generate, height=64, width=64)
    assert type(demo).__name__ == "Blocks"
    kinds = [type(b).__name__ for b in demo.blocks.values()]
    assert kinds.count("Tab") == 2 and "Markdown" in kinds
    labels = [label for _, label in demo_components(demo)]
    assert labels.index("Text to image") < labels.index("Prompt") < labels.index("By class") < labels.index("Class")
    for expected in ("Negative prompt", "Guidance scale", "Steps", "Seed", "Number of samples", "Image", "Samples"):
        assert expected in labels
    fns = event_fns(demo)
    assert sorted(fns) == ["class_images", "text_to_image"]
    assert fns["text_to_image"]("a rose", "", 7.5, 1, 0).size == (64, 64)
    assert isinstance(fns["class_images"]("Coat", 1.0, 3, 0, 3), Image.Image)


def test_hello():
    assert greet("Pedro") == "Hello Pedro"
    demo = build_hello_demo()
    assert type(demo).__name__ == "Interface" and event_fns(demo)["greet"] is greet


# ---- Gradio is optional ---------------------------------------------------------------------------------------------


def test_missing_gradio_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "gradio", None)  # makes `import gradio` raise ImportError
    with pytest.raises(ImportError, match=r"pip install 'genaibook\[demo\]'"):
        build_hello_demo()
    with pytest.raises(ValueError, match="unknown class"):  # event functions still work, with plain ValueErrors
        class_images_fn(fake_generate)("Hat", 1.0, 10, 0, 4)


def test_import_is_light():
    heavy = ("gradio", "diffusers", "transformers", "torchvision", "matplotlib")
    assert modules_loaded_by("import genaibook.demo", heavy) == []
