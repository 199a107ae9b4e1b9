"genaibook.sampling: the same images as diffusers' DDPM/DDIM pipelines, our schedulers vs diffusers', guidance, callbacks, bad inputs."

import diffusers
import matplotlib.pyplot as plt
import pytest
import torch

from genaibook.core import plot_noise_and_denoise
from genaibook.sampling import generate_from_class, predict, sample
from genaibook.schedulers import DDIMFromScratch, DDPMFromScratch


def tiny_unet(channels=1, num_class_embeds=None, seed=0):
    "A small random UNet2DModel: 8×8 images, two resolutions. Random weights: for mechanics, not for pretty pictures."
    torch.manual_seed(seed)
    return diffusers.UNet2DModel(
        sample_size=8,
        in_channels=channels,
        out_channels=channels,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        layers_per_block=1,
        norm_num_groups=4,
        num_class_embeds=num_class_embeds,
    ).eval()


@pytest.fixture(scope="module")
def unet():
    return tiny_unet()


@pytest.fixture(scope="module")
def cond_unet():
    return tiny_unet(num_class_embeds=4)  # classes 0-2, and 3 for "no class"


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def run(model, scheduler, n=3, steps=8, seed=0, **kw):
    return sample(model, scheduler, n, num_inference_steps=steps, generator=gen(seed), progress=False, **kw)


def pipeline_images(pipe_cls, unet, scheduler, n=3, steps=8, seed=0, **kw):
    pipe = pipe_cls(unet=unet, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe(batch_size=n, num_inference_steps=steps, generator=gen(seed), output_type="pt", **kw).images


# ---------------------------------------------------------------- same images as diffusers' pipelines


@pytest.mark.parametrize("steps", [1, 8, 25])
def test_ddpm_pipeline_equivalence(unet, steps):
    "DDPMPipeline draws randn(shape, generator, dtype=unet.dtype), then one step noise per t > 0 from the same generator."
    ref = pipeline_images(diffusers.DDPMPipeline, unet, diffusers.DDPMScheduler(), steps=steps)
    ours = run(unet, diffusers.DDPMScheduler(), steps=steps)
    assert ref.shape == ours.shape == (3, 1, 8, 8)
    assert torch.allclose(ours * 0.5 + 0.5, ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize("eta", [0.0, 0.5])
@pytest.mark.parametrize(
    "kw", [dict(), dict(timestep_spacing="trailing"), dict(prediction_type="v_prediction", clip_sample=False)]
)
def test_ddim_pipeline_equivalence(unet, eta, kw):
    ref = pipeline_images(diffusers.DDIMPipeline, unet, diffusers.DDIMScheduler(**kw), eta=eta)
    ours = run(unet, diffusers.DDIMScheduler(**kw), step_kwargs={"eta": eta})
    assert torch.allclose(ours * 0.5 + 0.5, ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    "ours_cls, ref_cls, kw",
    [
        (DDPMFromScratch, diffusers.DDPMScheduler, {}),
        (DDPMFromScratch, diffusers.DDPMScheduler, {"prediction_type": "v_prediction"}),
        (DDIMFromScratch, diffusers.DDIMScheduler, {}),
        (DDIMFromScratch, diffusers.DDIMScheduler, {"beta_schedule": "squaredcos_cap_v2"}),
    ],
)
def test_our_schedulers_give_the_same_samples(unet, ours_cls, ref_cls, kw):
    a, b = run(unet, ours_cls(**kw), steps=12), run(unet, ref_cls(**kw), steps=12)
    assert torch.allclose(a, b, atol=1e-4, rtol=0)


def test_same_seed_same_images_and_default_steps(unet):
    s = DDIMFromScratch()
    assert run(unet, s, seed=3).equal(run(unet, s, seed=3)) and not run(unet, s, seed=3).equal(run(unet, s, seed=4))
    s.set_timesteps(5)
    a = sample(unet, s, 2, generator=gen(), progress=False)  # None: keep the scheduler's 5 steps
    assert s.num_inference_steps == 5 and a.equal(
        sample(unet, s, 2, num_inference_steps=5, generator=gen(), progress=False)
    )
    steps = []
    sample(
        unet,
        DDPMFromScratch(num_train_timesteps=20),
        1,
        progress=False,
        callback=lambda i, t, out: steps.append(int(t)),
    )
    assert steps == list(range(19, -1, -1))  # None on a fresh scheduler: every training step, like DDPMPipeline


# ---------------------------------------------------------------- other schedulers and models


def test_any_scheduler_with_the_interface(unet):
    "Euler rescales the input and the start noise; the result equals a hand-written loop."
    s = diffusers.EulerDiscreteScheduler()
    ours = run(unet, s, steps=6)
    s.set_timesteps(6)
    g = gen()
    x = torch.randn(3, 1, 8, 8, generator=g) * s.init_noise_sigma
    with torch.no_grad():
        for t in s.timesteps:
            x = s.step(unet(s.scale_model_input(x, t), t).sample, t, x, generator=g).prev_sample
    assert torch.allclose(ours, x.clip(-1, 1), atol=1e-5)
    out = run(unet, diffusers.PNDMScheduler(), steps=6)  # PNDM's step takes no generator
    assert out.shape == (3, 1, 8, 8) and out.abs().max() <= 1


class PlainNet(torch.nn.Module):
    "Any module: returns a tensor, takes class_labels, has no config."

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 1, 3, padding=1)
        self.emb = torch.nn.Embedding(4, 1)

    def forward(self, x, t, class_labels=None):
        assert t.shape == (len(x),)  # one timestep per image
        return self.conv(x) + (0 if class_labels is None else self.emb(class_labels).view(-1, 1, 1, 1))


def test_plain_module_and_tuple_outputs():
    net = PlainNet()
    out = sample(net, DDIMFromScratch(), (2, 1, 5, 7), num_inference_steps=3, class_labels=[0, 1], progress=False)
    assert out.shape == (2, 1, 5, 7)
    tuple_net = lambda x, t: (torch.zeros_like(x),)
    assert sample(tuple_net, DDIMFromScratch(), (1, 1, 4, 4), num_inference_steps=2, progress=False).shape == (
        1,
        1,
        4,
        4,
    )
    with pytest.raises(TypeError, match="expected a tensor or an object with .sample"):
        sample(lambda x, t: "nope", DDIMFromScratch(), (1, 1, 4, 4), num_inference_steps=2, progress=False)


def test_model_mode_is_restored_and_output_needs_no_grad(unet):
    unet.train()
    try:
        out = run(unet, DDIMFromScratch(), steps=2)
        assert unet.training and not out.requires_grad
    finally:
        unet.eval()


# ---------------------------------------------------------------- classifier-free guidance


def test_cfg_scale_one_is_the_conditional_model(cond_unet):
    labels = torch.tensor([0, 1, 2])
    plain = run(cond_unet, DDIMFromScratch(), class_labels=labels)
    assert run(cond_unet, DDIMFromScratch(), class_labels=labels, guidance_scale=1.0, uncond_label=3).equal(plain)
    # the batched guided pass at a scale a hair above 1 lands on the same images
    assert torch.allclose(
        run(cond_unet, DDIMFromScratch(), class_labels=labels, guidance_scale=1 + 1e-6, uncond_label=3),
        plain,
        atol=1e-4,
    )
    assert not torch.allclose(
        run(cond_unet, DDIMFromScratch(), class_labels=labels, guidance_scale=3, uncond_label=3), plain, atol=1e-2
    )


def test_cfg_equals_two_separate_calls(cond_unet):
    s, w, labels = DDIMFromScratch(), 4.0, torch.tensor([2, 0])
    ours = run(cond_unet, s, n=2, steps=5, class_labels=labels, guidance_scale=w, uncond_label=3)
    s.set_timesteps(5)
    x = torch.randn(2, 1, 8, 8, generator=gen())
    with torch.no_grad():
        for t in s.timesteps:
            cond = cond_unet(x, t, class_labels=labels).sample
            uncond = cond_unet(x, t, class_labels=torch.full_like(labels, 3)).sample
            x = s.step(uncond + w * (cond - uncond), t, x).prev_sample
    assert torch.allclose(ours, x.clip(-1, 1), atol=1e-4)


def test_single_label_is_broadcast(cond_unet):
    assert run(cond_unet, DDIMFromScratch(), class_labels=1).equal(
        run(cond_unet, DDIMFromScratch(), class_labels=[1, 1, 1])
    )


def test_generate_from_class(cond_unet):
    images = generate_from_class(
        cond_unet, DDIMFromScratch(), 2, n_samples=4, num_inference_steps=4, generator=gen(), progress=False
    )
    assert images.shape == (4, 1, 8, 8) and images.min() >= 0 and images.max() <= 1
    ref = run(cond_unet, DDIMFromScratch(), n=4, steps=4, class_labels=[2] * 4)
    assert torch.allclose(images, ref * 0.5 + 0.5)
    net_images = generate_from_class(
        PlainNet(), DDIMFromScratch(), 1, n_samples=2, image_shape=(1, 6, 6), num_inference_steps=2, progress=False
    )
    assert net_images.shape == (2, 1, 6, 6)


# ---------------------------------------------------------------- gradient guidance


def color_loss(images, target_color=(0.1, 0.5, 0.9)):
    target = torch.tensor(target_color)[None, :, None, None] * 2 - 1
    return (images - target).abs().mean()


def test_guidance_fn_moves_the_colour_toward_the_target():
    unet3 = tiny_unet(channels=3, seed=1)
    target = torch.tensor([0.1, 0.5, 0.9]) * 2 - 1
    dist = lambda x: (x.mean((0, 2, 3)) - target).abs().sum().item()
    plain = run(unet3, DDIMFromScratch(), n=4, steps=10)
    guided = run(unet3, DDIMFromScratch(), n=4, steps=10, guidance_fn=color_loss, guidance_strength=50.0)
    assert dist(guided) < 0.5 * dist(plain), (dist(plain), dist(guided))
    weak = run(unet3, DDIMFromScratch(), n=4, steps=10, guidance_fn=color_loss, guidance_strength=0.0)
    assert torch.allclose(weak, plain, atol=1e-6)  # zero strength changes nothing


def test_guidance_fn_gradient_direction():
    "One nudge is exactly -s·∇L(x̂0): for an ε-model, x̂0 = (x - b·ε)/a, so ∇_x L = ∇_x0 L / a."
    from genaibook.sampling import guide

    s, x, eps = DDIMFromScratch(), torch.randn(1, 3, 4, 4, generator=gen(5)), torch.randn(1, 3, 4, 4, generator=gen(6))
    loss = lambda x0: (x0**2).sum() / 2  # gradient x0
    a, b = s.alphas_cumprod[500].sqrt(), (1 - s.alphas_cumprod[500]).sqrt()
    assert torch.allclose(guide(x, eps, 500, s, loss, 0.1), x - 0.1 * ((x - b * eps) / a) / a, atol=1e-6)
    with pytest.raises(ValueError, match="alphas_cumprod"):
        guide(x, eps, 500, diffusers.EulerDiscreteScheduler(), loss, 0.1)


# ---------------------------------------------------------------- callback and progress


def test_callback_sees_every_step(unet):
    seen = []
    out = run(unet, DDIMFromScratch(), steps=5, callback=lambda i, t, step: seen.append((i, int(t), step)))
    assert [i for i, _, _ in seen] == list(range(5)) and [t for _, t, _ in seen] == [800, 600, 400, 200, 0]
    assert torch.allclose(seen[-1][2].prev_sample.clip(-1, 1), out)
    fig, axs = plot_noise_and_denoise(seen[2][2], 2)  # the book's Lst 4.2 helper, called from a callback
    assert len(axs) == 2
    plt.close(fig)


def test_progress_bar(unet, capsys):
    run(unet, DDIMFromScratch(), steps=3, n=1)
    assert capsys.readouterr().err == ""  # progress=False: silent
    sample(unet, DDIMFromScratch(), 1, num_inference_steps=3, progress=True)
    assert "0/3 [" in capsys.readouterr().err  # a bar over the 3 steps, erased at the end (leave=False)


# ---------------------------------------------------------------- bad inputs


def test_bad_inputs(unet, cond_unet):
    with pytest.raises(ValueError, match=r"class_labels has shape \(2,\) but there are 3 images"):
        run(cond_unet, DDIMFromScratch(), class_labels=[0, 1])
    with pytest.raises(ValueError, match="needs uncond_label"):
        run(cond_unet, DDIMFromScratch(), class_labels=[0, 1, 2], guidance_scale=3.0)
    with pytest.raises(ValueError, match="guidance_scale != 1 needs class_labels"):
        run(unet, DDIMFromScratch(), guidance_scale=3.0, uncond_label=3)
    with pytest.raises(ValueError, match="pass a full shape"):
        sample(PlainNet(), DDIMFromScratch(), 4, progress=False)
    with pytest.raises(ValueError, match="num_inference_steps must be an integer from 1 to 1000"):
        run(unet, DDIMFromScratch(), steps=2000)
    with pytest.raises(ValueError, match="alphas_cumprod"):
        run(unet, diffusers.EulerDiscreteScheduler(), guidance_fn=color_loss, guidance_strength=1.0)


def test_predict_cfg_arithmetic(cond_unet):
    x, labels = torch.randn(2, 1, 8, 8, generator=gen(7)), torch.tensor([0, 2])
    with torch.no_grad():
        cond = cond_unet(x, 500, class_labels=labels).sample
        uncond = cond_unet(x, 500, class_labels=torch.tensor([3, 3])).sample
        assert torch.allclose(predict(cond_unet, x, torch.tensor(500), labels, 0.0, 3), uncond, atol=1e-5)
        assert torch.allclose(
            predict(cond_unet, x, torch.tensor(500), labels, 2.5, 3), uncond + 2.5 * (cond - uncond), atol=1e-5
        )
