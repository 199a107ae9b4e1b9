"""Sample quality vs training time on the CPU path: FID of the chapter-4 model at points of one training run.

Trains the chapter-4 CPU recipe, `genaibook.recipes.CH4_CPU` (its unconditional UNet2DModel, noise schedule,
objective, peak learning rate, EMA and batch size, on the real Fashion-MNIST padded to 32 px, in [-1, 1]) with
`Learner` + `DiffusionLoss`, for `--minutes` of training time instead of the recipe's step count. Every `--every`
minutes the training clock stops, `--n` images are sampled from the EMA weights with DDIM (`--ddim-steps` steps, the
same start noise each time), and their FID against `--n` real test images is computed with the offline Fashion-MNIST
classifier features (the real statistics are computed once). Evaluation time is not training time.

The learning rate follows a cosine schedule with warm-up indexed by *training time* (fraction of `--minutes` spent),
so it reaches its end exactly when the time is up, however fast the machine is. Each point is therefore "minute t of a
`--minutes` run": a run planned to stop at t, whose learning rate would already have decayed, would do a little better
there. The clock is wall time by default (what a reader waits); `--clock cpu` uses this process's CPU time divided by
the thread count instead, which other processes on a shared machine disturb less. Both clocks, the step count and the
load average are recorded at every point, so the curve can be read in steps too.

FID from 500 images is biased upwards (the features have 256 dimensions): compare points with each other and with the
`real vs real` reference (500 training images against the 500 test images), not with published FID values.

On a 2-core machine shared with other jobs, `--threads 1 --clock cpu` measures best: there, 2 threads made a training
step about twice as slow as 1 thread (OpenMP threads wait for each other when descheduled). The committed results were
made that way (see their `note`). Each point costs `--n` × `--ddim-steps` UNet evaluations (about 3 CPU minutes for
500 × 50 with the default model), so a few `--points` keep a run short.

Offline mode is switched on for you (`genaibook.offline.use_offline_cache`: HF_HUB_OFFLINE=1 and the course's
stand-in cache, unless those variables are set), so no variables need exporting.

Usage: OMP_NUM_THREADS=2 python bench/quality_vs_time.py [--minutes 14] [--every 2 | --points 2,4,8,14] [--n 500]
       [--threads 2] [--quick]
Writes bench/results/quality_vs_time.json and quality_vs_time.png (--quick writes to a temporary folder unless --out).
"""

# ruff: noqa: E402 (the imports after use_offline_cache() come after it on purpose)
import argparse
import json
import math
import os
import platform
import tempfile
import time
import warnings
from dataclasses import replace
from functools import partial
from pathlib import Path

from genaibook.offline import use_offline_cache

use_offline_cache()  # before diffusers or datasets is imported: they read HF_HUB_OFFLINE and HF_HOME once

import diffusers
import numpy as np
import torch
import torch.nn.functional as F

from genaibook.diffusion import DiffusionLoss
from genaibook.metrics import FID, load_fashion_mnist_tensors
from genaibook.recipes import CH4_CPU, DiffusionRecipe
from genaibook.sampling import sample
from genaibook.train import Learner, make_dataloader

RESULTS = Path(__file__).resolve().parent / "results"

# The CPU recipe of nbs/04_diffusion.ipynb, `CH4_CPU`: a narrow UNet2DModel without attention, v-prediction with the
# cosine schedule, AdamW 3e-3, EMA 0.999, batch 64. Its one-cycle schedule over `steps` is replaced by a time budget:
# the one-cycle schedule warms up over its first quarter; here the warm-up is a quarter of the time budget (WARMUP).
RECIPE = CH4_CPU
WARMUP = 0.25
# --quick: the same code path on a small model and a few hundred images, for smoke tests.
QUICK = replace(CH4_CPU, name="ch4-cpu-quick", unet={**CH4_CPU.unet, "block_out_channels": (8, 16, 16)}, batch_size=32)
QUICK_N_TRAIN = 256
QUICK_ARGS = dict(minutes=0.2, every=0.1, n=32, ddim_steps=4)


def recipe_settings(recipe: DiffusionRecipe, warmup: float, n_train: int | None) -> dict:
    "What the results' `settings.recipe` records: the UNet's arguments and the training settings this bench uses."
    plain = lambda v: list(v) if isinstance(v, tuple) else v
    return {
        "name": recipe.name,
        **{k: plain(v) for k, v in recipe.unet.items()},
        "beta_schedule": recipe.beta_schedule,
        "objective": recipe.objective,
        "lr": recipe.lr,
        "adam_eps": recipe.adam_eps,
        "warmup": warmup,
        "ema_decay": recipe.ema_decay,
        "batch_size": recipe.batch_size,
        "n_train": n_train,
    }


def pad32(images: torch.Tensor) -> torch.Tensor:
    "[N, 1, 28, 28] in [0, 1] → [N, 1, 32, 32] in [-1, 1] with a black border (the book's Pad(2) + Normalize)."
    return F.pad(images, (2, 2, 2, 2), value=0.0) * 2 - 1


class Images(torch.utils.data.Dataset):
    "A tensor of images as a dataset whose batches are image tensors."

    def __init__(self, x):
        self.x = x

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i]


CLOCKS = {
    "wall": "wall-clock minutes of training ({threads} torch threads), evaluation excluded",
    "cpu": "this process's CPU minutes of training divided by {threads} torch thread(s), evaluation excluded",
}


class Clock:
    "Training time on two clocks, wall and process CPU (÷ threads), that can be paused while evaluating."

    def __init__(self, kind: str = "wall", threads: int = 1):
        if kind not in ("wall", "cpu"):
            raise ValueError(f"clock must be 'wall' or 'cpu', got {kind!r}")
        self.kind, self.threads, self.started = kind, threads, None
        self.paused = {"wall": 0.0, "cpu": 0.0}

    def _now(self):
        return {"wall": time.perf_counter(), "cpu": time.process_time()}

    def start(self):
        self.started, self._pause = self._now(), None

    def seconds(self, kind: str | None = None) -> float:
        "Training seconds so far on clock `kind` (default: the one that drives the run); 0 before `start`."
        if self.started is None:
            return 0.0
        kind, now = kind or self.kind, self._pause or self._now()
        s = now[kind] - self.started[kind] - self.paused[kind]
        return s / self.threads if kind == "cpu" else s

    def minutes(self, kind=None) -> float:
        return self.seconds(kind) / 60

    def pause(self):
        self._pause = self._now()

    def resume(self):
        now = self._now()
        for k in now:
            self.paused[k] += now[k] - self._pause[k]
        self._pause = None


def time_cosine(clock: Clock, budget_s: float, warmup: float = 0.05):
    "A Learner `lr_schedule`: a linear warm-up over the first `warmup` of the time budget, then cosine decay to 0."

    def factor(step):
        frac = min(1.0, clock.seconds() / budget_s)
        if frac < warmup:
            return max(frac / warmup, 0.01)
        return 0.5 * (1 + math.cos(math.pi * (frac - warmup) / (1 - warmup)))

    return lambda opt, total_steps: torch.optim.lr_scheduler.LambdaLR(opt, factor)


class TimeUp(Exception):
    "Raised by `QualityProbe` to end `Learner.fit` when the time budget is spent."


def load_avg() -> list:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return []


def sample_images(model, scheduler, n: int, steps: int, seed: int = 0, batch: int = 250) -> torch.Tensor:
    "`n` images in [0, 1] from `model` with `steps` DDIM steps; chunk `i` always starts from the noise of `seed + i`."
    out = [
        sample(
            model,
            scheduler,
            min(batch, n - i),
            num_inference_steps=steps,
            progress=False,
            generator=torch.Generator().manual_seed(seed + i // batch),
        )
        for i in range(0, n, batch)
    ]
    return torch.cat(out) * 0.5 + 0.5


class QualityProbe:
    "Learner callback: at each point (training minutes) pause the clock, sample from the EMA model, record the FID."

    def __init__(
        self,
        clock: Clock,
        points: list,
        fid: FID,
        scheduler,
        n: int,
        ddim_steps: int,
        keep: int = 8,
        verbose: bool = True,
        on_point=None,
    ):  # Called with no arguments after each point (e.g. to save partial results)
        self.clock, self.points, self.fid, self.scheduler = clock, list(points), fid, scheduler
        self.n, self.ddim_steps, self.keep, self.verbose, self.on_point = n, ddim_steps, keep, verbose, on_point
        self.rows, self.samples = [], []

    def before_fit(self, learner):
        self.clock.start()

    def after_step(self, learner):
        if self.clock.minutes() >= self.points[len(self.rows)]:
            self.record(learner)
        if len(self.rows) == len(self.points):
            raise TimeUp

    def record(self, learner):
        self.clock.pause()
        row = {
            "minutes": round(self.clock.minutes(), 3),
            "wall_minutes": round(self.clock.minutes("wall"), 3),
            "cpu_minutes_per_thread": round(self.clock.minutes("cpu"), 3),
            "steps": learner.step,
            "epochs": round(learner.step / len(learner.train_dl), 3),
            "loss": round(float(np.mean(learner.history["loss"][-100:])), 5),
            "lr": learner.history["lr"][-1],
        }
        model = learner.ema_model or learner.model
        t0 = time.perf_counter()
        images = sample_images(model, self.scheduler, self.n, self.ddim_steps)
        row["sampling_s"] = round(time.perf_counter() - t0, 1)
        t0 = time.perf_counter()
        row["fid"] = round(self.fid(images), 3)
        row["fid_s"] = round(time.perf_counter() - t0, 1)
        row["load_avg"] = load_avg()
        self.rows.append(row)
        self.samples.append(images[: self.keep])
        if self.verbose:
            print(_row_line(row), flush=True)
        if self.on_point:
            self.on_point()
        self.clock.resume()


def _row_line(r) -> str:
    return (
        f"{r['minutes']:>8.2f}{r['steps']:>7}{r['epochs']:>7.2f}{r['loss']:>9.4f}{r['fid']:>9.2f}"
        f"{r['sampling_s']:>10.1f}   {' '.join(f'{v:.1f}' for v in r['load_avg'])}"
    )


def header(clock: str) -> str:
    return (
        f"{'min (' + clock + ')':>8}{'steps':>7}{'epochs':>7}{'loss':>9}{'FID':>9}{'sample s':>10}"
        "   load avg (1, 5, 15 min)"
    )


def fid_points(minutes: float, every: float = 2, points=None) -> list:
    "Training minutes at which to measure: `points` (plus `minutes` itself), or every `every` minutes up to `minutes`."
    if minutes <= 0 or every <= 0:
        raise ValueError(f"minutes and every must be positive, got {minutes} and {every}")
    if points is None:
        return [round(min(every * i, minutes), 6) for i in range(1, math.ceil(minutes / every - 1e-9) + 1)]
    points = sorted(set(float(p) for p in points))
    if not points or points[0] <= 0 or points[-1] > minutes:
        raise ValueError(f"points must be positive minutes no later than minutes={minutes}, got {points}")
    return points if points[-1] == minutes else points + [minutes]


def run(
    minutes: float = 14,
    every: float = 2,
    n: int = 500,
    threads: int = 2,
    ddim_steps: int = 50,
    clock: str = "wall",
    recipe: DiffusionRecipe = RECIPE,
    seed: int = 0,
    points=None,
    verbose: bool = True,
    on_point=None,
    note: str = "",
    n_train: int | None = None,
    warmup: float = WARMUP,
) -> dict:
    """Train `recipe` on the first `n_train` training images (None: all) for `minutes`, measuring FID at `points`
    (default every `every` minutes); returns rows, reference, settings. The learning rate warms up over `warmup` of
    the time budget. `on_point(result)` is called with the results so far (`complete` False) after each point."""
    points = fid_points(minutes, every, points)
    if n < 2:
        raise ValueError(f"FID needs at least 2 images, got n={n}")
    torch.set_num_threads(threads)
    t_start, load_start = time.perf_counter(), load_avg()
    train_x, _ = load_fashion_mnist_tensors("train", n=n_train)
    real, _ = load_fashion_mnist_tensors("test", n=n)
    fid = FID(real, features="fashion", device="cpu")
    reference = round(fid(train_x[:n]), 3)  # what a model that reproduces the data would score with n images
    train_sched = recipe.make_train_scheduler()
    ddim = recipe.make_sampler()  # without x̂0 clipping, as the notebooks sample
    clk = Clock(clock, threads)
    probe = QualityProbe(
        clk,
        points,
        fid,
        ddim,
        n,
        ddim_steps,
        verbose=verbose,
        on_point=lambda: on_point(results(complete=False)) if on_point else None,
    )
    dl = make_dataloader(Images(pad32(train_x)), recipe.batch_size, seed=seed, drop_last=True)
    learner = Learner(
        recipe.make_unet(seed),
        dl,
        DiffusionLoss(train_sched, objective=recipe.objective),
        lr=recipe.lr,
        opt_func=partial(torch.optim.AdamW, eps=recipe.adam_eps),
        callbacks=[probe],
        ema_decay=recipe.ema_decay,
        lr_schedule=time_cosine(clk, minutes * 60, warmup),
        device="cpu",
        mixed_precision=None,
        log_every=1,
        progress=False,
    )
    settings = dict(
        minutes=minutes,
        points=points,
        n=n,
        threads=threads,
        torch_threads=torch.get_num_threads(),
        ddim_steps=ddim_steps,
        clock=clock,
        seed=seed,
        recipe=recipe_settings(recipe, warmup, n_train),
        unet_params=sum(p.numel() for p in learner.model.parameters()),
        n_train_images=len(train_x),
        fid_features="fashion",
        torch=torch.__version__,
        diffusers=diffusers.__version__,
        machine=platform.processor() or platform.machine(),
        cpu_count=os.cpu_count(),
        omp_num_threads=os.environ.get("OMP_NUM_THREADS"),
        clock_meaning=CLOCKS[clock].format(threads=threads),
    )

    def results(complete: bool) -> dict:
        return {
            "settings": settings,
            "note": note,
            "complete": complete,
            "reference_fid_real_vs_real": reference,
            "rows": probe.rows,
            "load_avg": {"start": load_start, "end": load_avg()},
            "total_wall_minutes": round((time.perf_counter() - t_start) / 60, 2),
            "samples": torch.stack(probe.samples) if probe.samples else None,
        }

    if verbose:
        print(f"reference FID (n={n} train vs n test images): {reference:.2f}\n{header(clock)}", flush=True)
    try:
        learner.fit(steps=10**9)
    except TimeUp:
        pass
    return results(complete=True)


def plot(result: dict, path: Path):
    "FID against training minutes (left) and samples from each point, one row per point (right), as a small PNG."
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, s = result["rows"], result["settings"]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(8, 3.2), dpi=90, gridspec_kw={"width_ratios": [1.1, 1]})
    ax.plot([r["minutes"] for r in rows], [r["fid"] for r in rows], "o-", label="EMA model, DDIM")
    ax.axhline(result["reference_fid_real_vs_real"], ls="--", c="gray", label="real vs real")
    ax.set(
        xlabel=f"training minutes ({s['clock']} clock, {s['threads']} threads)",
        ylabel=f"FID (fashion features, n={s['n']})",
        yscale="log",
        title="Sample quality vs CPU training time",
    )
    ax.legend(fontsize=8)
    grid = result["samples"]  # [points, keep, 1, 32, 32]
    if grid is not None:
        p, k = grid.shape[:2]
        ax2.imshow(grid[:, :, 0].permute(0, 2, 1, 3).reshape(p * 32, k * 32).numpy(), cmap="gray", vmin=0, vmax=1)
        ax2.set_yticks([32 * i + 16 for i in range(p)], [f"{r['minutes']:.1f} min" for r in rows], fontsize=7)
        ax2.set_xticks([])
        ax2.set_title("same noise at each point", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def save(result: dict, out: Path) -> tuple[Path, Path]:
    "Write `quality_vs_time.json` and `.png` to `out`."
    out.mkdir(parents=True, exist_ok=True)
    js, png = out / "quality_vs_time.json", out / "quality_vs_time.png"
    js.write_text(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=1) + "\n")
    plot(result, png)
    return js, png


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, help="training time budget (default 14; --quick 0.2)")
    p.add_argument("--every", type=float, help="minutes between FID points (default 2; --quick 0.1)")
    p.add_argument(
        "--points",
        type=lambda s: [float(v) for v in s.split(",")],
        help="comma-separated minutes to measure at, e.g. 2,4,8,14 (overrides --every)",
    )
    p.add_argument("--n", type=int, help="generated and real images per FID (default 500; --quick 32)")
    p.add_argument("--ddim-steps", type=int, help="DDIM steps per sample (default 50; --quick 4)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall", help="what 'minutes' means (default wall)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="smoke mode: small model and data, runs in well under a minute")
    p.add_argument("--note", default="", help="free text stored in the JSON (conditions of the run)")
    p.add_argument("--out", type=Path, help="output folder (default bench/results; --quick: a temporary folder)")
    args = p.parse_args(argv)
    if args.quick:
        warnings.filterwarnings("ignore", message="FID from .* strongly biased")  # tiny n is the point here
    defaults = QUICK_ARGS if args.quick else dict(minutes=14, every=2, n=500, ddim_steps=50)
    kw = {k: getattr(args, k) if getattr(args, k) is not None else v for k, v in defaults.items()}
    out = args.out or (Path(tempfile.mkdtemp(prefix="quality_vs_time-")) if args.quick else RESULTS)
    result = run(
        **kw,
        points=args.points,
        threads=args.threads,
        clock=args.clock,
        recipe=QUICK if args.quick else RECIPE,
        n_train=QUICK_N_TRAIN if args.quick else None,
        seed=args.seed,
        note=args.note,
        on_point=lambda partial: save(partial, out),
    )  # a long run keeps what it has measured
    js, png = save(result, out)
    print(
        f"total {result['total_wall_minutes']:.1f} min wall; load average start {result['load_avg']['start']}, "
        f"end {result['load_avg']['end']}\nwrote {js} and {png}"
    )
    return result


if __name__ == "__main__":
    main()
