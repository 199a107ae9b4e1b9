"""Retrain the Fashion-MNIST classifier that genaibook.metrics ships, and rewrite its weights.

    OMP_NUM_THREADS=2 python scripts/train_fashion_classifier.py --epochs 3 --seed 0

Writes genaibook/assets/fashion_classifier.safetensors (or --out) with the seed, epochs, test accuracy and training
time in the file's metadata. The same seed and thread count give the same weights."""

import argparse
import json
import time

import torch

from genaibook.metrics import save_classifier, train_fashion_classifier


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=4e-3)
    p.add_argument("--n-train", type=int, default=None, help="train on the first N images only (for a quick check)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=None, help="where to write the weights (default: the package's asset)")
    args = p.parse_args(argv)
    start = time.perf_counter()
    model, log = train_fashion_classifier(
        epochs=args.epochs,
        seed=args.seed,
        batch_size=args.batch_size,
        lr=args.lr,
        n_train=args.n_train,
        device=args.device,
    )
    log["total_seconds"] = time.perf_counter() - start  # includes decoding the data set and the test evaluation
    meta = {k: v for k, v in log.items() if k != "losses"} | {"torch": torch.__version__}
    path = save_classifier(model, args.out, **{k: f"{v:.4f}" if isinstance(v, float) else v for k, v in meta.items()})
    print(json.dumps(meta | {"final_loss": sum(log["losses"][-50:]) / 50, "path": str(path)}, indent=1))


if __name__ == "__main__":
    main()
