"""Chapter 2's from-scratch `generate_text` against transformers' `model.generate`, on the real SmolLM2-135M-Instruct.

Greedy decoding of the same prompt, the same number of new tokens, four ways: ours and transformers', each with the
key-value cache and without it. Runs alternate between the four so that changes in machine load hit all of them;
the median of `--repeats` runs is reported as new tokens per second, with the ratios ours / transformers'. The
bench first checks that all four produce the same tokens. Times are wall time on `--threads` threads (default 2):
run it on an otherwise quiet machine.

Offline mode is switched on for you (the course's stand-in cache, see `genaibook.offline`), so no variables need
exporting.

Usage: python bench/generate_speed.py [--new-tokens 48] [--repeats 3] [--threads 2] [--dtype float32]
Writes bench/results/generate_speed.json.
"""

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "generate_speed.json"
MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
PROMPT = "It was a dark and stormy"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--new-tokens", type=int, default=48, help="tokens to generate per run")
    p.add_argument("--repeats", type=int, default=3, help="runs of each variant; the median is reported")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    p.add_argument("--out", type=Path, default=RESULTS, help="where to write the JSON results")
    args = p.parse_args(argv)
    if args.new_tokens < 1 or args.repeats < 1 or args.threads < 1:
        p.error("--new-tokens, --repeats and --threads must be positive")
    return args


def variants(model, tokenizer, input_ids, new_tokens: int) -> dict:
    "The four ways to decode greedily, each a function of no arguments returning [1, T + new_tokens] ids."
    from genaibook.text import generate_text

    total = input_ids.shape[1] + new_tokens
    pad = tokenizer.eos_token_id
    # min_new_tokens: the same number of tokens every time, even if the model would stop at its end-of-turn token
    hf = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, pad_token_id=pad)
    return {
        "ours, KV cache": lambda: generate_text(model, tokenizer, input_ids, max_length=total, use_cache=True),
        "ours, no cache": lambda: generate_text(model, tokenizer, input_ids, max_length=total, use_cache=False),
        "transformers, KV cache": lambda: model.generate(input_ids, use_cache=True, **hf),
        "transformers, no cache": lambda: model.generate(input_ids, use_cache=False, **hf),
    }


def main(argv=None) -> dict:
    args = parse_args(argv)
    from genaibook.offline import use_offline_cache

    use_offline_cache()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(args.threads)
    tokenizer = AutoTokenizer.from_pretrained(MODEL_ID)
    model = AutoModelForCausalLM.from_pretrained(MODEL_ID, dtype=getattr(torch, args.dtype)).eval()
    input_ids = tokenizer(PROMPT, return_tensors="pt").input_ids
    runs = variants(model, tokenizer, input_ids, args.new_tokens)
    with torch.inference_mode():
        outputs = {name: fn() for name, fn in runs.items()}  # warm-up, and the check that all four agree
        n_ours = outputs["ours, KV cache"].shape[1] - input_ids.shape[1]
        same = all(
            out[0, : input_ids.shape[1] + n_ours].tolist() == outputs["ours, KV cache"][0].tolist()
            for out in outputs.values()
        )
        seconds = {name: [] for name in runs}
        for _ in range(args.repeats):
            for name, fn in runs.items():
                t0 = time.perf_counter()
                out = fn()
                seconds[name].append((time.perf_counter() - t0, out.shape[1] - input_ids.shape[1]))
    rate = {name: statistics.median(n / s for s, n in times) for name, times in seconds.items()}
    result = {
        "model": MODEL_ID,
        "dtype": args.dtype,
        "threads": args.threads,
        "new_tokens": args.new_tokens,
        "repeats": args.repeats,
        "same_tokens": same,
        "ours_stopped_after": n_ours,
        "tokens_per_s": {name: round(r, 1) for name, r in rate.items()},
        "ratio_ours_to_transformers": {
            "KV cache": round(rate["ours, KV cache"] / rate["transformers, KV cache"], 3),
            "no cache": round(rate["ours, no cache"] / rate["transformers, no cache"], 3),
        },
        "cache_speedup": {
            "ours": round(rate["ours, KV cache"] / rate["ours, no cache"], 2),
            "transformers": round(rate["transformers, KV cache"] / rate["transformers, no cache"], 2),
        },
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
