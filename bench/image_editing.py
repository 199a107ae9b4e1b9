"""Chapter 8 on a CPU: how long each editing technique of `genaibook.image_editing` takes on chapter 5's trained
class-conditioned Fashion-MNIST UNet (`trained_recipe_model("ch5-cpu")`), for a batch of real test images.

Each technique edits the same `--n` real test images with `--steps` DDIM steps for a full schedule: SDEdit at
strength 0.5 with guidance 3, mask-blended inpainting of the lower half (plain, and with RePaint resampling ×4),
DDIM inversion followed by regeneration (guidance 1), blended guidance of two classes, and one forward pass of the
UNet with and without a (fresh) MiniControlNet attached. Techniques alternate over `--rounds` rounds, so load
changes on a shared machine hit all alike; medians are reported, in seconds per batch.

Usage: python bench/image_editing.py [--threads 1] [--n 64] [--steps 25] [--rounds 2]
Writes bench/results/image_editing.json.
"""

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

from genaibook.offline import use_offline_cache

use_offline_cache()  # before any Hugging Face library is imported
RESULTS = Path(__file__).parent / "results" / "image_editing.json"


def techniques(model, ddim, null, images, labels, steps):
    "name -> a function running that technique once on the batch."
    import torch

    from genaibook.image_editing import (
        ControlledUNet,
        blend_predictor,
        ddim_invert,
        denoise,
        inpaint,
        regenerate,
        sdedit,
        strength_timesteps,
    )

    hole = torch.zeros(32, 32)
    hole[16:] = 1
    controlled = ControlledUNet(model).eval()
    edges = (torch.rand(images.shape, generator=torch.Generator().manual_seed(0)) > 0.85).float()
    t = torch.full((len(images),), 500)
    target = (labels + 1) % 10

    def g():
        return torch.Generator().manual_seed(0)

    def forward(net, **kw):
        with torch.inference_mode():
            net(images, t, labels, **kw)

    return {
        "SDEdit (strength 0.5, w = 3)": lambda: sdedit(model, ddim, images, 0.5, steps, target, 3.0, null, g()),
        "inpaint lower half": lambda: inpaint(model, ddim, images, hole, steps, class_labels=labels, generator=g()),
        "inpaint + RePaint ×4": lambda: inpaint(
            model, ddim, images, hole, steps, resample=4, class_labels=labels, generator=g()
        ),
        "DDIM invert + regenerate": lambda: regenerate(
            model, ddim, ddim_invert(model, ddim, images, steps, class_labels=labels), steps, class_labels=labels
        ),
        "blend 2 classes (w = 3)": lambda: denoise(
            blend_predictor(model, [7, 9], [0.5, 0.5], len(images), 3.0, null),
            ddim,
            torch.randn(images.shape, generator=g()),
            strength_timesteps(ddim, steps, 1.0),
        ),
        "UNet forward": lambda: forward(model),
        "UNet + MiniControlNet forward": lambda: forward(controlled, control=edges),
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--n", type=int, default=64, help="images per batch")
    p.add_argument("--steps", type=int, default=25, help="DDIM steps of a full schedule")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args()

    import torch

    from genaibook.recipes import fashion_mnist_32_tensors, trained_recipe_model

    torch.set_num_threads(args.threads)
    model, ddim, null = trained_recipe_model("ch5-cpu")
    images, labels = fashion_mnist_32_tensors("test", n=args.n)
    runs = techniques(model, ddim, null, images, labels, args.steps)
    times = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, fn in runs.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    result = {
        "setting": vars(args) | {"out": str(args.out.name)},
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "seconds per batch (median)": {k: round(statistics.median(v), 3) for k, v in times.items()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    for k, v in result["seconds per batch (median)"].items():
        print(f"{k:32s} {v:8.3f} s")


if __name__ == "__main__":
    main()
