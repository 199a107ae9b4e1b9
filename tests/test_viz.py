"Edge cases and bad inputs for genaibook.viz."
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from PIL import Image

from genaibook.viz import (display_range, get_grid, grid_shape, image_grid, plot_noise_and_denoise, plot_scheduler,
                           schedule_coefficients, show_image, show_images, subplots, to_hwc)


def drawn(): return [ax.get_images()[0].get_array() for ax in plt.gcf().axes if ax.get_images()]


@pytest.mark.parametrize("im, shape", [
    (Image.new("RGB", (5, 4)), (4, 5, 3)), (Image.new("RGBA", (5, 4)), (4, 5, 4)), (Image.new("L", (5, 4)), (4, 5)),
    (torch.zeros(3, 4, 5), (4, 5, 3)), (torch.zeros(1, 4, 5), (4, 5)), (torch.zeros(4, 5), (4, 5)),
    (torch.zeros(3, 4, 5, requires_grad=True), (4, 5, 3)), (np.zeros((4, 5, 3)), (4, 5, 3)), (np.zeros((4, 5, 1)), (4, 5)),
    (np.zeros((3, 4, 5)), (4, 5, 3))])
def test_to_hwc_layouts(im, shape):
    assert to_hwc(im).shape == shape


@pytest.mark.parametrize("bad, exc, message", [
    (torch.zeros(2, 4, 5), ValueError, "expected"), (torch.zeros(1, 3, 4, 5), ValueError, "show_images"),
    (np.zeros(5), ValueError, "expected"), ([[0, 1]], TypeError, "type list"), (None, TypeError, "NoneType")])
def test_to_hwc_errors(bad, exc, message):
    with pytest.raises(exc, match=message): to_hwc(bad)


def test_display_range_table():
    u8, kw = display_range(np.full((2, 2), 7, np.uint8)); assert kw == {"vmin": 0, "vmax": 255} and u8.dtype == np.uint8
    unit, kw = display_range(np.array([[0.0, 0.5]])); assert kw == {"vmin": 0, "vmax": 1} and unit.max() == 0.5
    sym, _ = display_range(np.array([[-1.0, 0.0, 1.0]])); np.testing.assert_allclose(sym, [[0, 0.5, 1]])
    latent, kw = display_range(np.array([[-4.0, 3.0]])); assert kw == {} and latent.min() == -4  # stretched by imshow
    rgb, kw = display_range(np.full((2, 2, 3), 5.0)); assert kw == {} and rgb.max() == 1  # clipped, as matplotlib would
    b, _ = display_range(np.array([[True, False]])); assert b.dtype == np.float32


def test_show_image_kinds():
    ax = show_image(torch.rand(3, 8, 8) * 2 - 1, title="t")
    assert ax.get_title() == "t" and ax.get_images()[0].get_array().min() >= 0
    ax = show_image(np.zeros((8, 8)), cmap="viridis")
    assert ax.get_images()[0].get_cmap().name == "viridis"
    assert show_image(Image.new("L", (3, 3))).get_images()[0].get_cmap().name == "gray"


def test_subplots_always_array():
    fig, axs = subplots(); assert axs.shape == (1,)
    fig, axs = subplots(2, 3, imsize=1); assert axs.shape == (2, 3) and tuple(fig.get_size_inches()) == (3, 2)
    fig, _ = subplots(suptitle="hello"); assert fig._suptitle.get_text() == "hello"


@pytest.mark.parametrize("n, rows, cols, expected", [(1, None, None, (1, 1)), (5, None, None, (2, 3)),
                                                     (7, 1, None, (1, 7)), (7, None, 2, (4, 2)), (6, 2, 3, (2, 3))])
def test_grid_shape(n, rows, cols, expected):
    assert grid_shape(n, rows, cols) == expected


@pytest.mark.parametrize("args, message", [((0,), "at least one"), ((5, 2, 2), "room for 4"), ((3, 0), "nrows"),
                                           ((3, None, -1), "ncols"), ((3, 1.5), "nrows")])
def test_grid_shape_errors(args, message):
    with pytest.raises(ValueError, match=message): grid_shape(*args)


def test_get_grid_hides_spare_axes():
    fig, axs = get_grid(5, title="five")
    assert [ax.axison for ax in axs.flat] == [True] * 5 + [False]
    assert fig._suptitle.get_text() == "five"


@pytest.mark.parametrize("ims, n", [
    ([Image.new("RGB", (4, 4))] * 3, 3), (torch.rand(6, 3, 8, 8), 6), (torch.rand(1, 8, 8), 1), (torch.rand(4, 8, 8), 4),
    (np.zeros((2, 8, 8, 3)), 2), (Image.new("RGB", (4, 4)), 1), ((torch.rand(1, 4, 4) for _ in range(3)), 3)])
def test_show_images_inputs(ims, n):
    show_images(ims)
    assert len(drawn()) == n


def test_show_images_titles_and_layout():
    show_images(torch.rand(5, 1, 4, 4), nrows=1, titles=[0, 1, 2])
    axes = [ax for ax in plt.gcf().axes if ax.get_images()]
    assert [ax.get_title() for ax in axes] == ["0", "1", "2", "", ""]


@pytest.mark.parametrize("ims, kwargs, exc, message", [
    (torch.rand(8, 8), {}, ValueError, "3-D"), (torch.rand(2, 1, 1, 4, 4), {}, ValueError, "3-D"),
    ([], {}, ValueError, "at least one"), (3, {}, TypeError, "list or a batch"),
    ([Image.new("RGB", (2, 2))], {"titles": ["a", "b"]}, ValueError, "2 titles for 1 images"),
    (torch.rand(5, 4, 4), {"nrows": 2, "ncols": 2}, ValueError, "room for 4")])
def test_show_images_errors(ims, kwargs, exc, message):
    with pytest.raises(exc, match=message): show_images(ims, **kwargs)


def test_image_grid():
    red, blue = Image.new("RGB", (4, 2), "red"), Image.new("L", (8, 8), 255)
    g = image_grid([red, blue, red], rows=2, cols=2)
    assert g.size == (8, 4) and g.mode == "RGB"
    assert g.getpixel((0, 0)) == (255, 0, 0) and g.getpixel((4, 0)) == (255, 255, 255) and g.getpixel((4, 2)) == (0, 0, 0)


@pytest.mark.parametrize("imgs, message", [([], "at least one"), ([np.zeros((2, 2))], "PIL images"),
                                           ([Image.new("RGB", (1, 1))] * 3, "do not fit")])
def test_image_grid_errors(imgs, message):
    with pytest.raises((ValueError, TypeError), match=message): image_grid(imgs, 1, 2)


def test_plot_scheduler_matches_diffusers():
    from diffusers import DDPMScheduler
    s = DDPMScheduler(beta_schedule="squaredcos_cap_v2")
    ax = plot_scheduler(s)
    np.testing.assert_allclose(ax.lines[0].get_ydata(), s.alphas_cumprod.double().sqrt().numpy(), rtol=1e-6)
    np.testing.assert_allclose(ax.lines[1].get_ydata(), (1 - s.alphas_cumprod.double()).sqrt().numpy(), rtol=1e-6)
    ax = plot_scheduler(s, plot_both=False, label="cosine")
    assert len(ax.lines) == 1 and ax.get_legend().get_texts()[0].get_text() == "cosine"


def test_plot_scheduler_without_alphas():
    class Linear: num_train_timesteps = 10
    class FromConfig:
        class config: num_train_timesteps = 4
    signal, noise = schedule_coefficients(Linear())
    np.testing.assert_allclose(signal + noise, np.ones(10))
    assert len(schedule_coefficients(FromConfig())[0]) == 4
    with pytest.raises(TypeError, match="neither alphas_cumprod nor num_train_timesteps"): plot_scheduler(object())


def test_plot_noise_and_denoise():
    from diffusers.schedulers.scheduling_ddpm import DDPMSchedulerOutput
    out = DDPMSchedulerOutput(prev_sample=torch.rand(8, 3, 8, 8) * 2 - 1, pred_original_sample=torch.zeros(8, 3, 8, 8))
    fig, axs = plot_noise_and_denoise(out, 7)
    assert [ax.get_title() for ax in axs] == ["Current x (step 7)", "Predicted denoised images (step 7)"]
    grid = axs[1].get_images()[0].get_array()
    assert grid.shape[-1] == 3 and 0 <= grid.min() and grid.max() <= 1
    fig, axs = plot_noise_and_denoise(DDPMSchedulerOutput(prev_sample=torch.zeros(2, 1, 4, 4), pred_original_sample=None), 0)
    assert len(axs) == 1
    with pytest.raises(TypeError, match="prev_sample"): plot_noise_and_denoise(torch.zeros(1, 3, 4, 4), 0)
