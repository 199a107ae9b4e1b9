"""MinImagen's super-resolution stage: predicting the noise (MinImagen) against predicting v, measured by PSNR.

For each objective, a fresh 16 -> 32 px super-resolution U-Net (`genaibook.minimagen.Unet(dim=16, lowres_cond=True)`)
is trained for `--steps` steps (batch 16, AdamW 2e-3 one-cycle, gradient clipping 1.0, seed 0) on `make_shapes(4000)`
with captions encoded by the real all-MiniLM-L6-v2, then samples the 32 px version of `--n-test` held-out images from
their real 16 px versions (guidance 1, the sampling-time augmentation level 0.2·T, T = 50). Reported: PSNR against the
real 32 px images, the judges' caption accuracy, and bicubic upsampling's PSNR as the reference.

Usage: OMP_NUM_THREADS=1 python bench/minimagen.py [--steps 500] [--n-test 32] [--objectives noise,v]
Writes bench/results/minimagen.json.
"""

import argparse
import json
import platform
import time
from pathlib import Path

from genaibook.offline import use_offline_cache

HOME = use_offline_cache()  # before any Hugging Face library is imported
RESULTS = Path(__file__).parent / "results" / "minimagen.json"


def psnr(a, b) -> float:
    "Mean PSNR in dB between image batches in [0, 1]."
    import torch

    return (10 * torch.log10(1 / ((a - b) ** 2).flatten(1).mean(1).clamp(min=1e-10))).mean().item()


def train_and_measure(objective: str, steps: int, n_test: int, encoder) -> dict:
    "Train a super-resolution U-Net with `objective` and measure its PSNR and caption accuracy on held-out images."
    import torch

    from genaibook.minimagen import Imagen, Unet, caption_accuracy, make_shapes, p_sample_loop, resize_image_to

    images, captions = make_shapes(4000, 32, seed=0)
    embeds, masks = encoder(captions)
    test, test_captions = make_shapes(n_test, 32, seed=1)
    torch.manual_seed(0)
    unets = [Unet(dim=8, text_embed_dim=encoder.dim), Unet(dim=16, text_embed_dim=encoder.dim, lowres_cond=True)]
    imagen = Imagen(
        unets, image_sizes=(16, 32), timesteps=50, text_encoder=encoder, pred_objectives=("noise", objective)
    )
    sr = imagen.unets[1]
    opt = torch.optim.AdamW(sr.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
    g, losses, t0 = torch.Generator().manual_seed(0), [], time.perf_counter()
    for _ in range(steps):
        idx = torch.randint(0, len(images), (16,), generator=g)
        loss = imagen(images[idx], embeds[idx], masks[idx], unet_number=2)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(sr.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
    train_s = time.perf_counter() - t0
    low = resize_image_to(test, 16)
    e, m = encoder(test_captions)
    imagen.eval()
    out = p_sample_loop(
        imagen, 1, tuple(test.shape), e, m, 1.0, lowres_images=low * 2 - 1, generator=torch.Generator().manual_seed(3)
    )
    out = (out.clamp(-1, 1) + 1) / 2
    bicubic = torch.nn.functional.interpolate(low, size=32, mode="bicubic", align_corners=False).clamp(0, 1)
    return {
        "objective": objective,
        "final_loss_mean_last_50": round(sum(losses[-50:]) / len(losses[-50:]), 4),
        "psnr_db": round(psnr(out, test), 2),
        "bicubic_psnr_db": round(psnr(bicubic, test), 2),
        "caption_accuracy": {k: round(v, 3) for k, v in caption_accuracy(out, test_captions).items()},
        "train_seconds": round(train_s, 1),
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--n-test", type=int, default=32)
    p.add_argument("--objectives", default="noise,v")
    args = p.parse_args()
    import torch

    from genaibook.minimagen import TextEncoder

    encoder = TextEncoder()
    rows = [train_and_measure(o, args.steps, args.n_test, encoder) for o in args.objectives.split(",")]
    for r in rows:
        print(
            f"{r['objective']:>6}: PSNR {r['psnr_db']:.2f} dB (bicubic {r['bicubic_psnr_db']:.2f}), {r['caption_accuracy']}"
        )
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "steps": args.steps,
                "n_test": args.n_test,
                "rows": rows,
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "machine": platform.machine(),
            },
            indent=1,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
