"genaibook.stable_diffusion: the hand-written loop gives the pipeline's images; the book's shapes and ids; color_loss; bad inputs."

import warnings

import numpy as np
import pytest
from conftest import modules_loaded_by
import torch

from genaibook.stable_diffusion import (
    apply_cfg,
    check_safety,
    color_loss,
    decode_latents,
    embed_text,
    encode_prompt,
    generate_images,
    make_color_loss,
    make_generator,
    prepare_latents,
    sd_components,
    to_output,
    vae_scale_factor,
)

SMALL = dict(height=64, width=64, num_inference_steps=3)


@pytest.fixture(scope="module")
def pipe(offline_home):
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()
    p = StableDiffusionPipeline.from_pretrained("stable-diffusion-v1-5/stable-diffusion-v1-5")
    p.set_progress_bar_config(disable=True)
    return p


@pytest.fixture
def scheduler_swap(pipe):
    "Put another scheduler (built from the pipeline's config) into the pipeline for one test."
    original = pipe.scheduler

    def swap(name):
        import diffusers

        cls = {
            "pndm": "PNDMScheduler",
            "ddim": "DDIMScheduler",
            "euler": "EulerDiscreteScheduler",
            "euler_a": "EulerAncestralDiscreteScheduler",
            "dpm": "DPMSolverMultistepScheduler",
        }[name]
        pipe.scheduler = getattr(diffusers, cls).from_config(original.config)
        return pipe.scheduler

    yield swap
    pipe.scheduler = original


def pipeline_images(pipe, seed, **kwargs):
    return pipe(generator=torch.Generator().manual_seed(seed), **kwargs).images


# ---- ours == pipeline ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "scheduler, guidance, negative, eta",
    [
        ("pndm", 7.5, None, 0.0),
        ("pndm", 7.5, "blurry, low quality", 0.0),
        ("pndm", 1.0, None, 0.0),
        ("pndm", 0.5, None, 0.0),
        ("ddim", 7.5, None, 0.0),
        ("ddim", 4.0, "blurry", 0.7),
        ("euler", 7.5, "blurry", 0.0),
        ("euler", 1.0, None, 0.0),
        ("euler_a", 6.0, None, 0.0),
        ("dpm", 7.5, None, 0.0),
    ],
)
def test_generate_equals_pipeline(pipe, scheduler_swap, scheduler, guidance, negative, eta):
    scheduler_swap(scheduler)
    kwargs = dict(
        prompt="An oil painting of a collie in a top hat", negative_prompt=negative, guidance_scale=guidance, **SMALL
    )
    ours = generate_images(pipe, **kwargs, eta=eta, seed=7, output_type="np")
    theirs = pipeline_images(pipe, 7, **kwargs, eta=eta, output_type="np")
    assert ours.shape == theirs.shape == (1, 64, 64, 3)
    assert np.abs(ours - theirs).max() == 0.0


def test_batch_of_prompts_with_negatives_equals_pipeline(pipe):
    kwargs = dict(prompt=["a red car", "a blue boat"], negative_prompt=["rain", "fog"], guidance_scale=7.5, **SMALL)
    ours = generate_images(pipe, **kwargs, seed=3, output_type="pt")
    theirs = pipeline_images(pipe, 3, **kwargs, output_type="pt")
    assert ours.shape == (2, 3, 64, 64)
    assert torch.equal(ours, theirs)
    assert not torch.equal(ours[0], ours[1])


def test_pil_output_and_default_size(pipe):
    ours = generate_images(pipe, "a flower", seed=0, num_inference_steps=2)
    theirs = pipeline_images(pipe, 0, prompt="a flower", num_inference_steps=2)
    assert len(ours) == 1 and ours[0].size == (512, 512) and ours[0].mode == "RGB"
    assert np.array_equal(np.array(ours[0]), np.array(theirs[0]))


def test_seed_generator_and_global_rng(pipe):
    a = generate_images(pipe, "a cat", seed=5, output_type="pt", **SMALL)
    b = generate_images(pipe, "a cat", generator=torch.Generator().manual_seed(5), output_type="pt", **SMALL)
    c = generate_images(pipe, "a cat", seed=6, output_type="pt", **SMALL)
    assert torch.equal(a, b) and not torch.equal(a, c)
    torch.manual_seed(11)
    d = generate_images(pipe, "a cat", output_type="pt", **SMALL)
    torch.manual_seed(11)
    e = pipe("a cat", output_type="pt", **SMALL).images
    assert torch.equal(d, e)  # without a generator both use torch's global random state, in the same order


def test_components_dict_and_scheduler_argument(pipe, scheduler_swap):
    parts = {k: v for k, v in pipe.components.items() if k not in ("safety_checker", "feature_extractor")}
    ours = generate_images(parts, "a house", seed=2, output_type="pt", **SMALL)
    assert torch.equal(
        ours, generate_images(pipe, "a house", seed=2, output_type="pt", **SMALL)
    )  # the twin's checker flags nothing
    from diffusers import DDIMScheduler

    ddim = DDIMScheduler.from_config(pipe.scheduler.config)
    with_arg = generate_images(pipe, "a house", seed=2, output_type="pt", scheduler=ddim, **SMALL)
    scheduler_swap("ddim")
    assert torch.equal(with_arg, pipeline_images(pipe, 2, prompt="a house", output_type="pt", **SMALL))


def test_safety_checker_blacks_out_like_the_pipeline(pipe):
    checker = pipe.safety_checker
    saved = checker.concept_embeds_weights.clone()
    try:
        with torch.no_grad():
            checker.concept_embeds_weights.fill_(-2.0)  # below any cosine similarity: every image is flagged
        ours = generate_images(pipe, "a house", seed=1, output_type="np", **SMALL)
        theirs = pipeline_images(pipe, 1, prompt="a house", output_type="np", **SMALL)
        unchecked = generate_images(pipe, "a house", seed=1, output_type="np", safety_check=False, **SMALL)
    finally:
        with torch.no_grad():
            checker.concept_embeds_weights.copy_(saved)
    assert np.array_equal(ours, theirs) and ours.max() == 0.0
    assert unchecked.max() > 0


def test_check_safety_without_checker_or_extractor(pipe):
    images = torch.rand(1, 3, 64, 64)
    out, flags = check_safety(None, None, images)
    assert out is images and flags is None
    with pytest.raises(ValueError, match="needs its feature_extractor"):
        check_safety(pipe.safety_checker, None, images)


# ---- the book's facts ----------------------------------------------------------------------------------------------


def test_tokens_padding_and_shapes(pipe):
    assert pipe.tokenizer("A photograph of a puppy").input_ids == [49406, 320, 8853, 539, 320, 6829, 49407]
    assert pipe.tokenizer.model_max_length == 77
    assert pipe.vae.config.scaling_factor == 0.18215
    assert vae_scale_factor(pipe.vae) == 8 == pipe.vae_scale_factor
    hidden = pipe.text_encoder.config.hidden_size
    assert embed_text(pipe.tokenizer, pipe.text_encoder, ["A photograph of a puppy"]).shape == (1, 77, hidden)
    both = encode_prompt(pipe.tokenizer, pipe.text_encoder, "A photograph of a puppy")
    assert both.shape == (2, 77, hidden)
    assert torch.equal(both[:1], embed_text(pipe.tokenizer, pipe.text_encoder, [""]))  # unconditional first
    pipe.scheduler.set_timesteps(30)
    assert prepare_latents(pipe.unet, pipe.scheduler, seed=42).shape == (1, 4, 64, 64)


def test_long_prompt_is_cut_with_a_warning(pipe):
    with pytest.warns(UserWarning, match="longer than 77 tokens"):
        e = embed_text(pipe.tokenizer, pipe.text_encoder, ["a very long prompt " * 40])
    assert e.shape[1] == 77


def test_prepare_latents_scale_dtype_and_generator_device(pipe):
    from diffusers import EulerDiscreteScheduler

    euler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    euler.set_timesteps(10)
    base = torch.randn((1, 4, 8, 16), generator=torch.Generator().manual_seed(0))
    got = prepare_latents(pipe.unet, euler, height=64, width=128, seed=0)
    assert torch.allclose(got, base * euler.init_noise_sigma) and euler.init_noise_sigma > 1
    half = prepare_latents(pipe.unet, euler, height=64, width=64, seed=0, dtype=torch.float16)
    assert half.dtype == torch.float16


def test_denoise_and_decode_pieces(pipe):
    assert torch.equal(apply_cfg(torch.tensor([[1.0], [3.0]]), 7.5), torch.tensor([[16.0]]))
    latents = torch.zeros(1, 4, 8, 8)
    image = decode_latents(pipe.vae, latents)
    assert image.shape == (1, 3, 64, 64) and 0 <= image.min() and image.max() <= 1
    assert to_output(image, "np").shape == (1, 64, 64, 3) and to_output(image, "pil")[0].size == (64, 64)


# ---- color_loss -----------------------------------------------------------------------------------------------------


def test_color_loss_values():
    target = torch.tensor([-0.8, 0.0, 0.8])[None, :, None, None]
    assert color_loss(target.expand(4, 3, 5, 5)).item() == pytest.approx(0.0, abs=1e-6)
    assert color_loss(-torch.ones(1, 3, 8, 8)).item() == pytest.approx(1.0)
    assert color_loss(torch.ones(1, 3, 8, 8)).item() == pytest.approx((1.8 + 1.0 + 0.2) / 3)
    assert color_loss(torch.zeros(2, 3, 4, 4), (0.5, 0.5, 0.5)).item() == pytest.approx(0.0, abs=1e-6)
    half = torch.cat(
        [target.expand(1, 3, 4, 4), -torch.ones(1, 3, 4, 4)]
    )  # one perfect image, one black: the mean of 0 and 1
    assert color_loss(half).item() == pytest.approx(0.5)
    assert color_loss(torch.zeros(1, 1, 2, 2), (0.25,)).item() == pytest.approx(
        0.5
    )  # any channel count, one value each


def test_color_loss_gradient_points_to_the_target():
    x = torch.zeros(1, 3, 4, 4, requires_grad=True)
    color_loss(x).backward()
    step = -x.grad[0, :, 0, 0]  # the direction a sampler moves in
    assert step[0] < 0 and step[1] == 0 and step[2] > 0  # less red, green already on target, more blue
    assert color_loss(torch.zeros(1, 3, 2, 2, dtype=torch.float64)).dtype == torch.float64


def test_make_color_loss():
    red = make_color_loss((1.0, 0.0, 0.0))
    assert red(torch.zeros(1, 3, 2, 2)).item() == pytest.approx(1.0)
    assert red.__name__ == "color_loss_1_0_0"
    assert make_color_loss()(torch.zeros(1, 3, 2, 2)).item() == pytest.approx(1.6 / 3)


@pytest.mark.parametrize(
    "call, exc, message",
    [
        (lambda: color_loss(torch.zeros(3, 8, 8)), ValueError, r"images\[None\]"),
        (lambda: color_loss([[0.0]]), ValueError, "must be a \\[B, C, H, W\\] tensor"),
        (lambda: color_loss(torch.zeros(1, 4, 8, 8)), ValueError, "3 values but the images have 4 channels"),
        (lambda: color_loss(torch.zeros(1, 3, 8, 8), (0, 128, 255)), ValueError, r"values in \[0, 1\]"),
        (lambda: make_color_loss("blue"), TypeError, "sequence of numbers"),
        (lambda: make_color_loss(0.5), TypeError, "sequence of numbers"),
        (lambda: make_color_loss(()), ValueError, "values in"),
    ],
)
def test_color_loss_bad_inputs(call, exc, message):
    with pytest.raises(exc, match=message):
        call()


# ---- bad inputs -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, exc, message",
    [
        (dict(height=500), ValueError, "height must be a positive multiple of 8.*try 496 or 504"),
        (dict(width=0), ValueError, "width must be a positive multiple of 8"),
        (dict(height=512.0), ValueError, "height must be a positive multiple of 8"),
        (dict(prompt=[]), ValueError, "prompt is an empty list"),
        (dict(prompt=42), TypeError, "prompt must be a string or a list of strings"),
        (dict(prompt=["a", "b"], negative_prompt=["x"]), ValueError, "negative_prompt has 1 entries but prompt has 2"),
        (dict(negative_prompt=[]), ValueError, "negative_prompt is an empty list"),
        (dict(num_inference_steps=0), ValueError, "num_inference_steps must be a positive integer"),
        (dict(num_inference_steps=2.5), ValueError, "num_inference_steps"),
        (dict(guidance_scale="7.5"), TypeError, "guidance_scale must be a number"),
        (dict(seed=1, generator=torch.Generator()), ValueError, "seed or generator, not both"),
        (dict(seed=-1), ValueError, "seed must be a non-negative integer"),
        (dict(output_type="latent"), ValueError, "output_type must be 'pil', 'np' or 'pt'"),
    ],
)
def test_generate_bad_inputs(pipe, kwargs, exc, message):
    args = {**dict(prompt="a cat", height=64, width=64, num_inference_steps=1), **kwargs}
    with pytest.raises(exc, match=message):
        generate_images(pipe, **args)


def test_missing_components_and_lcm_unets(pipe):
    with pytest.raises(ValueError, match="has no text_encoder, vae"):
        sd_components({"tokenizer": 1, "unet": 1, "scheduler": 1})
    with pytest.raises(ValueError, match="has no tokenizer"):
        generate_images(object(), "a cat")
    from types import SimpleNamespace

    lcm = SimpleNamespace(
        **{**pipe.components, "unet": SimpleNamespace(config=SimpleNamespace(time_cond_proj_dim=256))}
    )
    with pytest.raises(ValueError, match="LCM"):
        generate_images(lcm, "a cat", **SMALL)


def test_negative_prompt_without_guidance_warns(pipe):
    with pytest.warns(UserWarning, match="negative_prompt has no effect"):
        generate_images(pipe, "a cat", negative_prompt="dog", guidance_scale=1.0, **SMALL)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        generate_images(
            pipe, "a cat", negative_prompt="", guidance_scale=1.0, **SMALL
        )  # the default unconditional input: no warning


def test_make_generator():
    assert make_generator() is None
    g = torch.Generator()
    assert make_generator(generator=g) is g
    assert torch.equal(
        torch.randn(3, generator=make_generator(np.int64(4))),
        torch.randn(3, generator=torch.Generator().manual_seed(4)),
    )
    with pytest.raises(ValueError, match="non-negative integer"):
        make_generator(True)


def test_import_is_light():
    heavy = modules_loaded_by(
        "import genaibook.stable_diffusion", ("diffusers", "transformers", "gradio", "matplotlib")
    )
    assert heavy == [], heavy
