"genaibook.schedulers against diffusers' DDPMScheduler and DDIMScheduler, to float32 precision; the forward-process maths; bad inputs."

import diffusers
import matplotlib.pyplot as plt
import pytest
import torch

from genaibook.core import plot_noise_and_denoise, plot_scheduler
from genaibook.schedulers import (
    BETA_SCHEDULES,
    PREDICTION_TYPES,
    TIMESTEP_SPACINGS,
    DDIMFromScratch,
    DDPMFromScratch,
    OracleDenoiser,
    SchedulerOutput,
    SimpleScheduler,
    corrupt,
    cosine_betas,
    make_betas,
    noise_step_by_step,
    pred_x0_and_eps,
    randn,
)

ATOL = 1e-5  # float32: values of order 1 after a few multiplications

SETTINGS = [
    dict(),
    dict(beta_start=0.001, beta_end=0.02),
    dict(beta_start=0.00085, beta_end=0.012, num_train_timesteps=50),
    dict(beta_end=0.05, num_train_timesteps=1),
]


def close(a, b, atol=ATOL):
    return torch.allclose(torch.as_tensor(a).double(), torch.as_tensor(b).double(), atol=atol, rtol=0)


def pair(cls_ours, cls_ref, **kw):
    return cls_ours(**kw), cls_ref(**kw)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------- schedules


@pytest.mark.parametrize("schedule", BETA_SCHEDULES)
@pytest.mark.parametrize("kw", SETTINGS, ids=range(len(SETTINGS)))
def test_ddpm_alphas_cumprod_match(schedule, kw):
    ours, ref = pair(DDPMFromScratch, diffusers.DDPMScheduler, beta_schedule=schedule, **kw)
    assert ours.betas.dtype == torch.float32 and ours.betas.shape == ref.betas.shape
    assert close(ours.betas, ref.betas, 1e-7) and close(ours.alphas_cumprod, ref.alphas_cumprod, 1e-6)


@pytest.mark.parametrize("schedule", ["linear", "scaled_linear", "squaredcos_cap_v2"])  # diffusers' DDIM has no sigmoid
@pytest.mark.parametrize("kw", SETTINGS, ids=range(len(SETTINGS)))
def test_ddim_alphas_cumprod_match(schedule, kw):
    ours, ref = pair(DDIMFromScratch, diffusers.DDIMScheduler, beta_schedule=schedule, **kw)
    assert close(ours.alphas_cumprod, ref.alphas_cumprod, 1e-6)
    assert close(ours.final_alpha_cumprod, ref.final_alpha_cumprod, 0)


def test_cosine_schedule_properties():
    betas = cosine_betas(1000)
    assert betas.max() <= 0.999 and betas[-1] == pytest.approx(0.999)  # capped at the end
    abar = torch.cumprod(1 - betas.double(), 0)
    t = torch.arange(1, 1001, dtype=torch.float64) / 1000
    f = torch.cos((t + 0.008) / 1.008 * torch.pi / 2) ** 2 / torch.cos(torch.tensor(0.008 / 1.008 * torch.pi / 2)) ** 2
    assert close(abar[:-10], f[:-10], 1e-5)  # ᾱ_t follows the cos² law until the cap kicks in
    assert make_betas("cosine").equal(make_betas("squaredcos_cap_v2"))


def test_default_timesteps_and_config():
    for ours, ref in [pair(DDPMFromScratch, diffusers.DDPMScheduler), pair(DDIMFromScratch, diffusers.DDIMScheduler)]:
        assert ours.timesteps.equal(ref.timesteps) and len(ours) == len(ref) == 1000
        assert ours.init_noise_sigma == ref.init_noise_sigma == 1.0 and ours.order == 1
        for key in (
            "num_train_timesteps",
            "beta_start",
            "beta_end",
            "beta_schedule",
            "prediction_type",
            "clip_sample",
            "clip_sample_range",
            "timestep_spacing",
            "steps_offset",
        ):
            assert getattr(ours.config, key) == getattr(ref.config, key), key
    assert DDPMFromScratch().config.variance_type == "fixed_small" and DDIMFromScratch().config.set_alpha_to_one is True
    assert "DDIMFromScratch(num_train_timesteps=1000" in repr(DDIMFromScratch())


# ---------------------------------------------------------------- timesteps


@pytest.mark.parametrize("spacing", TIMESTEP_SPACINGS)
@pytest.mark.parametrize("n", [1, 3, 7, 10, 50, 333, 999, 1000])
@pytest.mark.parametrize("offset", [0, 1])
def test_set_timesteps_match(spacing, n, offset):
    for cls, ref_cls in [(DDPMFromScratch, diffusers.DDPMScheduler), (DDIMFromScratch, diffusers.DDIMScheduler)]:
        ours, ref = pair(cls, ref_cls, timestep_spacing=spacing, steps_offset=offset)
        ours.set_timesteps(n)
        ref.set_timesteps(n)
        assert ours.timesteps.dtype == torch.int64 and ours.timesteps.equal(ref.timesteps), (
            cls.__name__,
            ours.timesteps[:5],
            ref.timesteps[:5],
        )
        assert ours.num_inference_steps == n


def test_set_timesteps_small_T_and_device():
    ours, ref = pair(DDPMFromScratch, diffusers.DDPMScheduler, num_train_timesteps=50, timestep_spacing="trailing")
    ours.set_timesteps(7, device="cpu")
    ref.set_timesteps(7)
    assert ours.timesteps.equal(ref.timesteps) and ours.timesteps.device.type == "cpu"


# ---------------------------------------------------------------- forward process


@pytest.mark.parametrize("schedule", BETA_SCHEDULES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_add_noise_and_velocity_match(schedule, dtype):
    ours, ref = pair(DDPMFromScratch, diffusers.DDPMScheduler, beta_schedule=schedule)
    x0, noise = (
        torch.randn(5, 3, 8, 8, generator=gen(1), dtype=dtype),
        torch.randn(5, 3, 8, 8, generator=gen(2), dtype=dtype),
    )
    for t in (torch.tensor([0, 10, 500, 998, 999]), torch.tensor(300), torch.tensor([7])):
        a = ours.add_noise(x0, noise, t)
        assert a.dtype == dtype and close(a, ref.add_noise(x0, noise, t))
        assert close(ours.get_velocity(x0, noise, t), ref.get_velocity(x0, noise, t))
    assert close(ours.add_noise(x0, noise, 300), ref.add_noise(x0, noise, torch.tensor(300)))  # a plain int works too


def test_add_noise_closed_form_and_velocity_sign():
    s = DDPMFromScratch(beta_schedule="squaredcos_cap_v2")
    x0, eps, t = (
        torch.randn(4, 1, 6, 6, generator=gen(3)),
        torch.randn(4, 1, 6, 6, generator=gen(4)),
        torch.tensor([0, 1, 400, 999]),
    )
    abar = s.alphas_cumprod[t].view(-1, 1, 1, 1)
    assert close(s.add_noise(x0, eps, t), abar.sqrt() * x0 + (1 - abar).sqrt() * eps)
    v = s.get_velocity(x0, eps, t)
    assert close(v, abar.sqrt() * eps - (1 - abar).sqrt() * x0)  # the minus sign (the book prints a plus)
    xt = s.add_noise(x0, eps, t)
    assert close(abar.sqrt() * xt - (1 - abar).sqrt() * v, x0, 1e-5)  # v gives x0 back


def test_challenge_1_one_step_process_matches_closed_form():
    "x_t = √(1-β_t)x_{t-1} + √β_t ε iterated has the law of √ᾱ_t x0 + √(1-ᾱ_t) ε: compare means and variances."
    betas = make_betas("linear")
    abar = torch.cumprod(1 - betas.double(), 0)
    x0 = torch.tensor([-1.0, -0.2, 0.4, 1.0], dtype=torch.float64).expand(40_000, 4)
    g = gen(0)
    for t in (1, 50, 250, 1000):
        xt = noise_step_by_step(x0, betas, t, generator=g)
        closed = abar[t - 1].sqrt() * x0 + (1 - abar[t - 1]).sqrt() * torch.randn(
            x0.shape, generator=g, dtype=torch.float64
        )
        se = (1 / 40_000) ** 0.5  # standard error of a mean of unit-variance samples
        assert (xt.mean(0) - abar[t - 1].sqrt() * x0[0]).abs().max() < 5 * se
        assert (xt.var(0) - (1 - abar[t - 1])).abs().max() < 5 * se * 2**0.5
        assert (xt.mean(0) - closed.mean(0)).abs().max() < 7 * se and (xt.var(0) - closed.var(0)).abs().max() < 10 * se
    assert noise_step_by_step(x0, betas, 0).equal(x0)


def test_corrupt_and_simple_scheduler():
    x, noise = torch.rand(8, 1, 4, 4, generator=gen(5)), torch.randn(8, 1, 4, 4, generator=gen(6))
    amount = torch.linspace(0, 1, 8)
    out = corrupt(x, noise, amount)
    assert (
        out[0].equal(x[0])
        and close(out[-1], noise[-1], 1e-6)
        and close(out, torch.lerp(x, noise, amount.view(-1, 1, 1, 1)), 1e-6)
    )
    s = SimpleScheduler()
    assert s.config.num_train_timesteps == 1000
    t = torch.linspace(0, 999, 8).long()
    assert close(s.add_noise(x, noise, t), corrupt(x, noise, t / 1000), 1e-6)
    ax = plot_scheduler(s)  # no alphas_cumprod: the straight lines
    assert len(ax.lines) == 2 and ax.lines[0].get_ydata()[0] == 1 and ax.lines[0].get_ydata()[-1] == 0
    ax = plot_scheduler(DDPMFromScratch(beta_schedule="squaredcos_cap_v2"), plot_both=False)
    assert close(
        torch.tensor(ax.lines[0].get_ydata()),
        DDPMFromScratch(beta_schedule="squaredcos_cap_v2").alphas_cumprod.sqrt(),
        1e-6,
    )


# ---------------------------------------------------------------- predictions


def test_pred_x0_and_eps_round_trip():
    x0, eps, abar = (
        torch.randn(3, 2, 4, 4, generator=gen(7)),
        torch.randn(3, 2, 4, 4, generator=gen(8)),
        torch.tensor(0.37),
    )
    xt = abar.sqrt() * x0 + (1 - abar).sqrt() * eps
    v = abar.sqrt() * eps - (1 - abar).sqrt() * x0
    for ptype, out in zip(PREDICTION_TYPES, (eps, x0, v)):
        a, b = pred_x0_and_eps(out, xt, abar, ptype)
        assert close(a, x0) and close(b, eps)
    with pytest.raises(
        ValueError, match="prediction_type must be one of 'epsilon', 'sample', 'v_prediction', got 'noise'"
    ):
        pred_x0_and_eps(eps, xt, abar, "noise")


# ---------------------------------------------------------------- DDPM step


@pytest.mark.parametrize("ptype", PREDICTION_TYPES)
@pytest.mark.parametrize("variance_type", ["fixed_small", "fixed_large"])
@pytest.mark.parametrize("n", [None, 1000, 25, 3])
def test_ddpm_step_matches(ptype, variance_type, n):
    ours, ref = pair(DDPMFromScratch, diffusers.DDPMScheduler, prediction_type=ptype, variance_type=variance_type)
    if n:
        ours.set_timesteps(n)
        ref.set_timesteps(n)
    sample, out = torch.randn(2, 3, 8, 8, generator=gen(9)) * 1.5, torch.randn(2, 3, 8, 8, generator=gen(10))
    for t in ours.timesteps[[0, len(ours.timesteps) // 2, -1]]:
        a = ours.step(out, t, sample, generator=gen(11))
        b = ref.step(out, t, sample, generator=gen(11))
        assert close(a.prev_sample, b.prev_sample) and close(a.pred_original_sample, b.pred_original_sample), int(t)
        assert ours.step(out, int(t), sample, generator=gen(11)).prev_sample.equal(a.prev_sample)  # int timestep


@pytest.mark.parametrize(
    "kw", [dict(clip_sample=False), dict(clip_sample_range=0.5), dict(beta_schedule="scaled_linear", beta_end=0.012)]
)
def test_ddpm_step_options_match(kw):
    ours, ref = pair(DDPMFromScratch, diffusers.DDPMScheduler, **kw)
    ours.set_timesteps(10)
    ref.set_timesteps(10)
    sample, out = torch.randn(2, 1, 8, 8, generator=gen(12)) * 3, torch.randn(2, 1, 8, 8, generator=gen(13))
    for t in ours.timesteps:
        a, b = ours.step(out, t, sample, generator=gen(14)), ref.step(out, t, sample, generator=gen(14))
        assert close(a.prev_sample, b.prev_sample) and close(a.pred_original_sample, b.pred_original_sample)


def fake_model(x, t):
    "A deterministic stand-in for a network: any smooth function of (x, t) will do."
    return torch.sin(x * 1.3 + float(t) / 300) * 0.8


@pytest.mark.parametrize(
    "cls, ref_cls, kw",
    [
        (DDPMFromScratch, diffusers.DDPMScheduler, {}),
        (DDIMFromScratch, diffusers.DDIMScheduler, {}),
        (DDIMFromScratch, diffusers.DDIMScheduler, {"eta": 0.6}),
    ],
    ids=["ddpm", "ddim", "ddim-eta"],
)
def test_whole_loop_matches(cls, ref_cls, kw):
    "20 steps with the same noise: the trajectories stay together."
    results = []
    for scheduler in (cls(), ref_cls()):
        scheduler.set_timesteps(20)
        g = gen(15)
        x = torch.randn(2, 3, 8, 8, generator=g)
        for t in scheduler.timesteps:
            x = scheduler.step(fake_model(x, t), t, x, generator=g, **kw).prev_sample
        results.append(x)
    assert close(*results, 1e-4)


def test_ddpm_output_interface():
    s = DDPMFromScratch()
    out = s.step(torch.zeros(1, 1, 4, 4), 10, torch.ones(1, 1, 4, 4), generator=gen())
    assert isinstance(out, SchedulerOutput) and out.prev_sample.shape == out.pred_original_sample.shape == (1, 1, 4, 4)
    prev, x0 = s.step(torch.zeros(1, 1, 4, 4), 10, torch.ones(1, 1, 4, 4), generator=gen(), return_dict=False)
    assert prev.equal(out.prev_sample) and x0.equal(out.pred_original_sample)
    assert s.scale_model_input(out.prev_sample, 10) is out.prev_sample
    fig, axs = plot_noise_and_denoise(out, 3)
    assert axs[1].get_title() == "Predicted denoised images (step 3)"
    plt.close(fig)


def test_ddpm_last_step_adds_no_noise():
    s = DDPMFromScratch(clip_sample=False)
    out, sample = torch.randn(1, 1, 4, 4, generator=gen(16)), torch.randn(1, 1, 4, 4, generator=gen(17))
    a, b = s.step(out, 0, sample, generator=gen(1)), s.step(out, 0, sample, generator=gen(2))
    assert a.prev_sample.equal(b.prev_sample) and close(a.prev_sample, a.pred_original_sample, 1e-6)


# ---------------------------------------------------------------- DDIM step


@pytest.mark.parametrize("ptype", PREDICTION_TYPES)
@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
@pytest.mark.parametrize(
    "spacing, n, set_alpha_to_one",
    [
        ("leading", 20, True),
        ("leading", 20, False),
        ("trailing", 7, True),
        ("linspace", 13, False),
        ("leading", 1000, True),
    ],
)
def test_ddim_step_matches(ptype, eta, spacing, n, set_alpha_to_one):
    kw = dict(prediction_type=ptype, timestep_spacing=spacing, set_alpha_to_one=set_alpha_to_one)
    ours, ref = pair(DDIMFromScratch, diffusers.DDIMScheduler, **kw)
    ours.set_timesteps(n)
    ref.set_timesteps(n)
    sample, out = torch.randn(2, 3, 8, 8, generator=gen(18)), torch.randn(2, 3, 8, 8, generator=gen(19))
    for t in ours.timesteps[[0, len(ours.timesteps) // 2, -1]]:
        a = ours.step(out, t, sample, eta=eta, generator=gen(20))
        b = ref.step(out, t, sample, eta=eta, generator=gen(20))
        assert close(a.prev_sample, b.prev_sample) and close(a.pred_original_sample, b.pred_original_sample), int(t)


def test_ddim_eta_zero_is_deterministic_and_eta_one_is_ddpm():
    ddim, ddpm = DDIMFromScratch(clip_sample=False), DDPMFromScratch(clip_sample=False)
    ddim.set_timesteps(10)
    ddpm.set_timesteps(10)
    sample, out = torch.randn(2, 1, 8, 8, generator=gen(21)), torch.randn(2, 1, 8, 8, generator=gen(22))
    for t in ddim.timesteps:
        assert ddim.step(out, t, sample, generator=gen(1)).prev_sample.equal(
            ddim.step(out, t, sample, generator=gen(2)).prev_sample
        )
        a = ddim.step(out, t, sample, eta=1.0, generator=gen(3)).prev_sample
        b = ddpm.step(out, t, sample, generator=gen(3)).prev_sample
        assert close(a, b, 1e-4), int(t)


# ---------------------------------------------------------------- oracle and noise


def test_oracle_denoiser_is_exact_near_the_data():
    s = DDIMFromScratch(prediction_type="v_prediction")
    data = torch.stack([torch.full((1, 4, 4), -1.0), torch.full((1, 4, 4), 1.0)])
    oracle = OracleDenoiser(data, s, labels=[0, 1], uncond_label=2)
    eps = torch.randn(2, 1, 4, 4, generator=gen(23))
    t = torch.tensor([5, 5])
    xt = s.add_noise(data, eps, t)
    assert close(oracle(xt, t), s.get_velocity(data, eps, t), 1e-3)  # so little noise that the source is certain
    # a class label restricts the answer to that class, even from the other class's image
    x0_hat = pred_x0_and_eps(oracle(xt, t, class_labels=torch.tensor([1, 1])), xt, s.alphas_cumprod[5], "v_prediction")[
        0
    ]
    assert close(x0_hat, data[[1, 1]], 1e-4)
    assert close(oracle(xt, t, class_labels=torch.tensor([2, 2])), oracle(xt, t), 1e-6)  # uncond label = no label
    with pytest.raises(ValueError, match="no labels"):
        OracleDenoiser(data, s)(xt, t, class_labels=[0, 0])


def test_randn_matches_torch_and_diffusers():
    from diffusers.utils.torch_utils import randn_tensor

    assert randn((2, 3), gen(24)).equal(torch.randn((2, 3), generator=gen(24)))
    assert randn((2, 3), gen(24), dtype=torch.float64).equal(
        randn_tensor((2, 3), generator=gen(24), dtype=torch.float64)
    )


# ---------------------------------------------------------------- bad inputs


@pytest.mark.parametrize("cls", [DDPMFromScratch, DDIMFromScratch])
@pytest.mark.parametrize(
    "kw, exc, message",
    [
        (dict(beta_schedule="cosin"), ValueError, "beta_schedule must be one of 'linear'.*, got 'cosin'"),
        (
            dict(prediction_type="noise"),
            ValueError,
            "prediction_type must be one of 'epsilon', 'sample', 'v_prediction', got 'noise'",
        ),
        (dict(timestep_spacing="uniform"), ValueError, "timestep_spacing must be one of .*, got 'uniform'"),
        (dict(num_train_timesteps=0), ValueError, "num_train_timesteps must be a positive integer"),
        (dict(betas=[0.1]), TypeError, "unexpected keyword argument 'betas'"),
    ],
)
def test_bad_constructor_arguments(cls, kw, exc, message):
    with pytest.raises(exc, match=message):
        cls(**kw)


def test_bad_variance_type():
    with pytest.raises(ValueError, match="variance_type must be one of .*, got 'learned'"):
        DDPMFromScratch(variance_type="learned")


@pytest.mark.parametrize("cls", [DDPMFromScratch, DDIMFromScratch])
@pytest.mark.parametrize("n", [1001, 0, -3, 2.5, True])
def test_bad_num_inference_steps(cls, n):
    with pytest.raises(ValueError, match="num_inference_steps must be an integer from 1 to 1000"):
        cls().set_timesteps(n)


def test_bad_timesteps():
    s, x = DDPMFromScratch(), torch.zeros(2, 1, 4, 4)
    with pytest.raises(TypeError, match="timesteps must be integers"):
        s.add_noise(x, x, torch.linspace(0, 999, 2))
    with pytest.raises(IndexError, match=r"timesteps must lie in \[0, 999\], got \[10, 1000\]"):
        s.add_noise(x, x, torch.tensor([10, 1000]))
    with pytest.raises(IndexError, match="timesteps must lie"):
        s.get_velocity(x, x, torch.tensor([-1, 3]))
    s.set_timesteps(10)
    with pytest.raises(ValueError, match="timestep 501 is not in scheduler.timesteps"):
        s.step(x, 501, x)
    with pytest.raises(RuntimeError, match="Call set_timesteps"):
        DDIMFromScratch().step(x, 999, x)
