"""Training throughput of `Learner` + `DiffusionLoss` against the book's plain loop (listing 4.9), same model and data.

Both train a small diffusers `UNet2DModel` on Fashion-MNIST padded to 32 pixels, with the same batch size, optimizer
and learning rate. The plain loop does, per step: noise, randint timesteps, add_noise, model, MSE, backward, step,
zero_grad, loss.item(). The trainer is `Learner(model, make_dataloader(...), DiffusionLoss(scheduler))` with its
defaults (mixed precision on CUDA, none on CPU; progress bar off to keep the output readable). The two run in
alternating blocks (ABBA order) so that load changes on a shared machine affect both alike. The ratio is trainer
images/s over plain images/s: 1.0 means no overhead. On a CPU it is also given by process CPU time, which a
busy shared machine disturbs much less than wall time (with OMP_NUM_THREADS=1 it is the compute time).

Offline mode is switched on for you (`genaibook.offline.use_offline_cache`: HF_HUB_OFFLINE=1 and the course's
stand-in cache, unless those variables are set), so no variables need exporting.

Usage: python bench/train_throughput.py [--rounds 4] [--block 8] [--batch-size 64] [--device cpu] [--out FILE]
Writes bench/results/train_throughput.json (or `--out`).
"""

# ruff: noqa: E402 (the imports after use_offline_cache() come after it on purpose)
import argparse
import contextlib
import io
import json
import os
import platform
import time
from copy import deepcopy
from pathlib import Path

from genaibook.offline import use_offline_cache

use_offline_cache()  # before diffusers or datasets is imported: they read HF_HUB_OFFLINE and HF_HOME once

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, UNet2DModel

from genaibook.core import get_device
from genaibook.diffusion import DiffusionLoss
from genaibook.offline import quiet_libraries
from genaibook.recipes import FASHION_UNET
from genaibook.train import Learner, make_dataloader

RESULTS = Path(__file__).parent / "results" / "train_throughput.json"


class FashionTensors(torch.utils.data.Dataset):
    "The first `n` Fashion-MNIST training images, padded to 32 px and scaled to [-1, 1], as book-style dicts."

    def __init__(self, n: int):
        from datasets import load_dataset

        with quiet_libraries():
            ds = load_dataset("zalando-datasets/fashion_mnist", split=f"train[:{n}]")
        x = torch.from_numpy(np.stack([np.asarray(im) for im in ds["image"]])).float().div(127.5).sub(1)
        self.images, self.labels = F.pad(x[:, None], (2, 2, 2, 2), value=-1.0), torch.tensor(ds["label"])

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return {"images": self.images[i], "labels": self.labels[i]}


def make_model(widths):
    "The course's Fashion-MNIST UNet (`FASHION_UNET`) with blocks of `widths` channels, as many as there are widths."
    n = len(widths)
    return UNet2DModel(
        **{
            **FASHION_UNET,
            "block_out_channels": tuple(widths),
            "down_block_types": FASHION_UNET["down_block_types"][:1] * n,
            "up_block_types": FASHION_UNET["up_block_types"][:1] * n,
        }
    )


class PlainLoop:
    "The book's loop (listing 4.9), resumable block by block."

    def __init__(self, model, ds, batch_size, scheduler, lr, device):
        self.model, self.scheduler, self.device = model.to(device), scheduler, device
        self.dl = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=lr)
        self.losses, self.it = [], iter(self.dl)

    def batches(self, n):
        for _ in range(n):
            try:
                yield next(self.it)
            except StopIteration:
                self.it = iter(self.dl)
                yield next(self.it)

    def run(self, steps):
        for batch in self.batches(steps):
            clean_images = batch["images"].to(self.device)
            noise = torch.randn(clean_images.shape).to(self.device)
            timesteps = torch.randint(
                0, self.scheduler.config.num_train_timesteps, (clean_images.shape[0],), device=self.device
            ).long()
            noisy_images = self.scheduler.add_noise(clean_images, noise, timesteps)
            noise_pred = self.model(noisy_images, timesteps, return_dict=False)[0]
            loss = F.mse_loss(noise_pred, noise)
            loss.backward()
            self.opt.step()
            self.opt.zero_grad()
            self.losses.append(loss.item())


def timed(fn, device) -> tuple:  # (wall seconds, process CPU seconds)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0, time.process_time() - c0


def main(rounds=4, block=8, batch_size=64, n_images=4096, widths=(16, 32, 64), lr=1e-3, device=None):
    device = torch.device(device) if device else get_device()
    torch.manual_seed(0)
    ds, model = FashionTensors(n_images), make_model(widths)
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02)
    plain = PlainLoop(deepcopy(model), ds, batch_size, scheduler, lr, device)
    learner = Learner(
        deepcopy(model),
        make_dataloader(ds, batch_size, seed=0),
        DiffusionLoss(scheduler),
        lr=lr,
        device=device,
        progress=False,
    )

    def trainer_block():
        with contextlib.redirect_stdout(io.StringIO()):  # fit prints a summary line
            learner.fit(steps=learner.step + block)

    runs = {"plain": lambda: plain.run(block), "trainer": trainer_block}
    for fn in runs.values():
        fn()  # warm-up block, not timed
    times, cpu_times = {k: [] for k in runs}, {k: [] for k in runs}
    for r in range(rounds):
        for k in ("plain", "trainer") if r % 2 == 0 else ("trainer", "plain"):
            wall, cpu = timed(runs[k], device)
            times[k].append(wall)
            cpu_times[k].append(cpu)
    n = rounds * block * batch_size
    ips = {k: n / sum(v) for k, v in times.items()}
    ips_cpu = {k: n / sum(v) for k, v in cpu_times.items()}
    learner._flush()
    return {
        "device": str(device),
        "gpu": torch.cuda.get_device_name() if device.type == "cuda" else None,
        "cpu": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "model": f"UNet2DModel block_out_channels={tuple(widths)}, "
        f"layers_per_block={model.config.layers_per_block}, {model.config.sample_size} px",
        "params": sum(p.numel() for p in model.parameters()),
        "batch_size": batch_size,
        "rounds": rounds,
        "steps_per_block": block,
        "trainer_mixed_precision": str(learner.amp_dtype),
        "block_seconds": times,
        "block_cpu_seconds": cpu_times,
        "images_per_s": ips,
        "images_per_cpu_s": ips_cpu,
        "ratio_trainer_over_plain": ips["trainer"] / ips["plain"],
        "ratio_by_cpu_time": ips_cpu["trainer"] / ips_cpu["plain"],
        "load_average": os.getloadavg(),
        "last_loss": {
            "plain": float(np.mean(plain.losses[-block:])),
            "trainer": float(np.mean(learner.history["loss"][-block:])),
        },
    }


def report(res):
    print(
        f"{res['model']}, {res['params']:,} parameters, batch {res['batch_size']}, on {res['gpu'] or res['device']} "
        f"({res['torch_threads']} threads); {res['rounds']} rounds of {res['steps_per_block']} steps each, "
        "ABBA order"
    )
    print(f"{'loop':<10}{'images/s':>10}{'images/CPU-s':>14}  {'wall s per block (each round)':<40}{'last loss':>10}")
    for k in ("plain", "trainer"):
        blocks = " ".join(f"{t:5.2f}" for t in res["block_seconds"][k])
        print(
            f"{k:<10}{res['images_per_s'][k]:>10.1f}{res['images_per_cpu_s'][k]:>14.1f}  {blocks:<40}"
            f"{res['last_loss'][k]:>10.4f}"
        )
    print(
        f"trainer / plain throughput: {res['ratio_trainer_over_plain']:.3f}x by wall time, "
        f"{res['ratio_by_cpu_time']:.3f}x by process CPU time (trainer mixed precision: "
        f"{res['trainer_mixed_precision']}; load average {res['load_average'][0]:.1f})"
    )


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--block", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--n-images", type=int, default=4096)
    p.add_argument("--widths", default="16,32,64")
    p.add_argument("--device", default=None)
    p.add_argument("--out", type=Path, default=RESULTS, help="where to write the JSON results")
    a = p.parse_args()
    res = main(a.rounds, a.block, a.batch_size, a.n_images, tuple(int(w) for w in a.widths.split(",")), device=a.device)
    report(res)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=1) + "\n")
    print(f"wrote {a.out}")
