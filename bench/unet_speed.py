"""CPU training speed of `genaibook.unets.SmallUNet` against a diffusers `UNet2DModel` of about the same size.

Forward + backward images per second at batch 64 on random images (class-conditioned, 10 classes), at 28 and 32 px,
for two size classes. Models are timed in interleaved rounds (ABAB...), and the median round is reported, so load
changes on a shared machine affect both alike; process CPU time is reported too, as it is steadier under load.
The ratio is SmallUNet images/s over UNet2DModel images/s. The UNet2DModels are the course's Fashion-MNIST UNet
(`genaibook.recipes.FASHION_UNET`) with other widths, class-conditioned, one with attention in its innermost blocks.

Offline mode is switched on for you (`genaibook.offline.use_offline_cache`: HF_HUB_OFFLINE=1 and the course's
stand-in cache, unless those variables are set), so no variables need exporting.

Usage: python bench/unet_speed.py [--rounds 3] [--steps 2] [--batch-size 64]
Writes bench/results/unet_speed.json.
"""

# ruff: noqa: E402 (the imports after use_offline_cache() come after it on purpose)
import argparse
import json
import os
import statistics
import time
from pathlib import Path

from genaibook.offline import use_offline_cache

use_offline_cache()  # before diffusers or datasets is imported: they read HF_HUB_OFFLINE and HF_HOME once

import torch
from diffusers import UNet2DModel

from genaibook.recipes import FASHION_UNET
from genaibook.unets import SmallUNet, train_step_fn

RESULTS = Path(__file__).parent / "results" / "unet_speed.json"


def diffusers_unet(widths, attention):
    n = len(widths)
    down = ("DownBlock2D",) * (n - 1) + ("AttnDownBlock2D" if attention else "DownBlock2D",)
    up = ("AttnUpBlock2D" if attention else "UpBlock2D",) + ("UpBlock2D",) * (n - 1)
    return UNet2DModel(
        **{
            **FASHION_UNET,
            "block_out_channels": widths,
            "down_block_types": down,
            "up_block_types": up,
            "num_class_embeds": 11,
        }
    )


PAIRS = {  # name: (SmallUNet kwargs, UNet2DModel factory); parameter counts within about 10%
    "~0.65M params": (dict(widths=(16, 32, 80)), lambda: diffusers_unet((16, 32, 64), attention=False)),
    "~1.1M params": (dict(widths=(32, 64, 96)), lambda: diffusers_unet((32, 64, 64), attention=True)),
}


def measure(rounds=3, steps=2, batch_size=64):
    torch.manual_seed(0)
    rows = []
    for name, (ours_kw, theirs) in PAIRS.items():
        models = {"SmallUNet": SmallUNet(num_classes=10, **ours_kw), "UNet2DModel": theirs()}
        for size in (28, 32):
            steps_fns = {k: train_step_fn(m, size, batch_size, num_classes=10) for k, m in models.items()}
            for f in steps_fns.values():
                f()  # warm-up
            times, cpu = {k: [] for k in models}, {k: [] for k in models}
            for _ in range(rounds):
                for k, f in steps_fns.items():
                    t0, c0 = time.perf_counter(), time.process_time()
                    for _ in range(steps):
                        f()
                    times[k].append((time.perf_counter() - t0) / steps)
                    cpu[k].append((time.process_time() - c0) / steps)
            ips = {k: batch_size / statistics.median(v) for k, v in times.items()}
            ips_cpu = {k: batch_size / statistics.median(v) for k, v in cpu.items()}
            rows.append(
                {
                    "pair": name,
                    "size": size,
                    "params": {k: sum(p.numel() for p in m.parameters()) for k, m in models.items()},
                    "images_per_s": ips,
                    "images_per_cpu_s": ips_cpu,
                    "ratio": ips["SmallUNet"] / ips["UNet2DModel"],
                    "ratio_by_cpu_time": ips_cpu["SmallUNet"] / ips_cpu["UNet2DModel"],
                    "seconds_per_step": times,
                    "cpu_seconds_per_step": cpu,
                }
            )
    return rows


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    a = p.parse_args()
    rows = measure(a.rounds, a.steps, a.batch_size)
    print(
        f"forward+backward, batch {a.batch_size}, {torch.get_num_threads()} CPU thread(s), median of {a.rounds} rounds"
    )
    print(
        "img/s: by wall time; img/CPU-s: by process CPU time (steadier on a busy machine); "
        "ratio: SmallUNet / UNet2DModel"
    )
    print(
        f"{'size class':<15}{'px':>4}{'SmallUNet params':>18}{'img/s':>7}{'img/CPU-s':>10}{'UNet2DModel params':>20}"
        f"{'img/s':>7}{'img/CPU-s':>10}{'ratio':>7}{'(CPU)':>7}"
    )
    for r in rows:
        print(
            f"{r['pair']:<15}{r['size']:>4}{r['params']['SmallUNet']:>18,}{r['images_per_s']['SmallUNet']:>7.1f}"
            f"{r['images_per_cpu_s']['SmallUNet']:>10.1f}{r['params']['UNet2DModel']:>20,}"
            f"{r['images_per_s']['UNet2DModel']:>7.1f}"
            f"{r['images_per_cpu_s']['UNet2DModel']:>10.1f}{r['ratio']:>7.2f}{r['ratio_by_cpu_time']:>7.2f}"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "batch_size": a.batch_size,
                "threads": torch.get_num_threads(),
                "torch": torch.__version__,
                "load_average": os.getloadavg(),
                "rounds": a.rounds,
                "rows": rows,
            },
            indent=1,
        )
        + "\n"
    )
    print(f"wrote {RESULTS}")
