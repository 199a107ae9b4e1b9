"""genaibook.sampling.sample vs diffusers' DDPMPipeline and DDIMPipeline: same UNet, scheduler, steps, batch and seed.

The UNet is the course's Fashion-MNIST UNet2DModel (`genaibook.recipes.FASHION_UNET`: 32×32, 1 channel, one layer per
block) with blocks (32, 64, 64) and attention in the two inner ones, with random weights: only the time matters. Runs
alternate ours/diffusers so that load changes hit both; the median of `--repeats` runs is reported, and the images
are compared. On the CPU the time is the process's CPU time (run with
OMP_NUM_THREADS=1), which other processes on a shared machine disturb much less than wall time; on a GPU it is wall
time with synchronisation.

Offline mode is switched on for you (`genaibook.offline.use_offline_cache`: HF_HUB_OFFLINE=1 and the course's
stand-in cache, unless those variables are set), so no variables need exporting.

Usage: OMP_NUM_THREADS=1 python bench/sampling_speed.py [--batch 4] [--steps 8] [--repeats 7] [--device cpu]
Writes bench/results/sampling_speed.json.
"""

# ruff: noqa: E402 (the imports after use_offline_cache() come after it on purpose)
import argparse
import json
import platform
import statistics
import time
from pathlib import Path

from genaibook.offline import use_offline_cache

use_offline_cache()  # before diffusers or datasets is imported: they read HF_HUB_OFFLINE and HF_HOME once

import diffusers
import torch

from genaibook.recipes import FASHION_UNET
from genaibook.sampling import sample

RESULTS = Path(__file__).resolve().parent / "results" / "sampling_speed.json"


def fashion_unet(device) -> diffusers.UNet2DModel:
    "`FASHION_UNET` with blocks (32, 64, 64), attention in the two inner ones, random weights from seed 0."
    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(
        **{
            **FASHION_UNET,
            "block_out_channels": (32, 64, 64),
            "down_block_types": ("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
            "up_block_types": ("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
        }
    )
    return unet.to(device).eval()


def timed(fn, device) -> tuple[float, torch.Tensor]:
    "Seconds of fn(): process CPU time on the CPU (robust to other processes on a shared machine), else wall time."
    if torch.device(device).type == "cpu":
        t0 = time.process_time()
        out = fn()
        return time.process_time() - t0, out
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    out = fn()
    sync()
    return time.perf_counter() - t0, out


def compare(name, pipe_cls, sched_cls, unet, args) -> dict:
    pipe = pipe_cls(unet=unet, scheduler=sched_cls())
    pipe.set_progress_bar_config(disable=True)
    gen = lambda: torch.Generator(args.device).manual_seed(0)
    run_pipe = lambda: (
        pipe(batch_size=args.batch, num_inference_steps=args.steps, generator=gen(), output_type="pt").images
    )
    run_ours = lambda: (
        sample(unet, sched_cls(), args.batch, num_inference_steps=args.steps, generator=gen(), progress=False) * 0.5
        + 0.5
    )
    run_pipe()
    run_ours()  # warm-up
    ours, theirs = [], []
    for _ in range(args.repeats):
        s, a = timed(run_ours, args.device)
        ours.append(s)
        s, b = timed(run_pipe, args.device)
        theirs.append(s)
    diff = (a - b).abs().max().item()
    o, t = statistics.median(ours), statistics.median(theirs)
    return {
        "pipeline": name,
        "ours_s": round(o, 4),
        "diffusers_s": round(t, 4),
        "ratio": round(o / t, 3),
        "max_abs_image_diff": diff,
        "ours_runs_s": [round(x, 4) for x in ours],
        "diffusers_runs_s": [round(x, 4) for x in theirs],
    }


def loop_overhead(args, steps=200) -> dict:
    "µs per step of `sample` and of the pipelines' bare loop, with a model that costs nothing: the price of the extras."
    model, shape = (lambda x, t: x * 0.1), (args.batch, 1, 32, 32)

    def bare():
        s = diffusers.DDIMScheduler()
        s.set_timesteps(steps)
        x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            for t in s.timesteps:
                x = s.step(model(x, t), t, x).prev_sample
        return x.clip(-1, 1)

    ours = lambda: sample(
        model,
        diffusers.DDIMScheduler(),
        shape,
        num_inference_steps=steps,
        generator=torch.Generator().manual_seed(0),
        progress=False,
    )
    a = statistics.median(timed(ours, "cpu")[0] for _ in range(5))
    b = statistics.median(timed(bare, "cpu")[0] for _ in range(5))
    return {"sample_us_per_step": round(a / steps * 1e6, 1), "bare_loop_us_per_step": round(b / steps * 1e6, 1)}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    unet = fashion_unet(args.device)
    rows = [
        compare("DDPMPipeline", diffusers.DDPMPipeline, diffusers.DDPMScheduler, unet, args),
        compare("DDIMPipeline", diffusers.DDIMPipeline, diffusers.DDIMScheduler, unet, args),
    ]
    clock = "CPU time" if torch.device(args.device).type == "cpu" else "wall time"
    print(
        f"batch {args.batch}, {args.steps} steps, median {clock} of {args.repeats} runs, device {args.device}, "
        f"torch threads {torch.get_num_threads()}"
    )
    print(f"{'vs':<14}{'ours (s)':>10}{'diffusers (s)':>15}{'ratio':>8}{'max |diff|':>12}")
    for r in rows:
        print(
            f"{r['pipeline']:<14}{r['ours_s']:>10.3f}{r['diffusers_s']:>15.3f}{r['ratio']:>8.3f}"
            f"{r['max_abs_image_diff']:>12.1e}"
        )
    overhead = loop_overhead(args)
    print(
        f"loop cost per step with a free model: sample {overhead['sample_us_per_step']} µs, "
        f"bare pipeline loop {overhead['bare_loop_us_per_step']} µs"
    )
    RESULTS.parent.mkdir(exist_ok=True)
    meta = {
        "batch": args.batch,
        "steps": args.steps,
        "repeats": args.repeats,
        "device": args.device,
        "torch_threads": torch.get_num_threads(),
        "clock": "process CPU time" if torch.device(args.device).type == "cpu" else "wall time",
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "machine": platform.processor() or platform.machine(),
        "unet_params": sum(q.numel() for q in unet.parameters()),
    }
    RESULTS.write_text(json.dumps({"settings": meta, "results": rows, "loop_overhead": overhead}, indent=1) + "\n")
    print(f"wrote {RESULTS.relative_to(Path.cwd()) if RESULTS.is_relative_to(Path.cwd()) else RESULTS}")


if __name__ == "__main__":
    main()
