"""Chapter 6 on a CPU: LoRA against full fine-tuning of the real SmolLM2-135M-Instruct (step time and peak memory, as
ratios from one run), and greedy decoding speed of the model in float32, bfloat16, int8 and 4-bit NF4 (bitsandbytes).

Training: each round trains a fresh pretrained model in a new Python process (`genaibook.memory.measure_peak_rss`, so
the peak memory is that of the training alone) for `--steps` AdamW steps on batches of 8 of Debian fortunes'
`computers` quotes (`genaibook.finetune.fortune_topics`); the first step (optimizer state allocation) is not timed.
Full fine-tuning (lr 5e-5) and LoRA (r=8, alpha=32 on q_proj and v_proj, lr 5e-4: the chapter's settings) alternate
over `--rounds` rounds, so load changes on a shared machine hit both alike; medians are reported.

Decoding: the prompt "The first computers were", exactly `--tokens` new tokens, greedy; the four precisions alternate
over `--rounds` rounds; medians in tokens/s.

Usage: python bench/finetune.py [--threads 2] [--steps 6] [--tokens 32] [--rounds 2]
Writes bench/results/finetune.json.
"""

import argparse
import json
import logging
import platform
import statistics
import time
from pathlib import Path

from genaibook.offline import quiet_libraries, use_offline_cache

HOME = use_offline_cache()  # before any Hugging Face library is imported
REPO_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
RESULTS = Path(__file__).parent / "results" / "finetune.json"

TRAIN_SETUP = """
import time, torch
from genaibook.finetune import fortune_topics
from genaibook.offline import quiet_libraries, use_offline_cache
use_offline_cache()
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer
torch.manual_seed(0)
tokenizer = AutoTokenizer.from_pretrained("{repo}")
texts = list(fortune_topics(max_per_topic=None)["train"].filter(lambda r: r["label"] == 0)["text"])
batches = [tokenizer(texts[i : i + 8], padding=True, return_tensors="pt") for i in range(0, 8 * {steps}, 8)]
with quiet_libraries():
    model = AutoModelForCausalLM.from_pretrained("{repo}", dtype=torch.float32)
"""

TRAIN_CODE = """
if {lora}:
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=32, lora_dropout=0.05, task_type="CAUSAL_LM"))
params = [p for p in model.parameters() if p.requires_grad]
optimizer = torch.optim.AdamW(params, lr={lr}, weight_decay=0.1)
model.train()
seconds = []
for batch in batches:
    start = time.perf_counter()
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    model(**batch, labels=labels).loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    seconds.append(time.perf_counter() - start)
result = {{"step_seconds": seconds[1:], "trainable": sum(p.numel() for p in params)}}
"""


def train_round(lora: bool, steps: int, threads: int) -> dict:
    "One training run in a fresh process: median step seconds (first step excluded), peak MB, trainable params."
    from genaibook.memory import measure_peak_rss

    out = measure_peak_rss(
        TRAIN_CODE.format(lora=lora, lr=5e-4 if lora else 5e-5),
        setup=TRAIN_SETUP.format(repo=REPO_ID, steps=steps),
        threads=threads,
    )
    r = out["result"]
    return {"step_s": statistics.median(r["step_seconds"]), "peak_mb": out["peak"] / 1e6, "trainable": r["trainable"]}


def decode_speeds(tokens: int, rounds: int) -> dict:
    "Median greedy tokens/s per precision, the precisions alternating over the rounds."
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    kinds = {
        "float32": {"dtype": torch.float32},
        "bfloat16": {"dtype": torch.bfloat16},
        "int8": {"quantization_config": BitsAndBytesConfig(load_in_8bit=True)},
        "nf4": {"quantization_config": BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4")},
    }
    with quiet_libraries():
        tokenizer = AutoTokenizer.from_pretrained(REPO_ID)
        models = {k: AutoModelForCausalLM.from_pretrained(REPO_ID, **kw).eval() for k, kw in kinds.items()}
    ids = tokenizer("The first computers were", return_tensors="pt")
    speeds = {k: [] for k in kinds}
    for _ in range(rounds):
        for name, model in models.items():
            start = time.perf_counter()
            with torch.inference_mode():
                model.generate(**ids, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False)
            speeds[name].append(tokens / (time.perf_counter() - start))
    footprints = {k: round(m.get_memory_footprint() / 1e6, 1) for k, m in models.items()}
    return {
        k: {"tokens_per_s": round(statistics.median(v), 2), "footprint_mb": footprints[k]} for k, v in speeds.items()
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--tokens", type=int, default=32)
    p.add_argument("--rounds", type=int, default=2)
    a = p.parse_args()
    import torch

    torch.set_num_threads(a.threads)
    runs = {"full": [], "lora": []}
    for _ in range(a.rounds):
        for kind in runs:
            runs[kind].append(train_round(kind == "lora", a.steps, a.threads))
            print(kind, runs[kind][-1], flush=True)
    train = {
        kind: {
            "step_s": round(statistics.median(r["step_s"] for r in rs), 3),
            "peak_mb": round(statistics.median(r["peak_mb"] for r in rs), 1),
            "trainable": rs[0]["trainable"],
        }
        for kind, rs in runs.items()
    }
    decode = decode_speeds(a.tokens, a.rounds)
    result = {
        "what": "SmolLM2-135M-Instruct (real weights) on a CPU: LoRA vs full fine-tuning, and decoding per precision",
        "machine": platform.processor() or platform.machine(),
        "torch_threads": a.threads,
        "args": vars(a),
        "training": train,
        "lora_vs_full": {
            "step_time_ratio": round(train["lora"]["step_s"] / train["full"]["step_s"], 3),
            "peak_memory_ratio": round(train["lora"]["peak_mb"] / train["full"]["peak_mb"], 3),
            "trainable_ratio": round(train["lora"]["trainable"] / train["full"]["trainable"], 5),
        },
        "decoding": decode,
        "decode_speed_vs_float32": {
            k: round(v["tokens_per_s"] / decode["float32"]["tokens_per_s"], 3) for k, v in decode.items()
        },
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
