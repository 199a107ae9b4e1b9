"""Chapter 5's class-conditioned Fashion-MNIST model: class accuracy and FID against the classifier-free guidance scale.

Loads the sampling model that nbs/05_stable_diffusion.ipynb saves in `run_dir("ch5-cpu")/sample_model` (diffusers'
`save_pretrained`: the EMA UNet and its training scheduler). With `--train`, a missing model is first trained with the
notebook's CPU recipe, `genaibook.recipes.CH5_CPU` (its data pipeline `fashion_mnist_32`, `Learner` + `DiffusionLoss`,
checkpoints in the same folder, so an interrupted run resumes).

For each guidance scale it samples `--per-class` images of every class with `--steps` DDIM steps (same seed for
every scale; the sampler is the recipe's `make_sampler()` when `--run` names a recipe of `genaibook.recipes.RECIPES`,
else the scheduler saved with the model, without x̂0 clipping), and reports:
- class accuracy: the share of samples that `genaibook.metrics.fashion_classifier()` (an independent CNN trained on
  the real training split) assigns to the class they were generated for, overall and per class;
- FID on that classifier's features against `--n-ref` real training images (comparable only between runs with the
  same sample count).
A first row scores `--per-class` real test images of each class the same way: the judge's own ceiling.

Offline mode is switched on for you (`genaibook.offline.use_offline_cache`: HF_HUB_OFFLINE=1 and the course's
stand-in cache, unless those variables are set), so no variables need exporting.

Usage: OMP_NUM_THREADS=2 python bench/class_accuracy.py [--run ch5-cpu] [--per-class 20] [--steps 25]
       [--scales 1,2,3,5] [--spacing leading] [--train]
Writes bench/results/class_accuracy.json.
"""

# ruff: noqa: E402 (the imports after use_offline_cache() come after it on purpose)
import argparse
import json
import os
import platform
import time
from pathlib import Path

from genaibook.offline import use_offline_cache

use_offline_cache()  # before diffusers or datasets is imported: they read HF_HUB_OFFLINE and HF_HOME once

import diffusers
import torch

from genaibook.core import get_device
from genaibook.metrics import FID, FASHION_CLASSES, fashion_classifier, load_fashion_mnist_tensors, predict_classes
from genaibook.recipes import CH5_CPU, RECIPES, load_recipe_model, train_recipe
from genaibook.sampling import sample
from genaibook.train import run_dir

RESULTS = Path(__file__).resolve().parent / "results" / "class_accuracy.json"


def training_info(folder: Path) -> dict:
    "Steps and training time recorded in the run's last checkpoint, if there is one."
    ckpt = folder / "last.pt"
    if not ckpt.exists():
        return {}
    ck = torch.load(ckpt, map_location="cpu", weights_only=False)
    return {
        "train_steps": ck["step"],
        "train_minutes": round(ck["elapsed"] / 60, 2),
        "final_loss_mean_last_50": round(sum(ck["history"]["loss"][-50:]) / len(ck["history"]["loss"][-50:]), 5),
    }


def measure(images, labels, judge, fid, name, seconds=None) -> dict:
    hit = (predict_classes(images, judge) == labels).float()
    per_class = torch.zeros(10).index_add_(0, labels, hit) / torch.bincount(labels, minlength=10).clamp(min=1)
    return {
        "samples": name,
        "class_accuracy": round(hit.mean().item(), 4),
        "fid": round(fid(images), 3),
        "seconds": None if seconds is None else round(seconds, 1),
        "per_class": {c: round(a, 3) for c, a in zip(FASHION_CLASSES, per_class.tolist())},
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", default="ch5-cpu", help="run_dir name the notebook trained into")
    p.add_argument("--per-class", type=int, default=20)
    p.add_argument("--steps", type=int, default=CH5_CPU.sample_steps)
    p.add_argument("--scales", default="1,2,3,5")
    p.add_argument("--n-ref", type=int, default=5000)
    p.add_argument("--seed", type=int, default=2)
    p.add_argument("--train", action="store_true")
    p.add_argument("--device", default=None)
    p.add_argument(
        "--spacing", default="leading", choices=["leading", "trailing", "linspace"], help="DDIM timestep spacing"
    )
    args = p.parse_args()
    device = torch.device(args.device) if args.device else get_device()
    recipe = RECIPES.get(args.run)  # None for a run that is not a recipe (e.g. the notebook's "ch5-book")
    folder = run_dir(args.run)
    model_dir = folder / "sample_model"
    if not model_dir.exists():
        if not args.train:
            raise SystemExit(
                f"No trained model at {model_dir}: run nbs/05_stable_diffusion.ipynb "
                "(CPU setting) first, or pass --train"
            )
        train_recipe(recipe or CH5_CPU, folder, device)
    try:
        model, ddim, null_class = load_recipe_model(model_dir, recipe, args.spacing, device)
    except ValueError as e:
        raise SystemExit(str(e)) from None
    shape = (model.config.in_channels, model.config.sample_size, model.config.sample_size)

    judge = fashion_classifier(device)
    fid = FID(load_fashion_mnist_tensors("train", n=args.n_ref)[0], features="fashion", classifier=judge)
    labels = torch.arange(10).repeat_interleave(args.per_class)
    test_images, test_labels = load_fashion_mnist_tensors("test")
    pick = torch.cat([torch.nonzero(test_labels == c)[: args.per_class, 0] for c in range(10)])
    rows = [measure(test_images[pick], test_labels[pick], judge, fid, "real test images")]
    for w in [float(s) for s in args.scales.split(",")]:
        t0 = time.perf_counter()
        images = (
            sample(
                model,
                ddim,
                (len(labels), *shape),
                num_inference_steps=args.steps,
                class_labels=labels,
                guidance_scale=w,
                uncond_label=null_class,
                generator=torch.Generator().manual_seed(args.seed),
                device=device,
                progress=False,
            )
            * 0.5
            + 0.5
        )
        rows.append(measure(images, labels, judge, fid, f"guidance {w:g}", time.perf_counter() - t0))

    print(
        f"{args.per_class} samples per class, {args.steps} DDIM steps, FID on the classifier's features vs "
        f"{args.n_ref} training images; device {device.type}, torch threads {torch.get_num_threads()}"
    )
    print(f"{'samples':<18}{'class acc.':>11}{'FID':>8}{'time (s)':>10}   worst class")
    for r in rows:
        worst = min(r["per_class"], key=r["per_class"].get)
        secs = "" if r["seconds"] is None else f"{r['seconds']:.0f}"
        print(
            f"{r['samples']:<18}{r['class_accuracy']:>11.1%}{r['fid']:>8.2f}{secs:>10}   "
            f"{worst} ({r['per_class'][worst]:.0%})"
        )
    meta = {
        "run": args.run,
        "model_dir": str(model_dir),
        **training_info(folder),
        "per_class": args.per_class,
        "ddim_steps": args.steps,
        "timestep_spacing": args.spacing,
        "clip_sample": ddim.config.clip_sample,
        "n_ref": args.n_ref,
        "seed": args.seed,
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "load_average": os.getloadavg()[0],
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "machine": platform.processor() or platform.machine(),
        "unet_params": sum(q.numel() for q in model.parameters()),
        "unet_config": dict(model.config),
        "recipe": recipe.summary() if recipe else None,
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"settings": meta, "results": rows}, indent=1, default=str) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
