"Edge cases and bad inputs for genaibook.viz."

import inspect

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from PIL import Image

from genaibook.viz import (
    _grid_image,
    display_range,
    get_grid,
    grid_shape,
    image_grid,
    plot_noise_and_denoise,
    plot_scheduler,
    schedule_coefficients,
    show_code,
    show_image,
    show_images,
    subplots,
    tensor_grid,
    tensor_to_pil,
    to_hwc,
)


def drawn():
    return [ax.get_images()[0].get_array() for ax in plt.gcf().axes if ax.get_images()]


@pytest.mark.parametrize(
    "im, shape",
    [
        (Image.new("RGB", (5, 4)), (4, 5, 3)),
        (Image.new("RGBA", (5, 4)), (4, 5, 4)),
        (Image.new("L", (5, 4)), (4, 5)),
        (torch.zeros(3, 4, 5), (4, 5, 3)),
        (torch.zeros(1, 4, 5), (4, 5)),
        (torch.zeros(4, 5), (4, 5)),
        (torch.zeros(3, 4, 5, requires_grad=True), (4, 5, 3)),
        (np.zeros((4, 5, 3)), (4, 5, 3)),
        (np.zeros((4, 5, 1)), (4, 5)),
        (np.zeros((3, 4, 5)), (4, 5, 3)),
    ],
)
def test_to_hwc_layouts(im, shape):
    assert to_hwc(im).shape == shape


@pytest.mark.parametrize(
    "bad, exc, message",
    [
        (torch.zeros(2, 4, 5), ValueError, "expected"),
        (torch.zeros(1, 3, 4, 5), ValueError, "show_images"),
        (np.zeros(5), ValueError, "expected"),
        ([[0, 1]], TypeError, "type list"),
        (None, TypeError, "NoneType"),
    ],
)
def test_to_hwc_errors(bad, exc, message):
    with pytest.raises(exc, match=message):
        to_hwc(bad)


def test_display_range_table():
    u8, kw = display_range(np.full((2, 2), 7, np.uint8))
    assert kw == {"vmin": 0, "vmax": 255} and u8.dtype == np.uint8
    unit, kw = display_range(np.array([[0.0, 0.5]]))
    assert kw == {"vmin": 0, "vmax": 1} and unit.max() == 0.5
    sym, _ = display_range(np.array([[-1.0, 0.0, 1.0]]))
    np.testing.assert_allclose(sym, [[0, 0.5, 1]])
    latent, kw = display_range(np.array([[-4.0, 3.0]]))
    assert kw == {} and latent.min() == -4  # stretched by imshow
    rgb, kw = display_range(np.full((2, 2, 3), 5.0))
    assert kw == {} and rgb.max() == 1  # clipped, as matplotlib would
    b, _ = display_range(np.array([[True, False]]))
    assert b.dtype == np.float32


def test_show_image_kinds():
    ax = show_image(torch.rand(3, 8, 8) * 2 - 1, title="t")
    assert ax.get_title() == "t" and ax.get_images()[0].get_array().min() >= 0
    ax = show_image(np.zeros((8, 8)), cmap="viridis")
    assert ax.get_images()[0].get_cmap().name == "viridis"
    assert show_image(Image.new("L", (3, 3))).get_images()[0].get_cmap().name == "gray"


def cmap_of(ax):
    return ax.get_images()[0].get_cmap().name


def test_single_channel_colormap_rule():
    grey = np.zeros((4, 4))
    assert cmap_of(show_image(grey)) == "gray"  # matplotlib's default (viridis) is replaced by grey
    with mpl.rc_context({"image.cmap": "gray_r"}):  # what chapters 3 to 5 set
        assert cmap_of(show_image(grey)) == "gray_r"
        assert cmap_of(show_image(grey, cmap="magma")) == "magma"  # an argument beats rcParams
        show_images(torch.rand(2, 1, 4, 4))
        assert [ax.get_images()[0].get_cmap().name for ax in plt.gcf().axes] == ["gray_r", "gray_r"]
    assert cmap_of(show_image(grey)) == "gray"
    assert cmap_of(show_image(grey, cmap="viridis")) == "viridis"
    rgb = show_image(np.zeros((4, 4, 3)))
    assert rgb.get_images()[0].get_array().shape == (4, 4, 3)  # colour images ignore colormaps


def test_subplots_always_array():
    fig, axs = subplots()
    assert axs.shape == (1,)
    fig, axs = subplots(2, 3, imsize=1)
    assert axs.shape == (2, 3) and tuple(fig.get_size_inches()) == (3, 2)
    fig, _ = subplots(suptitle="hello")
    assert fig._suptitle.get_text() == "hello"


@pytest.mark.parametrize(
    "n, rows, cols, expected",
    [(1, None, None, (1, 1)), (5, None, None, (2, 3)), (7, 1, None, (1, 7)), (7, None, 2, (4, 2)), (6, 2, 3, (2, 3))],
)
def test_grid_shape(n, rows, cols, expected):
    assert grid_shape(n, rows, cols) == expected


@pytest.mark.parametrize(
    "args, message",
    [
        ((0,), "n must be a positive integer, got 0"),
        ((5, 2, 2), "room for 4"),
        ((3, 0), "nrows must be a positive integer or None, got 0"),
        ((3, None, -1), "ncols"),
        ((3, 1.5), "nrows"),
        ((True,), "n must be"),
    ],
)
def test_grid_shape_errors(args, message):
    with pytest.raises(ValueError, match=message):
        grid_shape(*args)


def test_get_grid_hides_spare_axes():
    fig, axs = get_grid(5, title="five")
    assert [ax.axison for ax in axs.flat] == [True] * 5 + [False]
    assert fig._suptitle.get_text() == "five"


@pytest.mark.parametrize(
    "ims, n",
    [
        ([Image.new("RGB", (4, 4))] * 3, 3),
        (torch.rand(6, 3, 8, 8), 6),
        (torch.rand(1, 8, 8), 1),
        (torch.rand(4, 8, 8), 4),
        (np.zeros((2, 8, 8, 3)), 2),
        (Image.new("RGB", (4, 4)), 1),
        ((torch.rand(1, 4, 4) for _ in range(3)), 3),
    ],
)
def test_show_images_inputs(ims, n):
    show_images(ims)
    assert len(drawn()) == n


def test_show_images_titles_and_layout():
    show_images(torch.rand(5, 1, 4, 4), nrows=1, titles=[0, 1, 2])
    axes = [ax for ax in plt.gcf().axes if ax.get_images()]
    assert [ax.get_title() for ax in axes] == ["0", "1", "2", "", ""]


@pytest.mark.parametrize(
    "ims, kwargs, exc, message",
    [
        (torch.rand(8, 8), {}, ValueError, "3-D"),
        (torch.rand(2, 1, 1, 4, 4), {}, ValueError, "3-D"),
        ([], {}, ValueError, "at least one"),
        (3, {}, TypeError, "list or a batch"),
        ([Image.new("RGB", (2, 2))], {"titles": ["a", "b"]}, ValueError, "2 titles for 1 images"),
        (torch.rand(5, 4, 4), {"nrows": 2, "ncols": 2}, ValueError, "room for 4"),
    ],
)
def test_show_images_errors(ims, kwargs, exc, message):
    with pytest.raises(exc, match=message):
        show_images(ims, **kwargs)


def test_image_grid():
    red, blue = Image.new("RGB", (4, 2), "red"), Image.new("L", (8, 8), 255)
    g = image_grid([red, blue, red], rows=2, cols=2)
    assert g.size == (8, 4) and g.mode == "RGB"
    assert (
        g.getpixel((0, 0)) == (255, 0, 0) and g.getpixel((4, 0)) == (255, 255, 255) and g.getpixel((4, 2)) == (0, 0, 0)
    )


@pytest.mark.parametrize(
    "imgs, message",
    [([], "at least one"), ([np.zeros((2, 2))], "PIL images"), ([Image.new("RGB", (1, 1))] * 3, "do not fit")],
)
def test_image_grid_errors(imgs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        image_grid(imgs, 1, 2)
    with pytest.raises(ValueError, match="cols must be a positive integer"):
        image_grid([Image.new("RGB", (1, 1))], 1, 0)


def pasted_grid(imgs, rows, cols):
    "The book's image_grid (PIL paste), the reference for ours."
    w, h = imgs[0].size
    grid = Image.new("RGB", size=(cols * w, rows * h))
    for i, im in enumerate(imgs):
        grid.paste(im.convert("RGB").resize((w, h)), box=(i % cols * w, i // cols * h))
    return grid


@pytest.mark.parametrize("seed", range(6))
def test_image_grid_is_the_books_paste(seed):  # regression: the same pixels since it goes through tensor_grid
    rng = np.random.default_rng(seed)
    n, rows = int(rng.integers(1, 7)), int(rng.integers(1, 4))
    cols = -(-n // rows) + int(rng.integers(0, 2))

    def random_image():
        h, w = rng.integers(3, 30, size=2)
        rgba = Image.fromarray(rng.integers(0, 256, (h, w, 4), dtype=np.uint8))
        return rgba.convert(str(rng.choice(["RGB", "L", "RGBA", "P"])))

    imgs = [random_image() for _ in range(n)]
    ours, book = image_grid(imgs, rows, cols), pasted_grid(imgs, rows, cols)
    assert ours.size == book.size and ours.mode == book.mode
    assert np.array_equal(np.array(ours), np.array(book))


def test_tensor_to_pil():
    im = Image.fromarray(np.arange(48, dtype=np.uint8).reshape(4, 4, 3))
    from genaibook.core import pil_to_tensor

    assert np.array_equal(np.array(tensor_to_pil(pil_to_tensor(im))), np.array(im))  # rounds, so no value drops by one
    grey = tensor_to_pil(torch.full((1, 2, 3), 0.5))
    assert grey.mode == "RGB" and grey.size == (3, 2) and grey.getpixel((0, 0)) == (128, 128, 128)
    assert tensor_to_pil(torch.full((3, 1, 1), 2.0)).getpixel((0, 0)) == (255, 255, 255)  # clamped
    for bad in (torch.zeros(2, 4, 4), torch.zeros(1, 3, 4, 4), np.zeros((3, 4, 4))):
        with pytest.raises(ValueError, match=r"\[3 or 1, H, W\]"):
            tensor_to_pil(bad)


def test_tensor_grid_layout():
    g = tensor_grid(torch.zeros(3, 1, 4, 4), nrow=2, padding=1, pad_value=0.5)
    assert g.shape == (3, 2 * 5 + 1, 2 * 5 + 1) and g[0, 0, 0] == 0.5 and g[0, 1, 1] == 0
    assert torch.equal(tensor_grid(np.ones((1, 2, 2)), padding=0), torch.ones(3, 2, 2))
    assert tensor_grid(torch.full((1, 3, 2, 2), -1.0), padding=0, value_range=(-1, 1)).max() == 0
    with pytest.raises(ValueError, match="non-empty"):
        tensor_grid(torch.zeros(0, 3, 2, 2))


def test_grid_image_is_the_old_make_grid():  # regression: plot_noise_and_denoise's grids, black borders
    from torchvision.utils import make_grid

    x = torch.randn(5, 3, 6, 6, generator=torch.Generator().manual_seed(0)) * 1.5
    old = make_grid(x.clip(-1, 1) * 0.5 + 0.5, nrow=4).permute(1, 2, 0).numpy()
    np.testing.assert_allclose(_grid_image(x), old, atol=1e-7)


def documented(a, b=2):
    "A function with a fence in its docstring: ```"
    return a + b


def test_show_code():
    code = show_code(documented)
    assert code == inspect.getsource(documented) and isinstance(code, str)
    md = code._repr_markdown_()
    assert md.startswith("````python\ndef documented(a, b=2):") and md.endswith("\n````")  # longer than the ``` inside
    assert show_code(show_code).startswith("def show_code(")
    from genaibook.text import generate_text

    assert show_code(generate_text).startswith("@torch.no_grad()\ndef generate_text(")  # decorators included
    assert show_code(Image.Image.resize).lstrip().startswith("def resize(")
    for bad in (3, "def f(): pass", None):
        with pytest.raises(TypeError, match="show_code needs a function, class or method"):
            show_code(bad)


def test_show_code_displays_once_as_markdown():
    from IPython.core.formatters import DisplayFormatter

    data, _ = DisplayFormatter().format(show_code(documented))
    assert data["text/markdown"].startswith("````python") and data["text/plain"].startswith("def documented")


def test_plot_scheduler_matches_diffusers():
    from diffusers import DDPMScheduler

    s = DDPMScheduler(beta_schedule="squaredcos_cap_v2")
    ax = plot_scheduler(s)
    np.testing.assert_allclose(ax.lines[0].get_ydata(), s.alphas_cumprod.double().sqrt().numpy(), rtol=1e-6)
    np.testing.assert_allclose(ax.lines[1].get_ydata(), (1 - s.alphas_cumprod.double()).sqrt().numpy(), rtol=1e-6)
    ax = plot_scheduler(s, plot_both=False, label="cosine")
    assert len(ax.lines) == 1 and ax.get_legend().get_texts()[0].get_text() == "cosine"


def test_plot_scheduler_without_alphas():
    class Linear:
        num_train_timesteps = 10

    class FromConfig:
        class config:
            num_train_timesteps = 4

    signal, noise = schedule_coefficients(Linear())
    np.testing.assert_allclose(signal + noise, np.ones(10))
    assert len(schedule_coefficients(FromConfig())[0]) == 4
    with pytest.raises(TypeError, match="neither alphas_cumprod nor num_train_timesteps"):
        plot_scheduler(object())


def test_plot_noise_and_denoise():
    from diffusers.schedulers.scheduling_ddpm import DDPMSchedulerOutput

    out = DDPMSchedulerOutput(prev_sample=torch.rand(8, 3, 8, 8) * 2 - 1, pred_original_sample=torch.zeros(8, 3, 8, 8))
    fig, axs = plot_noise_and_denoise(out, 7)
    assert [ax.get_title() for ax in axs] == ["Current x (step 7)", "Predicted denoised images (step 7)"]
    grid = axs[1].get_images()[0].get_array()
    assert grid.shape[-1] == 3 and 0 <= grid.min() and grid.max() <= 1
    fig, axs = plot_noise_and_denoise(
        DDPMSchedulerOutput(prev_sample=torch.zeros(2, 1, 4, 4), pred_original_sample=None), 0
    )
    assert len(axs) == 1
    with pytest.raises(TypeError, match="prev_sample"):
        plot_noise_and_denoise(torch.zeros(1, 3, 4, 4), 0)
