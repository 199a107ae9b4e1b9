"""genaibook.image_editing (chapter 8): SDEdit, mask-blended inpainting, DDIM inversion round trips, class blending,
the ControlNet miniature, edge F1, the offline sample photos and the canvas app; edge cases and bad input."""

import os

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, UNet2DModel
from PIL import Image

from genaibook.core import SampleURL
from genaibook.image_editing import (
    CANVAS_REGIONS,
    SAMPLE_IMAGE_STANDINS,
    ControlledUNet,
    ControlLoss,
    EdgeDataset,
    MiniControlNet,
    blend_predictor,
    build_canvas_demo,
    canny_edges,
    canvas_fn,
    check_mask,
    class_predictor,
    ddim_invert,
    edge_f1,
    inpaint,
    load_sample_image,
    masked_mse,
    regenerate,
    region_mask,
    sdedit,
    ssim,
    strength_timesteps,
    unet_decode,
    unet_embedding,
    unet_encode,
)

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def tiny_unet(num_class_embeds=3, **overrides):
    "A small random UNet2DModel with the course models' block layout."
    torch.manual_seed(0)
    config = dict(
        sample_size=16,
        in_channels=1,
        out_channels=1,
        block_out_channels=(8, 16),
        layers_per_block=1,
        norm_num_groups=4,
        down_block_types=("DownBlock2D",) * 2,
        up_block_types=("UpBlock2D",) * 2,
        num_class_embeds=num_class_embeds,
    )
    return UNet2DModel(**{**config, **overrides}).eval()


@pytest.fixture(scope="module")
def unet():
    return tiny_unet()


@pytest.fixture
def ddim():
    return DDIMScheduler(beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction", clip_sample=False)


@pytest.fixture(scope="module")
def images():
    return torch.rand(4, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1


LABELS = torch.tensor([0, 1, 0, 1])


# ---- input checks ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("strength", [-0.1, 1.01, "0.5", None, True])
def test_strength_outside_0_1_is_refused(unet, ddim, images, strength):
    with pytest.raises(ValueError, match=r"strength must be a number in \[0, 1\]"):
        sdedit(unet, ddim, images, strength, 4, LABELS)


def test_images_are_checked(unet, ddim, images):
    with pytest.raises(ValueError, match=r"x\[None\]"):
        sdedit(unet, ddim, images[0], 0.5, 4, LABELS)
    with pytest.raises(ValueError, match=r"x \* 2 - 1"):
        sdedit(unet, ddim, images * 3, 0.5, 4, LABELS)
    with pytest.raises(TypeError, match="tensor"):
        sdedit(unet, ddim, images.numpy(), 0.5, 4, LABELS)


def test_mask_size_mismatch_non_binary_and_bad_shapes(unet, ddim, images):
    with pytest.raises(ValueError, match="resize the mask"):
        inpaint(unet, ddim, images, torch.ones(8, 8), 4, class_labels=LABELS)
    with pytest.raises(ValueError, match="binary"):
        inpaint(unet, ddim, images, torch.full((16, 16), 0.5), 4, class_labels=LABELS)
    with pytest.raises(ValueError, match=r"\[B, 1, H, W\] with B = 4"):
        check_mask(torch.ones(3, 1, 16, 16), images)
    with pytest.raises(ValueError, match=r"\[B, 1, H, W\]"):
        check_mask(torch.ones(1, 2, 16, 16), images)
    assert check_mask(torch.ones(16, 16, dtype=torch.bool), images).dtype == torch.float32


def test_strength_timesteps(ddim):
    assert strength_timesteps(ddim, 20, 0.5).tolist() == ddim.timesteps[10:].tolist()
    assert len(strength_timesteps(ddim, 20, 0.0)) == 0 and len(strength_timesteps(ddim, 20, 1.0)) == 20
    with pytest.raises(ValueError, match="num_inference_steps"):
        strength_timesteps(ddim, 0, 0.5)


# ---- SDEdit and inpainting ------------------------------------------------------------------------------------------
def test_sdedit_shapes_seeding_and_strength_zero(unet, ddim, images):
    assert torch.equal(sdedit(unet, ddim, images, 0, 4, LABELS), images)
    a = sdedit(unet, ddim, images, 0.6, 4, LABELS, 2.0, 2, torch.Generator().manual_seed(3))
    b = sdedit(unet, ddim, images, 0.6, 4, LABELS, 2.0, 2, torch.Generator().manual_seed(3))
    c = sdedit(unet, ddim, images, 0.6, 4, LABELS, 2.0, 2, torch.Generator().manual_seed(4))
    assert a.shape == images.shape and torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= -1 and a.max() <= 1


def test_sdedit_needs_the_null_label_for_guidance(unet, ddim, images):
    with pytest.raises(ValueError, match="uncond_label"):
        sdedit(unet, ddim, images, 0.5, 4, LABELS, guidance_scale=3.0)


@pytest.mark.parametrize("resample", [1, 3])
def test_inpaint_keeps_the_unmasked_pixels_exactly(unet, ddim, images, resample):
    mask = torch.zeros(4, 1, 16, 16)
    mask[0, :, :8] = 1  # per-image masks: the top of image 0, the left of image 1, nothing in 2, all of 3
    mask[1, :, :, :8] = 1
    mask[3] = 1
    out = inpaint(
        unet, ddim, images, mask, 4, resample=resample, class_labels=LABELS, generator=torch.Generator().manual_seed(0)
    )
    keep = mask == 0
    assert torch.equal(out[keep], images[keep])
    assert torch.equal(out[2], images[2])
    assert not torch.equal(out[3], images[3]) and not torch.equal(out[0, :, :8], images[0, :, :8])


def test_inpaint_strength_below_one_and_zero(unet, ddim, images):
    mask = region_mask("centre", 16)
    out = inpaint(unet, ddim, images, mask, 4, strength=0.5, class_labels=LABELS)
    assert out.shape == images.shape
    assert torch.equal(inpaint(unet, ddim, images, mask, 4, strength=0.0, class_labels=LABELS), images)
    with pytest.raises(ValueError, match="resample"):
        inpaint(unet, ddim, images, mask, 4, resample=0, class_labels=LABELS)


# ---- inversion ------------------------------------------------------------------------------------------------------
def test_ddim_inversion_round_trip_improves_with_steps(unet, ddim, images):
    errors = []
    for steps in (4, 20, 100):
        noise = ddim_invert(unet, ddim, images, steps, class_labels=LABELS)
        errors.append((regenerate(unet, ddim, noise, steps, class_labels=LABELS) - images).pow(2).mean().item())
    assert errors[0] > errors[1] > errors[2] and errors[2] < 1e-3, errors


def test_partial_inversion_and_unconditional_model(ddim, images):
    model = tiny_unet(num_class_embeds=None)
    noise = ddim_invert(model, ddim, images, 50, strength=0.4)
    back = regenerate(model, ddim, noise, 50, strength=0.4)
    assert (back - images).pow(2).mean() < 1e-3
    assert torch.equal(ddim_invert(model, ddim, images, 10, strength=0.0), images)


def test_regenerate_under_another_class_changes_the_image(unet, ddim, images):
    noise = ddim_invert(unet, ddim, images, 10, class_labels=LABELS)
    assert not torch.allclose(regenerate(unet, ddim, noise, 10, class_labels=1 - LABELS), images, atol=1e-2)


# ---- class blending -------------------------------------------------------------------------------------------------
def test_blend_matches_guidance_and_mixes_linearly(unet, ddim, images):
    x, t = images, torch.tensor(500)
    with torch.inference_mode():
        one = blend_predictor(unet, [1], [1.0], 4, 2.5, 2)(x, t)
        ref = class_predictor(unet, 4, 1, 2.5, 2)(x, t)
        torch.testing.assert_close(one, ref, atol=1e-5, rtol=1e-5)
        a, b = (class_predictor(unet, 4, c, 2.5, 2)(x, t) for c in (0, 1))
        mix = blend_predictor(unet, [0, 1], [0.3, 0.7], 4, 2.5, 2)(x, t)
        torch.testing.assert_close(mix, 0.3 * a + 0.7 * b, atol=1e-5, rtol=1e-5)  # weights summing to 1: a convex mix
        per_image = blend_predictor(unet, [0, 1], [[1, 0], [0, 1], [1, 0], [0, 1]], 4, 2.5, 2)(x, t)
        torch.testing.assert_close(per_image[1], b[1], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match=r"weights must be \[K\] or \[B, K\]"):
        blend_predictor(unet, [0, 1], [[1, 0]], 4)


# ---- ControlNet miniature -------------------------------------------------------------------------------------------
def test_encode_decode_is_the_unet_forward(unet, images):
    t, y = torch.tensor([1, 200, 600, 999]), LABELS
    with torch.inference_mode():
        emb = unet_embedding(unet, images, t, y)
        torch.testing.assert_close(unet_decode(unet, *unet_encode(unet, images, emb), emb), unet(images, t, y).sample)
        emb = unet_embedding(unet, images, torch.tensor(5), y)  # one timestep for the batch
        torch.testing.assert_close(unet_decode(unet, *unet_encode(unet, images, emb), emb), unet(images, 5, y).sample)
    with pytest.raises(ValueError, match="class_labels"):
        unet_embedding(unet, images, 5)


def test_fresh_controlnet_is_the_identity_and_only_it_learns(unet, images):
    controlled = ControlledUNet(tiny_unet())
    edges = (torch.rand(4, 1, 16, 16) > 0.7).float()
    t = torch.tensor([1, 200, 600, 999])
    with torch.no_grad():
        torch.testing.assert_close(controlled(images, t, LABELS, control=edges), unet(images, t, LABELS).sample)
    controlled(images, t, LABELS, control=edges).pow(2).mean().backward()
    learned = {n.split(".")[0] for n, p in controlled.named_parameters() if p.grad is not None}
    assert learned == {"controlnet"} and not any(p.requires_grad for p in controlled.unet.parameters())


def test_control_is_tiled_for_guidance_and_checked(unet, images):
    controlled = ControlledUNet(tiny_unet())
    with torch.no_grad():
        for p in [*controlled.controlnet.zero_convs.parameters(), *controlled.controlnet.hint[-1].parameters()]:
            p.normal_(0, 0.1)  # as if trained: the condition map now matters
    edges = (torch.rand(4, 1, 16, 16) > 0.7).float()
    controlled.control = edges
    with torch.inference_mode():
        guided = class_predictor(controlled, 4, LABELS, 2.0, 2)(images, torch.tensor(300))  # a batch of 8 inside
        assert guided.shape == images.shape
        assert not torch.allclose(controlled(images, 300, LABELS), controlled(images, 300, LABELS, control=1 - edges))
    with pytest.raises(ValueError, match="one per image"):
        controlled(images, 300, LABELS, control=edges[:3])
    with pytest.raises(ValueError, match=r"control must be \[B, 1, H, W\]"):
        controlled.controlnet(images, 300, edges[:, :, :8], LABELS)


def test_unsupported_unet_options_are_refused():
    with pytest.raises(ValueError, match="center_input_sample"):
        MiniControlNet(tiny_unet(center_input_sample=True))


def test_control_loss_trains_through_learner(ddim, images):
    from genaibook.diffusion import DiffusionLoss
    from genaibook.train import Learner, make_dataloader

    data = EdgeDataset(images, LABELS)
    assert data.control.shape == (4, 1, 16, 16) and set(data.control.unique().tolist()) <= {0.0, 1.0}
    model = ControlledUNet(tiny_unet())
    loss = ControlLoss(DiffusionLoss(ddim, "v_prediction", class_dropout=0.5, null_class=2))
    learn = Learner(model, make_dataloader(data, batch_size=2), loss, lr=1e-2, progress=False)
    learn.fit(steps=2)
    assert model.control is None  # the loss detaches the maps after each batch
    assert model.controlnet.mid_zero_conv.weight.abs().sum() > 0
    with pytest.raises(KeyError, match="EdgeDataset"):
        loss(model, {"images": images})
    with pytest.raises(ValueError, match="4 images but 3 labels"):
        EdgeDataset(images, LABELS[:3])


# ---- edges and metrics ----------------------------------------------------------------------------------------------
def test_canny_and_edge_f1():
    square = -torch.ones(2, 1, 16, 16)
    square[:, :, 4:12, 4:12] = 1
    e = canny_edges(square)
    assert e.shape == (2, 1, 16, 16) and e.sum() > 0
    assert torch.equal(canny_edges(square.expand(2, 3, 16, 16)), e)  # RGB is read as grey
    assert torch.equal(edge_f1(e, e), torch.ones(2))
    shifted = torch.roll(e, 2, dims=-1)
    assert (edge_f1(shifted, e, tolerance=2) == 1).all() and (edge_f1(shifted, e, tolerance=0) < 0.7).all()
    empty = torch.zeros_like(e)
    assert torch.equal(edge_f1(empty, empty), torch.ones(2)) and torch.equal(edge_f1(empty, e), torch.zeros(2))
    with pytest.raises(ValueError, match="same shape"):
        edge_f1(e, e[:1])
    with pytest.raises(ValueError, match="tolerance"):
        edge_f1(e, e, tolerance=-1)


def test_ssim_and_masked_mse():
    a = torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(ssim(a, a), torch.ones(3))
    assert (ssim(a, 1 - a) < 0).all()
    mask = torch.zeros(16, 16)
    mask[:4] = 1
    b = a.clone()
    b[..., 4:, :] = 0  # differences outside the mask don't count
    assert torch.equal(masked_mse(a, b, mask), torch.zeros(3))
    assert (masked_mse(a, b) > 0).all()
    with pytest.raises(ValueError, match="same shape"):
        ssim(a, a[:2])


# ---- sample photos and the app --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(SAMPLE_IMAGE_STANDINS))
def test_every_chapter_8_photo_has_a_real_stand_in(name):
    im = load_sample_image(getattr(SampleURL, name), size=(48, 32), offline=True)
    assert im.size == (48, 32) and im.mode == "RGB" and np.array(im).std() > 10  # a real photo, not a flat fill


def test_stand_in_mask_and_unknown_urls(tmp_path):
    image = load_sample_image(SampleURL.DogBenchImage, offline=True)
    mask = load_sample_image(SampleURL.DogBenchMask, offline=True)
    assert mask.size == image.size and set(np.unique(np.array(mask))) == {0, 255}
    with pytest.raises(ValueError, match="no offline stand-in"):
        load_sample_image("https://example.com/cat.png", offline=True)
    Image.new("RGB", (5, 7), "red").save(tmp_path / "red.png")
    assert load_sample_image(str(tmp_path / "red.png"), offline=True).size == (5, 7)


def test_canvas_event_function(unet, ddim, images):
    edit = canvas_fn(unet, ddim, images, null_class=2, class_names=["a", "b"], steps=4)
    for region in CANVAS_REGIONS:
        assert edit(0, "a", region, "SDEdit", 0.5, 2.0, 1).size == (4 * (3 * 16 + 8), 4 * 20)
    one = np.array(edit(2, 1, "left half", "DDIM inversion", 0.6, 2.0, 7))
    assert np.array_equal(
        one, np.array(edit(2.0, "b", "left half", "DDIM inversion", 0.6, 2.0, 7.0))
    )  # sliders send floats
    assert np.array_equal(np.array(edit(1, "a", "none", "none", 0.5, 1.0, 0)).shape, (80, 224, 3))
    for bad, message in [
        (dict(index=4), "garment index"),
        (dict(target_class="c"), "unknown class"),
        (dict(region="middle"), "unknown region"),
        (dict(redraw="blur"), "unknown redraw"),
        (dict(strength=1.5), "strength"),
    ]:
        kwargs = {"index": 0, "target_class": "a", **bad}
        with pytest.raises(ValueError, match=message):
            edit(**kwargs)


def test_canvas_demo_builds(unet, ddim, images):
    from genaibook.demo import demo_components

    demo = build_canvas_demo(unet, ddim, images, null_class=2, class_names=["a", "b"])
    labels = [label for _, label in demo_components(demo)]
    assert {"Garment index", "Target class", "Region to inpaint", "Redraw with", "Strength"} <= set(labels)


def test_midas_detector_loads_the_annotators_stand_in():
    pytest.importorskip("controlnet_aux")
    from controlnet_aux import MidasDetector

    from genaibook.offline import require

    require("lllyasviel/Annotators")
    midas = MidasDetector.from_pretrained("lllyasviel/Annotators")
    depth = midas(
        load_sample_image(SampleURL.WomanSpeaking, size=64, offline=True), detect_resolution=64, image_resolution=64
    )
    assert depth.size == (64, 64)
