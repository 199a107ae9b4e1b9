"""genaibook.diffusion: objective maths against diffusers, DiffusionLoss (objectives, label dropout, weighting, errors),
exact checkpoint/resume through the Learner, and SampleGrid."""

import warnings

import pytest
from conftest import modules_loaded_by
import torch
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel
from torch import nn

from genaibook.diffusion import (
    OBJECTIVES,
    DiffusionLoss,
    SampleGrid,
    class_conditional,
    convert_prediction,
    diffusion_target,
    drop_labels,
    min_snr_weight,
    ObjectiveAdapter,
)
from genaibook import schedulers as gb_schedulers
from genaibook.schedulers import alpha_bar, pred_x0_and_eps, snr
from genaibook.sampling import sample
from genaibook.train import Learner, make_dataloader
from genaibook.unets import SmallUNet


def signal_noise(sched, t, like):
    abar = alpha_bar(sched, t, like)
    return abar.sqrt().to(like.dtype), (1 - abar).sqrt().to(like.dtype)


def pred_to_x0(sched, pred, x_t, t, objective):
    return pred_x0_and_eps(pred, x_t, alpha_bar(sched, t, x_t), objective)[0]


def pred_to_eps(sched, pred, x_t, t, objective):
    return pred_x0_and_eps(pred, x_t, alpha_bar(sched, t, x_t), objective)[1]


@pytest.fixture
def sched():
    return DDPMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, clip_sample=False)


@pytest.fixture
def noised(sched):
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(6, 1, 4, 4, generator=g), torch.randn(6, 1, 4, 4, generator=g)
    t = torch.tensor([0, 10, 250, 600, 900, 999])
    return x0, noise, t, sched.add_noise(x0, noise, t)


# --- objective maths ---


def test_velocity_matches_diffusers(sched, noised):
    x0, noise, t, _ = noised
    torch.testing.assert_close(diffusion_target(sched, x0, noise, t, "v_prediction"), sched.get_velocity(x0, noise, t))
    a, s = signal_noise(sched, t, x0)
    torch.testing.assert_close(
        diffusion_target(sched, x0, noise, t, "v_prediction"), a * noise - s * x0
    )  # minus sign (book bug 13)


@pytest.mark.parametrize("scheduler_cls", [DDPMScheduler, DDIMScheduler])
@pytest.mark.parametrize("objective", OBJECTIVES)
def test_x0_matches_scheduler_step(sched, noised, scheduler_cls, objective):
    x0, noise, t, x_t = noised
    s_obj = scheduler_cls.from_config(sched.config, prediction_type=objective)
    target = diffusion_target(sched, x0, noise, t, objective)
    if scheduler_cls is DDIMScheduler:
        s_obj.set_timesteps(1000)
    for i in range(len(t)):
        ref = s_obj.step(target[i : i + 1], t[i], x_t[i : i + 1]).pred_original_sample
        torch.testing.assert_close(
            pred_to_x0(sched, target[i : i + 1], x_t[i : i + 1], t[i], objective), ref, rtol=1e-4, atol=1e-4
        )


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_round_trips(sched, noised, objective):
    x0, noise, t, x_t = noised
    target = diffusion_target(sched, x0, noise, t, objective)
    keep = (
        t < 900 if objective == "epsilon" else t > 0 if objective == "sample" else torch.ones_like(t, dtype=torch.bool)
    )
    torch.testing.assert_close(pred_to_x0(sched, target, x_t, t, objective)[keep], x0[keep], atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(pred_to_eps(sched, target, x_t, t, objective)[keep], noise[keep], atol=1e-3, rtol=1e-3)
    for other in OBJECTIVES:
        got = convert_prediction(sched, target, x_t, t, objective, other)
        torch.testing.assert_close(got[keep], diffusion_target(sched, x0, noise, t, other)[keep], atol=2e-3, rtol=1e-3)


def test_objective_maths_in_float64_is_exact():
    sched = DDPMScheduler()
    sched.alphas_cumprod = sched.alphas_cumprod.double()
    g = torch.Generator().manual_seed(1)
    x0, noise, t = (
        torch.randn(4, 2, 3, 3, generator=g).double(),
        torch.randn(4, 2, 3, 3, generator=g).double(),
        torch.tensor([0, 1, 500, 999]),
    )
    a, s = signal_noise(sched, t, x0)
    x_t = a * x0 + s * noise
    for obj in OBJECTIVES:
        target = diffusion_target(sched, x0, noise, t, obj)
        torch.testing.assert_close(pred_to_x0(sched, target, x_t, t, obj), x0, atol=1e-9, rtol=1e-9)
        torch.testing.assert_close(pred_to_eps(sched, target, x_t, t, obj), noise, atol=1e-9, rtol=1e-9)


def test_objective_shapes_dtypes_and_errors(sched):
    x16 = torch.zeros(2, 1, 4, 4, dtype=torch.float16)
    assert diffusion_target(sched, x16, x16, torch.tensor([0, 999]), "v_prediction").dtype == torch.float16
    assert convert_prediction(sched, x16, x16, 5, "epsilon", "sample").shape == (2, 1, 4, 4)  # one timestep for all
    with pytest.raises(TypeError, match="DDPM-family"):
        diffusion_target(object(), x16, x16, 1, "v_prediction")
    with pytest.raises(ValueError, match="objective must be one of"):
        diffusion_target(sched, x16, x16, 1, "x0")
    with pytest.raises(ValueError, match="objective must be one of"):
        convert_prediction(sched, x16, x16, 1, "x0", "sample")


def test_min_snr_weights(sched):
    t = torch.tensor([0, 100, 999])
    r = snr(sched, t)
    torch.testing.assert_close(min_snr_weight(r, "epsilon"), r.clamp(max=5) / r)
    torch.testing.assert_close(min_snr_weight(r, "sample"), r.clamp(max=5))
    torch.testing.assert_close(min_snr_weight(r, "v_prediction"), r.clamp(max=5) / (r + 1))


# --- DiffusionLoss ---


class Recorder(nn.Module):
    "A stand-in model that records the labels it gets and predicts `scale * x`."

    def __init__(self, num_classes=10):
        super().__init__()
        self.num_classes, self.scale, self.seen = num_classes, nn.Parameter(torch.ones(())), []

    @property
    def null_class(self):
        return self.num_classes

    def forward(self, x, t, class_labels=None):
        self.seen.append(class_labels)
        return self.scale * x


def test_matches_the_book_loop(sched):
    model = SmallUNet(widths=(8, 16), attention=False)
    batch = {"images": torch.randn(4, 1, 8, 8), "labels": torch.arange(4)}
    torch.manual_seed(3)
    ours = DiffusionLoss(sched)(model, batch)
    torch.manual_seed(3)
    noise = torch.randn_like(batch["images"])
    t = torch.randint(0, 1000, (4,))
    book = nn.functional.mse_loss(model(sched.add_noise(batch["images"], noise, t), t), noise)
    torch.testing.assert_close(ours, book)


def test_class_dropout_fraction(sched):
    model = Recorder()
    labels = torch.randint(0, 10, (20_000,))
    torch.manual_seed(0)
    DiffusionLoss(sched, class_dropout=0.25)(model, {"images": torch.zeros(20_000, 1, 1, 1), "labels": labels})
    seen = model.seen[-1]
    dropped = seen == 10
    assert abs(dropped.float().mean().item() - 0.25) < 0.015
    assert torch.equal(seen[~dropped], labels[~dropped])  # the others are untouched
    DiffusionLoss(sched)(model, {"images": torch.zeros(8, 1, 1, 1), "labels": labels[:8]})
    assert torch.equal(model.seen[-1], labels[:8])  # no dropout by default
    torch.manual_seed(0)
    assert (drop_labels(labels, 0.5, null_class=99) == 99).float().mean().item() == pytest.approx(0.5, abs=0.02)


def test_explicit_null_class_and_diffusers_model(sched):
    model = UNet2DModel(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        block_out_channels=(8, 8),
        norm_num_groups=4,
        down_block_types=("DownBlock2D",) * 2,
        up_block_types=("UpBlock2D",) * 2,
        num_class_embeds=11,
    )
    batch = {"images": torch.randn(4, 1, 8, 8), "labels": torch.arange(4)}
    assert class_conditional(model) and torch.isfinite(
        DiffusionLoss(sched, class_dropout=0.5, null_class=10)(model, batch)
    )
    with pytest.raises(ValueError, match="needs the null class"):
        DiffusionLoss(sched, class_dropout=0.5)(model, batch)
    with pytest.raises(ValueError, match="not a class embedding"):
        DiffusionLoss(sched, class_dropout=0.5, null_class=11)(model, batch)
    rec = Recorder()
    torch.manual_seed(0)
    DiffusionLoss(sched, class_dropout=0.5, null_class=7)(
        rec, {"images": torch.zeros(1000, 1, 1, 1), "labels": torch.zeros(1000, dtype=torch.long)}
    )
    assert set(rec.seen[-1].unique().tolist()) == {0, 7}


def test_batch_forms_and_label_passing(sched):
    rec, images, labels = Recorder(), torch.randn(4, 1, 2, 2), torch.arange(4)
    DiffusionLoss(sched)(rec, (images, labels))
    assert torch.equal(rec.seen[-1], labels)
    DiffusionLoss(sched, label_key=None)(rec, {"images": images, "labels": labels})
    assert rec.seen[-1] is None
    DiffusionLoss(sched, image_key="pixel_values", label_key="y")(rec, {"pixel_values": images, "y": labels})
    assert torch.equal(rec.seen[-1], labels)
    uncond = Recorder(num_classes=None)
    DiffusionLoss(sched)(uncond, {"images": images, "labels": labels})
    assert uncond.seen[-1] is None  # not class-conditioned
    DiffusionLoss(sched)(uncond, images)
    assert uncond.seen[-1] is None


def test_errors(sched):
    rec = Recorder()
    with pytest.raises(ValueError, match="objective must be one of"):
        DiffusionLoss(sched, objective="noise")
    with pytest.raises(ValueError, match="class_dropout"):
        DiffusionLoss(sched, class_dropout=1.0)
    with pytest.raises(ValueError, match="loss_weighting"):
        DiffusionLoss(sched, loss_weighting="snr")
    with pytest.raises(ValueError, match="batch has no labels"):
        DiffusionLoss(sched)(rec, torch.zeros(2, 1, 2, 2))
    with pytest.raises(KeyError, match="set image_key"):
        DiffusionLoss(sched)(rec, {"pixels": torch.zeros(2, 1, 2, 2)})
    with pytest.raises(TypeError, match="a batch must be"):
        DiffusionLoss(sched)(rec, "images")
    with pytest.warns(UserWarning, match="prediction_type is 'epsilon'"):
        DiffusionLoss(sched, objective="sample")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        DiffusionLoss(DDPMScheduler(prediction_type="v_prediction"), objective="v_prediction")


def test_loss_weighting(sched):
    model, batch = Recorder(num_classes=None), torch.randn(6, 1, 2, 2)
    torch.manual_seed(0)
    plain = DiffusionLoss(sched)(model, batch)
    torch.manual_seed(0)
    ones = DiffusionLoss(sched, loss_weighting=lambda r: torch.ones_like(r))(model, batch)
    torch.testing.assert_close(plain, ones)
    torch.manual_seed(0)
    weighted = DiffusionLoss(sched, loss_weighting="min_snr")(model, batch)
    torch.manual_seed(0)
    noise = torch.randn_like(batch)
    t = torch.randint(0, 1000, (6,))
    per = (sched.add_noise(batch, noise, t) - noise).pow(2).flatten(1).mean(1)
    torch.testing.assert_close(weighted, (per * min_snr_weight(snr(sched, t), "epsilon")).mean())


def tiny_data(n=32, size=8):
    "Class-dependent blobs: each label is a bright square at its own position."
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 4, (n,), generator=g)
    images = -torch.ones(n, 1, size, size)
    for i, y in enumerate(labels.tolist()):
        images[i, :, 2 * (y // 2) : 2 * (y // 2) + 4, 2 * (y % 2) : 2 * (y % 2) + 4] = 1
    return [{"images": im, "labels": y} for im, y in zip(images, labels)]


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_each_objective_learns(objective):
    sched = DDPMScheduler(prediction_type=objective)
    data = tiny_data()
    batch = {"images": torch.stack([d["images"] for d in data]), "labels": torch.stack([d["labels"] for d in data])}
    torch.manual_seed(0)
    model = SmallUNet(widths=(8, 16), attention=False, num_classes=4)
    loss_fn = DiffusionLoss(sched, objective=objective, class_dropout=0.1)

    def fixed_loss():  # the same noise and timesteps every time
        with torch.random.fork_rng(), torch.no_grad():
            return sum(loss_fn(model, batch).item() for _ in [torch.manual_seed(s) for s in range(4)]) / 4

    before = fixed_loss()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(25):
        loss = loss_fn(model, batch)
        assert torch.isfinite(loss)
        loss.backward()
        opt.step()
        opt.zero_grad()
    assert fixed_loss() < 0.8 * before


# --- Learner integration ---


class StopAt:
    def __init__(self, step):
        self.at = step

    def after_step(self, learner):
        if learner.step == self.at:
            raise KeyboardInterrupt


def make_learner(ckpt_dir=None, callbacks=(), objective="v_prediction"):
    torch.manual_seed(0)
    model = SmallUNet(widths=(8, 16), attention=True, attention_heads=2, num_classes=4)
    loss_fn = DiffusionLoss(
        DDPMScheduler(prediction_type=objective), objective=objective, class_dropout=0.2, loss_weighting="min_snr"
    )
    return Learner(
        model,
        make_dataloader(tiny_data(), batch_size=8, seed=0),
        loss_fn,
        lr=2e-3,
        device="cpu",
        ema_decay=0.9,
        ckpt_dir=ckpt_dir,
        ckpt_every=4 if ckpt_dir else None,
        callbacks=callbacks,
        log_every=1,
        progress=False,
    )


def test_checkpoint_resume_reproduces_the_history(tmp_path):
    full = make_learner().fit(steps=14)
    with pytest.raises(KeyboardInterrupt):
        make_learner(tmp_path, callbacks=[StopAt(10)]).fit(steps=14)
    resumed = make_learner(tmp_path).fit(steps=14)  # restarts from the step-8 checkpoint
    assert resumed.history["step"] == full.history["step"] == list(range(1, 15))
    assert resumed.history["loss"] == full.history["loss"]
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)


def test_sample_grid_records_and_leaves_training_alone():
    plain = make_learner().fit(steps=6)
    grid = SampleGrid(every=4, n=4, num_inference_steps=3, show=False)
    learner = make_learner(callbacks=[grid]).fit(steps=6)
    assert learner.history["loss"] == plain.history["loss"]  # sampling used its own random numbers
    assert [s for s, _ in grid.grids] == [4, 6] and grid.shape == (1, 8, 8)  # the shape of the training images
    images = grid.grids[-1][1]
    assert images.shape == (4, 1, 8, 8) and images.min() >= 0 and images.max() <= 1
    again = grid.sample(learner)  # same seed, same weights: the same grid
    assert torch.equal(again, images)


def test_sample_grid_guidance_and_errors(sched):
    learner = make_learner()
    learner.step = 0
    guided = SampleGrid(
        n=4, num_inference_steps=2, guidance_scale=3.0, class_labels=[0, 1, 2, 3], shape=(1, 8, 8), show=False
    )
    guided.before_fit(learner)
    assert guided.sample(learner).shape == (4, 1, 8, 8)
    with pytest.raises(ValueError, match="every must be"):
        SampleGrid(every=0)
    with pytest.raises(ValueError, match="n must be"):
        SampleGrid(n=True)
    other = Learner(
        SmallUNet(widths=(8, 16)),
        make_dataloader(tiny_data(), 8),
        lambda m, b: torch.zeros(()),
        device="cpu",
        progress=False,
    )
    with pytest.raises(ValueError, match="needs a scheduler"):
        SampleGrid(n=2).sample(other)

    class Unindexable(torch.utils.data.IterableDataset):
        def __iter__(self):
            return iter(tiny_data())

        def __len__(self):
            return 8

    streamed = Learner(
        SmallUNet(widths=(8, 16)),
        torch.utils.data.DataLoader(Unindexable(), batch_size=8),
        lambda m, b: torch.zeros(()),
        device="cpu",
        progress=False,
    )
    with pytest.raises(ValueError, match="image size"):
        SampleGrid(n=2, scheduler=sched).sample(streamed)


@pytest.mark.parametrize("objective", OBJECTIVES)
@pytest.mark.parametrize(
    "scheduler_cls", [DDIMScheduler, DDPMScheduler, gb_schedulers.DDIMFromScratch, gb_schedulers.DDPMFromScratch]
)
def test_objective_adapter_with_an_oracle(objective, scheduler_cls):
    "If every image is the same picture c, the ideal model predicts it exactly; sampling must then return c."
    sched = scheduler_cls(num_train_timesteps=1000, clip_sample=False, prediction_type="v_prediction")
    c = torch.linspace(-0.8, 0.8, 16).reshape(1, 1, 4, 4)

    def oracle(x, t):  # the ideal model for `objective`
        a, s = signal_noise(sched, t, x)
        return diffusion_target(sched, c.expand_as(x), (x - a * c) / s, t, objective)

    out = sample(
        ObjectiveAdapter(oracle, sched, objective),
        sched,
        (2, 1, 4, 4),
        num_inference_steps=20,
        generator=torch.Generator().manual_seed(0),
        progress=False,
    )
    torch.testing.assert_close(out, c.expand(2, 1, 4, 4), atol=1e-3, rtol=1e-3)


def test_objective_adapter_keeps_the_mode_and_config():
    model = SmallUNet(widths=(8, 16), sample_size=8).eval()
    adapter = ObjectiveAdapter(model, DDPMScheduler(), "sample")
    assert not adapter.training and adapter.target == "epsilon" and adapter.config.sample_size == 8
    sample(adapter, DDPMScheduler(), 2, num_inference_steps=2, progress=False)
    assert not model.training  # sample() restored the eval mode it found
    with pytest.raises(ValueError, match="objective must be one of"):
        ObjectiveAdapter(model, DDPMScheduler(), "x0")


def test_sample_grid_converts_the_objective():
    "A v-prediction run sampled through an epsilon scheduler: SampleGrid adapts the model, and training is unaffected."
    learner = make_learner(objective="v_prediction")
    grid = SampleGrid(n=2, num_inference_steps=2, scheduler=DDPMScheduler(), shape=(1, 8, 8), show=False)
    learner.callbacks.append(grid)
    learner.fit(steps=2)
    assert [s for s, _ in grid.grids] == [2] and learner.model.training


def test_modules_import_without_a_gpu_and_stay_light():
    heavy = modules_loaded_by(
        "import genaibook.unets, genaibook.diffusion", ("diffusers", "transformers", "datasets", "matplotlib")
    )
    assert heavy == [], f"heavy modules imported at import time: {heavy}"


def test_the_recipe_configuration_is_expressible():
    """The measured CPU recipe: UNet2DModel (16,32,64), v-prediction, cosine betas, one-cycle LR, EMA 0.999, 10% label
    dropout to null label 10, DDIM with trailing steps and CFG 1.5: all of it through Learner + DiffusionLoss + SampleGrid."""
    import functools
    import math

    from genaibook.recipes import CH5_CPU

    sched_kw = dict(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction")
    assert CH5_CPU.make_train_scheduler().config.beta_schedule == sched_kw["beta_schedule"]
    model = UNet2DModel(**{**CH5_CPU.unet, "sample_size": 8})  # the recipe's UNet, on 8-pixel test images

    def one_cycle(opt, total):  # 25% linear warm-up, cosine down to 2% of the peak
        w = int(0.25 * total)
        f = lambda s: (
            (s + 1) / w if s < w else 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1, (s - w) / (total - w))))
        )
        return torch.optim.lr_scheduler.LambdaLR(opt, f)

    ddim = DDIMScheduler(**sched_kw, timestep_spacing="trailing", clip_sample=False)  # no clipping with guidance
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the loss and the scheduler agree on the objective: no warning
        loss_fn = DiffusionLoss(DDPMScheduler(**sched_kw), objective="v_prediction", class_dropout=0.1, null_class=10)
    learner = Learner(
        model,
        make_dataloader(tiny_data(), batch_size=8),
        loss_fn,
        lr=3e-3,
        device="cpu",
        ema_decay=0.999,
        opt_func=functools.partial(torch.optim.AdamW, weight_decay=0.0),
        lr_schedule=one_cycle,
        progress=False,
        callbacks=[grid := SampleGrid(every=4, n=4, scheduler=ddim, guidance_scale=1.5, show=False)],
    )
    learner.fit(steps=4)
    lrs = learner.history["lr"]
    assert lrs[0] == pytest.approx(3e-3) and len(grid.grids) == 1  # warm-up of one step at this length
    assert grid.grids[0][1].shape == (4, 1, 8, 8)
