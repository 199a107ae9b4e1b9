"""Chapter 7 on a CPU: the course's Stable Diffusion trainer (`genaibook.sd_finetune`, built on `Learner`) against a
plain training loop written as diffusers' `train_text_to_image.py` writes it (Accelerator, `accelerator.accumulate`,
`EMAModel`, the loss gathered and read every step), and the peak memory of LoRA against full fine-tuning.

Step time: both train the UNet of the Stable Diffusion stand-in (SD 1.5's layout, 8-16 channels) on the same 8
captioned pictures at the same resolution and batch size, with EMA, AdamW and gradient clipping, the VAE and text
encoder frozen; each round builds both afresh and times `--steps` steps after one warm-up step; the two alternate
over `--rounds` rounds so load changes on a shared machine hit both alike. Reported: medians, and
`plain_over_course` = plain step time / course step time (≥ 1 means the course's trainer is at least as fast).

Peak memory: full fine-tuning vs LoRA (rank 4 on to_q, to_k, to_v, to_out.0) of a UNet with SD 1.5's blocks at
2/5 of its widths (block_out_channels 128-512: 137M parameters against 860M, random weights), each trained for 3
AdamW steps on one 32x32 latent in a fresh process (`genaibook.memory.measure_peak_rss`): the peak RSS above the
process's baseline.

Usage: python bench/sd_finetune.py [--threads 1] [--steps 8] [--rounds 3] [--batch 4] [--resolution 64]
Writes bench/results/sd_finetune.json (or --out).
"""

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

from genaibook.offline import use_offline_cache

HOME = use_offline_cache()  # before any Hugging Face library is imported
SD = "stable-diffusion-v1-5/stable-diffusion-v1-5"
RESULTS = Path(__file__).parent / "results" / "sd_finetune.json"


def pictures(folder: Path, n: int = 8) -> Path:
    "n real photos (crops of scikit-image's astronaut) with captions, as an imagefolder."
    from PIL import Image
    from skimage.data import astronaut

    from genaibook.sd_finetune import write_imagefolder

    photo = Image.fromarray(astronaut())
    crops = [photo.crop((16 * i, 16 * i, 16 * i + 384, 16 * i + 384)) for i in range(n)]
    return write_imagefolder(crops, [f"an astronaut, view {i}" for i in range(n)], folder)


def args_for(data: Path, out: Path, a, steps: int):
    from genaibook.sd_finetune import FineTuneArgs

    return FineTuneArgs(
        pretrained_model_name_or_path=SD,
        train_data_dir=str(data),
        resolution=a.resolution,
        center_crop=True,
        train_batch_size=a.batch,
        use_ema=True,
        learning_rate=1e-4,
        max_train_steps=steps,
        checkpointing_steps=10**6,
        output_dir=str(out),
        device="cpu",
        progress=False,
    )


class StepClock:
    "Learner callback: the time of every step's end."

    def __init__(self):
        self.times = []

    def before_fit(self, learner):
        self.times.append(time.perf_counter())

    def after_step(self, learner):
        self.times.append(time.perf_counter())


def course_steps(data: Path, a) -> list[float]:
    "Seconds per step of `genaibook.sd_finetune` (one warm-up step left out)."
    from genaibook.sd_finetune import make_learner

    learner = make_learner(args_for(data, Path(tempfile.mkdtemp()), a, a.steps + 1))
    learner.ckpt_path = None  # no checkpoint writing in the timed steps (the plain loop writes none either)
    clock = StepClock()
    learner.callbacks.append(clock)
    learner.fit(steps=a.steps + 1)
    gaps = [b - s for s, b in zip(clock.times, clock.times[1:])]
    return gaps[1:]


def plain_steps(data: Path, a) -> list[float]:
    "Seconds per step of a loop written as diffusers' train_text_to_image.py (one warm-up step left out)."
    import torch
    import torch.nn.functional as F
    from accelerate import Accelerator
    from diffusers import DDPMScheduler, DiffusionPipeline
    from diffusers.training_utils import EMAModel

    from genaibook.sd_finetune import load_imagefolder, train_transform

    torch.manual_seed(0)
    accelerator = Accelerator(gradient_accumulation_steps=1, mixed_precision="no", cpu=True)
    pipe = DiffusionPipeline.from_pretrained(SD)
    unet, vae, text_encoder = pipe.unet, pipe.vae.requires_grad_(False), pipe.text_encoder.requires_grad_(False)
    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    ema_unet = EMAModel(unet.parameters(), model_cls=type(unet), model_config=unet.config)
    transform = train_transform(a.resolution, True)

    def preprocess_train(examples):  # as the script: images transformed and captions tokenized at every access
        ids = pipe.tokenizer(
            examples["text"],
            max_length=pipe.tokenizer.model_max_length,
            padding="max_length",
            truncation=True,
            return_tensors="pt",
        ).input_ids
        return {"pixel_values": [transform(im.convert("RGB")) for im in examples["image"]], "input_ids": ids}

    dataset = load_imagefolder(data).with_transform(preprocess_train)

    def collate_fn(examples):
        return {
            "pixel_values": torch.stack([e["pixel_values"] for e in examples]).float(),
            "input_ids": torch.stack([e["input_ids"] for e in examples]),
        }

    dl = torch.utils.data.DataLoader(dataset, batch_size=a.batch, shuffle=True, collate_fn=collate_fn)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=1e-4, weight_decay=1e-2)
    lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    unet, optimizer, dl, lr_scheduler = accelerator.prepare(unet, optimizer, dl, lr_scheduler)
    unet.train()
    times, train_loss = [time.perf_counter()], 0.0
    while len(times) <= a.steps + 1:
        for batch in dl:
            with accelerator.accumulate(unet):
                latents = vae.encode(batch["pixel_values"]).latent_dist.sample() * vae.config.scaling_factor
                noise = torch.randn_like(latents)
                t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (len(latents),))
                noisy = noise_scheduler.add_noise(latents, noise, t)
                hidden = text_encoder(batch["input_ids"], return_dict=False)[0]
                pred = unet(noisy, t, hidden, return_dict=False)[0]
                loss = F.mse_loss(pred.float(), noise.float(), reduction="mean")
                avg_loss = accelerator.gather(loss.repeat(a.batch)).mean()
                train_loss += avg_loss.item()
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(unet.parameters(), 1.0)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad()
            if accelerator.sync_gradients:
                ema_unet.step(unet.parameters())
                times.append(time.perf_counter())
            if len(times) > a.steps + 1:
                break
    gaps = [b - s for s, b in zip(times, times[1:])]
    return gaps[1:]


MEMORY_SETUP = """
import torch
from genaibook.offline import use_offline_cache
use_offline_cache()
from diffusers import UNet2DConditionModel
from genaibook.sd_finetune import add_unet_lora, make_optimizer
torch.manual_seed(0)
unet = UNet2DConditionModel(block_out_channels=(128, 256, 512, 512), cross_attention_dim=256)
x, t, text = torch.randn(1, 4, 32, 32), torch.tensor([500]), torch.randn(1, 77, 256)
"""

MEMORY_CODE = """
if {lora}:
    add_unet_lora(unet, rank=4)
opt = make_optimizer()(unet.parameters(), lr=1e-4)
for _ in range(3):
    unet(x, t, text).sample.pow(2).mean().backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
result = {{"trainable": sum(p.numel() for p in unet.parameters() if p.requires_grad),
          "params": sum(p.numel() for p in unet.parameters())}}
"""


def peak_memory(lora: bool, threads: int) -> dict:
    from genaibook.memory import measure_peak_rss

    out = measure_peak_rss(MEMORY_CODE.format(lora=lora), setup=MEMORY_SETUP, threads=threads)
    return {"peak_mb": round(out["peak"] / 1e6, 1), **out["result"]}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--out", type=Path, default=RESULTS)
    a = p.parse_args()
    import torch
    from diffusers.utils import logging as diffusers_logging

    from genaibook.offline import quiet_libraries

    torch.set_num_threads(a.threads)
    diffusers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()
    data = pictures(Path(tempfile.mkdtemp()) / "data")
    runs = {"course": [], "plain": []}
    with quiet_libraries():
        for _ in range(a.rounds):
            runs["course"] += course_steps(data, a)
            runs["plain"] += plain_steps(data, a)
            print({k: round(statistics.median(v), 4) for k, v in runs.items()}, flush=True)
    step = {k: round(statistics.median(v), 4) for k, v in runs.items()}
    memory = {kind: peak_memory(kind == "lora", a.threads) for kind in ("full", "lora")}
    result = {
        "what": "genaibook.sd_finetune vs a diffusers-script-style loop (step time, SD 1.5 stand-in UNet), "
        "and LoRA vs full fine-tuning peak memory (SD 1.5 blocks at 2/5 width, 137M parameters)",
        "machine": platform.processor() or platform.machine(),
        "torch_threads": a.threads,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(a).items() if k != "out"},
        "step_seconds": step,
        "plain_over_course": round(step["plain"] / step["course"], 3),
        "memory": memory,
        "lora_over_full_peak_memory": round(memory["lora"]["peak_mb"] / memory["full"]["peak_mb"], 3),
        "lora_over_full_trainable": round(memory["lora"]["trainable"] / memory["full"]["trainable"], 5),
    }
    a.out.parent.mkdir(exist_ok=True, parents=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
