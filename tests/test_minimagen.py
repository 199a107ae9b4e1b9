"genaibook.minimagen: the schedule against diffusers, thresholding, guidance, masks, the cascade's shapes, save/load and errors."

import pytest
import torch

from genaibook.minimagen import (
    GaussianDiffusion,
    Imagen,
    TextEncoder,
    Unet,
    caption_accuracy,
    check_captions,
    dynamic_threshold,
    judge_colour,
    judge_shape,
    load_imagen,
    make_shapes,
    resize_image_to,
    sample,
    save_imagen,
    threshold,
)


@pytest.fixture(scope="module")
def encoder():
    return TextEncoder()  # the real all-MiniLM-L6-v2, offline


@pytest.fixture
def cascade(encoder):
    torch.manual_seed(0)
    unets = [Unet(dim=8, text_embed_dim=encoder.dim), Unet(dim=8, text_embed_dim=encoder.dim, lowres_cond=True)]
    return Imagen(unets, image_sizes=(8, 16), text_encoder=encoder, timesteps=6)


# ---------------------------------------------------------------- the schedule


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
@pytest.mark.parametrize("timesteps", [25, 50, 1000])
def test_schedule_buffers_are_finite(schedule, timesteps):
    d = GaussianDiffusion(timesteps, schedule)
    for name, buffer in d.named_buffers():
        assert torch.isfinite(buffer).all(), name
    assert d.alphas_cumprod[-1] > 0 and (d.alphas_cumprod.diff() < 0).all()


@pytest.mark.parametrize("timesteps", [2, 3, 5, 10])
def test_small_cosine_schedules_give_no_nan(timesteps):
    d = GaussianDiffusion(timesteps)
    x0, noise = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    t = torch.tensor([0, timesteps - 1])
    x0_hat = d.predict_start_from_noise(d.q_sample(x0, t, noise), t, noise)
    assert torch.isfinite(x0_hat).all()
    mean, var, log_var = d.q_posterior(threshold(x0_hat), d.q_sample(x0, t, noise), t)
    assert torch.isfinite(mean).all() and torch.isfinite(log_var).all() and (var >= 0).all()


def test_minimagens_nan_schedule_is_refused_with_advice():
    with pytest.raises(ValueError, match="timesteps >= 25 with the linear schedule, or the cosine"):
        GaussianDiffusion(20, "linear")
    with pytest.raises(ValueError, match="at least 2"):
        GaussianDiffusion(1)
    with pytest.raises(ValueError, match="beta_schedule must be one of"):
        GaussianDiffusion(50, "sigmoid")


def test_linear_schedule_and_posterior_match_diffusers_ddpm():
    from diffusers import DDPMScheduler

    ours = GaussianDiffusion(1000, "linear")
    ref = DDPMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear")
    torch.testing.assert_close(ours.alphas_cumprod, ref.alphas_cumprod.float(), rtol=0, atol=1e-6)
    # one ancestral step from the same x_t and predicted noise: diffusers' step mean = our posterior mean
    x_t, eps = torch.randn(1, 1, 4, 4), torch.randn(1, 1, 4, 4)
    t = 500
    ref_mean = ref.step(eps, t, x_t, generator=torch.Generator().manual_seed(0)).prev_sample
    ref_noise = torch.randn(x_t.shape, generator=torch.Generator().manual_seed(0))
    ref_mean = ref_mean - ref._get_variance(t).sqrt() * ref_noise
    tt = torch.tensor([t])
    x0 = ours.predict_start_from_noise(x_t, tt, eps).clamp(-1, 1)  # DDPMScheduler clips x̂0 by default
    mean, _, _ = ours.q_posterior(x0, x_t, tt)
    torch.testing.assert_close(mean, ref_mean, rtol=1e-4, atol=1e-4)


def test_q_sample_has_the_closed_form_moments():
    d = GaussianDiffusion(50)
    t = torch.full((20000,), 30)
    x0 = torch.full((20000, 1, 1, 1), 0.7)
    xt = d.q_sample(x0, t, None).flatten()
    abar = d.alphas_cumprod[30]
    assert abs(xt.mean() - abar.sqrt() * 0.7) < 0.02 and abs(xt.var() - (1 - abar)) < 0.03


# ---------------------------------------------------------------- thresholding


def test_dynamic_thresholding_stays_in_range_and_leaves_in_range_images_alone():
    x = torch.randn(16, 3, 8, 8) * 4
    out = dynamic_threshold(x)
    assert out.abs().max() <= 1
    inside = torch.rand(4, 3, 8, 8) * 2 - 1
    torch.testing.assert_close(dynamic_threshold(inside), inside)
    torch.testing.assert_close(dynamic_threshold(x, 1.0), x / x.flatten(1).abs().amax(1).clamp(min=1).view(-1, 1, 1, 1))


def test_thresholding_choices_and_errors():
    x = torch.tensor([[2.0, -3.0, 0.5]])
    assert threshold(x, "static").tolist() == [[1.0, -1.0, 0.5]]
    assert threshold(x, "none") is x
    with pytest.raises(ValueError, match="thresholding must be one of"):
        threshold(x, "soft")
    with pytest.raises(ValueError, match="percentile must be in"):
        dynamic_threshold(x, 0.0)


# ---------------------------------------------------------------- text and the U-Net


def test_text_encoder_masks_padding_and_caches(encoder):
    embeds, mask = encoder(["a red circle", "a yellow triangle"])
    assert embeds.shape == (2, 16, 384) and mask.dtype == torch.bool
    assert (embeds[~mask] == 0).all()  # padding zeroed
    assert mask.sum(1).tolist() == [5, 5]
    assert set(encoder._cache) >= {"a red circle", "a yellow triangle"}


@pytest.mark.parametrize("bad", [[], None, [""], ["ok", "   "], [3]])
def test_bad_captions_get_a_clear_error(bad):
    with pytest.raises(ValueError, match="captions is empty|non-empty string"):
        check_captions(bad)


def test_guidance_scale_one_is_the_conditional_output_and_dropping_ignores_the_caption(encoder):
    torch.manual_seed(0)
    unet = Unet(dim=8, text_embed_dim=encoder.dim)
    x, t = torch.randn(2, 3, 8, 8), torch.tensor([3, 9])
    e, m = encoder(["a red circle", "a blue square"])
    cond = unet(x, t, text_embeds=e, text_mask=m)
    torch.testing.assert_close(unet.forward_with_cond_scale(x, t, cond_scale=1.0, text_embeds=e, text_mask=m), cond)
    null = unet(x, t, text_embeds=e, text_mask=m, cond_drop_prob=1.0)
    e2, m2 = encoder(["a green triangle", "a yellow circle"])
    torch.testing.assert_close(unet(x, t, text_embeds=e2, text_mask=m2, cond_drop_prob=1.0), null)
    assert not torch.allclose(cond, null)
    # cond_scale 0 is the unconditional prediction
    torch.testing.assert_close(
        unet.forward_with_cond_scale(x, t, cond_scale=0.0, text_embeds=e, text_mask=m), null, rtol=1e-5, atol=1e-5
    )


def test_output_does_not_depend_on_how_much_padding_the_encoder_added(encoder):
    torch.manual_seed(0)
    unet = Unet(dim=8, text_embed_dim=encoder.dim, max_text_len=16)
    x, t = torch.randn(1, 3, 8, 8), torch.tensor([4])
    e, m = encoder(["a red circle"])
    short = unet(x, t, text_embeds=e[:, :8], text_mask=m[:, :8])
    torch.testing.assert_close(unet(x, t, text_embeds=e, text_mask=m), short)


def test_unet_shapes_and_input_errors(encoder):
    e, m = encoder(["a red circle"] * 2)
    base = Unet(dim=8, dim_mults=(1, 2, 2), text_embed_dim=encoder.dim)
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([0, 5])
    assert base(x, t, text_embeds=e, text_mask=m).shape == x.shape
    sr = Unet(dim=8, text_embed_dim=encoder.dim, lowres_cond=True)
    assert sr.init_conv.in_channels == 6
    assert sr(x, t, text_embeds=e, text_mask=m, lowres_cond_img=x, lowres_noise_times=t).shape == x.shape
    with pytest.raises(ValueError, match="needs lowres_cond_img"):
        sr(x, t, text_embeds=e, text_mask=m)
    with pytest.raises(ValueError, match="upsampled to x's shape"):
        sr(x, t, text_embeds=e, text_mask=m, lowres_cond_img=x[..., :8, :8], lowres_noise_times=t)
    with pytest.raises(ValueError, match=r"x must be \[B, 3, H, W\]"):
        base(x[:, :1], t, text_embeds=e, text_mask=m)
    with pytest.raises(ValueError, match="pass text_embeds"):
        base(x, t, text_embeds=e, text_mask=None)


# ---------------------------------------------------------------- the cascade


def test_cascade_losses_and_samples(cascade):
    images = torch.rand(2, 3, 16, 16)
    for n in (1, 2):
        loss = cascade(
            resize_image_to(images, cascade.image_sizes[n - 1]), captions=["a red circle"] * 2, unet_number=n
        )
        assert loss.ndim == 0 and torch.isfinite(loss)
    stages = sample(cascade, ["a red circle", "a blue square"], cond_scale=5.0, return_all_stages=True)
    assert [s.shape for s in stages] == [(2, 3, 8, 8), (2, 3, 16, 16)]
    assert all(torch.isfinite(s).all() and s.min() >= 0 and s.max() <= 1 for s in stages)
    assert sample(cascade, ["a red circle"], stop_at_unet_number=1).shape == (1, 3, 8, 8)
    assert cascade.training  # sampling put it back in training mode


def test_lowres_condition_is_normalised_before_noising(cascade):
    "Regression for MinImagen's sampling bug: the low-res input is in [-1, 1] when it is noised, as in training."
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    zero = torch.zeros(2, dtype=torch.long)
    low = cascade.lowres_condition(images, 1, zero, noise=torch.zeros_like(images))
    expected = resize_image_to(resize_image_to(images, 8), 16) * cascade.lowres_noise_schedule.sqrt_alphas_cumprod[0]
    torch.testing.assert_close(low, expected, rtol=1e-3, atol=5e-3)


def test_cascade_errors(cascade, encoder):
    with pytest.raises(ValueError, match="U-Net 1 trains on 8×8 images"):
        cascade(torch.rand(2, 3, 16, 16), captions=["a"] * 2, unet_number=1)
    with pytest.raises(ValueError, match="unet_number must be 1..2"):
        cascade(torch.rand(2, 3, 8, 8), captions=["a"] * 2)
    with pytest.raises(ValueError, match="captions is empty"):
        sample(cascade, [])
    with pytest.raises(ValueError, match="image_sizes must increase"):
        Imagen([Unet(dim=8), Unet(dim=8, lowres_cond=True)], image_sizes=(16, 8))
    with pytest.raises(ValueError, match="one image size per U-Net"):
        Imagen([Unet(dim=8)], image_sizes=(8, 16))
    with pytest.raises(ValueError, match="lowres_cond=False"):
        Imagen([Unet(dim=8), Unet(dim=8)], image_sizes=(8, 16))
    no_text = Imagen([Unet(dim=8)], image_sizes=(8,))
    with pytest.raises(ValueError, match="no text_encoder"):
        sample(no_text, ["a red circle"])


def test_save_load_round_trip(cascade, encoder, tmp_path):
    path = tmp_path / "cascade.pt"
    save_imagen(cascade, path)
    again = load_imagen(path, text_encoder=encoder)
    assert not again.training and again.image_sizes == (8, 16)
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    torch.testing.assert_close(
        sample(again, ["a blue circle"], generator=g()), sample(cascade, ["a blue circle"], generator=g())
    )
    assert load_imagen(path).text_encoder.name == encoder.name  # the encoder named in the file


def test_t5_path_keeps_the_api():
    "The T5 encoder path (a twin offline: code path only) gives the same interface as MiniLM."
    t5 = TextEncoder("google-t5/t5-small")
    e, m = t5(["a red circle", "a big green square"])
    assert e.shape[:2] == m.shape and e.shape[-1] == t5.dim
    unet = Unet(dim=8, text_embed_dim=t5.dim)
    assert unet(torch.randn(2, 3, 8, 8), torch.tensor([1, 2]), text_embeds=e, text_mask=m).shape == (2, 3, 8, 8)


# ---------------------------------------------------------------- the data and its judges


def test_shapes_data_is_reproducible_and_the_judges_read_it():
    a, caps = make_shapes(120, size=32, seed=5)
    b, caps_b = make_shapes(120, size=32, seed=5)
    assert torch.equal(a, b) and caps == caps_b and a.min() >= 0 and a.max() <= 1
    acc = caption_accuracy(a, caps)
    assert acc["colour"] == 1.0 and acc["shape"] >= 0.95
    assert judge_colour(torch.full((1, 3, 8, 8), 0.5)) == ["none"] and judge_shape(torch.full((1, 3, 8, 8), 0.5)) == [
        "none"
    ]
    with pytest.raises(ValueError, match="n >= 1 and size >= 8"):
        make_shapes(0)


def test_v_objective_round_trip_and_cascade(encoder):
    d = GaussianDiffusion(50)
    x0, noise, t = torch.randn(3, 3, 4, 4), torch.randn(3, 3, 4, 4), torch.tensor([0, 25, 49])
    v = d.calculate_v(x0, t, noise)
    torch.testing.assert_close(d.predict_start_from_v(d.q_sample(x0, t, noise), t, v), x0, rtol=1e-4, atol=1e-4)
    torch.manual_seed(0)
    unets = [Unet(dim=8, text_embed_dim=encoder.dim), Unet(dim=8, text_embed_dim=encoder.dim, lowres_cond=True)]
    cascade = Imagen(unets, image_sizes=(8, 16), text_encoder=encoder, timesteps=6, pred_objectives=("noise", "v"))
    assert torch.isfinite(cascade(torch.rand(2, 3, 16, 16), captions=["a red circle"] * 2, unet_number=2))
    assert sample(cascade, ["a red circle"]).shape == (1, 3, 16, 16)
    with pytest.raises(ValueError, match="pred_objectives must be one of"):
        Imagen(unets, image_sizes=(8, 16), pred_objectives=("noise", "x0"))
