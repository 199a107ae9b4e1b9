"""bench/*.py: offline mode switched on before any Hugging Face library is imported, the UNet architecture taken from
its one home (`genaibook.recipes`), and a real bench run with no HF_* variables set."""

import ast
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from genaibook.recipes import CH5_CPU, FASHION_UNET

ROOT = Path(__file__).resolve().parents[1]
BENCHES = sorted((ROOT / "bench").glob("*.py"))
HF_LIBRARIES = {"diffusers", "transformers", "datasets", "huggingface_hub"}
# calls that load through the Hugging Face libraries (the genaibook ones call `datasets.load_dataset`)
HF_LOADS = {
    "load_dataset",
    "from_pretrained",
    "load_fashion_mnist_tensors",
    "fashion_mnist_32",
    "fashion_mnist_32_tensors",
}
# FASHION_UNET's keys that a bench may change (widths, attention blocks, class embeddings); the others never appear
UNET_OVERRIDES = {"block_out_channels", "down_block_types", "up_block_types", "num_class_embeds"}


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _module_level(tree: ast.Module):
    "The nodes that run when the module is imported: everything outside function and class bodies."
    todo = list(tree.body)
    while todo:
        node = todo.pop(0)
        yield node
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            todo.extend(ast.iter_child_nodes(node))


def _hf_import(node) -> str | None:
    "The Hugging Face library `node` imports, if it is such an import."
    names = (
        [a.name for a in node.names]
        if isinstance(node, ast.Import)
        else [node.module or ""]
        if isinstance(node, ast.ImportFrom) and node.level == 0
        else []
    )
    return next((n for n in names if n.split(".")[0] in HF_LIBRARIES), None)


def _called_name(node) -> str | None:
    if not isinstance(node, ast.Call):
        return None
    f = node.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None


def _is_offline_call(node) -> bool:
    return _called_name(node) == "use_offline_cache"


@pytest.mark.parametrize("path", BENCHES, ids=lambda p: p.name)
def test_offline_mode_comes_before_hugging_face_imports(path):
    tree = _tree(path)
    top = list(_module_level(tree))
    top_calls = sorted(n.lineno for n in top if _is_offline_call(n))
    top_imports = sorted((n.lineno, lib) for n in top if (lib := _hf_import(n)))
    if top_imports:
        line, lib = top_imports[0]
        assert top_calls and top_calls[0] < line, (
            f"{path.name} imports {lib} at module level (line {line}) without calling "
            "genaibook.offline.use_offline_cache() at module level before it: the bench would go online "
            "(ConnectionError) unless HF_HUB_OFFLINE/HF_HOME are exported. Add `from genaibook.offline import "
            "use_offline_cache` and `use_offline_cache()` after the standard-library imports (see bench/smollm2.py)."
        )
        return
    if top_calls:
        return
    # no module-level call: each function that imports a Hugging Face library must call it before the import
    for fn in (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
        lazy = sorted((n.lineno, lib) for n in ast.walk(fn) if (lib := _hf_import(n)))
        if not lazy:
            continue
        calls = sorted(n.lineno for n in ast.walk(fn) if _is_offline_call(n))
        assert calls and calls[0] < lazy[0][0], (
            f"{path.name}: {fn.name}() imports {lazy[0][1]} (line {lazy[0][0]}) with no use_offline_cache() call "
            "before it, in that function or at module level (see bench/generate_speed.py's main)"
        )


@pytest.mark.parametrize("path", BENCHES, ids=lambda p: p.name)
def test_benches_that_load_through_hugging_face_switch_offline_mode_on(path):
    tree = _tree(path)
    loads = sorted({name for n in ast.walk(tree) if (name := _called_name(n)) in HF_LOADS})
    if loads:
        assert any(_is_offline_call(n) for n in ast.walk(tree)), (
            f"{path.name} loads through the Hugging Face libraries ({', '.join(loads)}) but never calls "
            "genaibook.offline.use_offline_cache()"
        )


@pytest.mark.parametrize("path", BENCHES, ids=lambda p: p.name)
def test_unet_architecture_comes_from_recipes(path):
    "Every UNet2DModel(...) a bench builds is FASHION_UNET (or a recipe's unet) with overrides, never spelled out."
    source = path.read_text()
    tree = ast.parse(source)
    fixed = set(FASHION_UNET) - UNET_OVERRIDES  # e.g. layers_per_block, norm_num_groups: only genaibook.recipes
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            spelled = sorted(k.arg for k in node.keywords if k.arg in fixed)
            assert not spelled, (
                f"{path.name}:{node.lineno} passes {', '.join(spelled)} itself: build the UNet from "
                "genaibook.recipes.FASHION_UNET (or a recipe's make_unet())"
            )
        if isinstance(node, ast.Dict):
            spelled = sorted(k.value for k in node.keys if isinstance(k, ast.Constant) and k.value in fixed)
            assert not spelled, (
                f"{path.name}:{node.lineno} spells out {', '.join(spelled)}: take the UNet "
                "architecture from genaibook.recipes.FASHION_UNET"
            )
        if _called_name(node) == "UNet2DModel":
            text = ast.get_source_segment(source, node)
            assert not node.args and all(k.arg is None for k in node.keywords), (
                f"{path.name}:{node.lineno}: {text}\nbuild it as UNet2DModel(**{{**FASHION_UNET, ...overrides}})"
            )
            assert "FASHION_UNET" in text or ".unet" in text, (
                f"{path.name}:{node.lineno}: {text}\nthe keyword arguments must start from "
                "genaibook.recipes.FASHION_UNET or a recipe's `unet`"
            )


def _load_bench(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_recipe_model_samples_as_the_recipe_and_refuses_another_model(tmp_path):
    from diffusers import DDPMScheduler

    from genaibook.recipes import load_recipe_model, save_sample_model

    model_dir = tmp_path / "sample_model"
    save_sample_model(CH5_CPU.make_unet(), CH5_CPU.make_train_scheduler(), model_dir)  # as nbs/05 saves it
    model, ddim, null_class = load_recipe_model(model_dir, CH5_CPU, spacing="trailing")
    assert null_class == CH5_CPU.null_class == model.config.num_class_embeds - 1
    assert ddim.config.clip_sample is False and ddim.config.timestep_spacing == "trailing"
    assert ddim.config.prediction_type == CH5_CPU.objective and ddim.config.beta_schedule == CH5_CPU.beta_schedule
    # a run that is not a recipe: the saved schedule, without clipping
    _, saved, null_class = load_recipe_model(model_dir, None)
    assert saved.config.clip_sample is False and null_class == 10
    # a model trained with other settings than the recipe's
    DDPMScheduler(num_train_timesteps=1000, prediction_type="epsilon").save_pretrained(model_dir)
    with pytest.raises(ValueError, match="not trained with the recipe 'ch5-cpu'.*beta_schedule, prediction_type"):
        load_recipe_model(model_dir, CH5_CPU)


def test_train_throughput_runs_with_no_hf_variables(tmp_path, offline_home):
    "The tiniest real run (about 8 CPU seconds, mostly imports), with HF_HUB_OFFLINE and HF_HOME unset."
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_HOME")}
    env.update(
        OMP_NUM_THREADS="1",
        CUDA_VISIBLE_DEVICES="",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    )
    out = tmp_path / "train_throughput.json"
    args = [
        "--rounds",
        "1",
        "--block",
        "1",
        "--batch-size",
        "8",
        "--n-images",
        "16",
        "--widths",
        "8,16",
        "--device",
        "cpu",
        "--out",
        str(out),
    ]
    r = subprocess.run(
        [sys.executable, "bench/train_throughput.py", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res["params"] > 0 and res["rounds"] == 1
    assert res["model"].startswith("UNet2DModel block_out_channels=(8, 16), layers_per_block=1")
