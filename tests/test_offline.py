"""genaibook.offline: the seeding mechanism on toy stand-ins, clear errors, the coverage check over every notebook, and
the registry: well-formed entries, unique ids, dependencies one way."""

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import reachable

from genaibook import offline
from genaibook.offline import MissingStandIn, explain, hub_ids_in_source, lookup, registry, require, seed
from genaibook.standins import StandIn

ROOT = Path(__file__).resolve().parent.parent
FAMILIES = (
    "standins_text",
    "standins_vision",
    "standins_diffusion",
    "standins_sdxl",
    "standins_sd_tuning",
    "standins_audio",
)
CALLS = []


def toy_model_builder(folder, repo_id):
    CALLS.append(repo_id)
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt2", "genaibook_twin": True}))


def toy_failing_builder(folder, repo_id):
    raise FileNotFoundError("/nowhere/data.gz is missing: apt-get install something")


@pytest.fixture
def toy_registry(monkeypatch):
    "The course's registry plus two toy entries, for this test only."
    toys = [
        StandIn("acme/toy", "model", toy_model_builder, real=False, aliases=("toy",), pinned=("abc1234",)),
        StandIn("acme/broken", "model", toy_failing_builder, real=False),
    ]
    entries = {**registry(), **{e.repo_id: e for e in toys}}
    monkeypatch.setattr(offline, "registry", lambda: entries)


def snapshot_of(home, repo_id):
    "The snapshot folder refs/main points at, read straight from the Hub cache layout."
    repo = Path(home) / "hub" / ("models--" + repo_id.replace("/", "--"))
    rev = (repo / "refs" / "main").read_text()
    return repo, rev, repo / "snapshots" / rev


def test_seed_layout_idempotence_and_rebuild(tmp_path, toy_registry, monkeypatch):
    CALLS.clear()
    assert seed(tmp_path, ids=["toy"], verbose=False) == {"acme/toy": pytest.approx(0, abs=5)}
    repo, rev, snapshot = snapshot_of(tmp_path, "acme/toy")
    assert re.fullmatch(r"[0-9a-f]{40}", rev) and (repo / "refs" / "abc1234").read_text() == rev
    assert (snapshot / "config.json").exists()
    assert (tmp_path / "hub" / "models--toy").is_symlink() and snapshot_of(tmp_path, "toy")[1] == rev
    assert seed(tmp_path, ids=["acme/toy"], verbose=False) == {"acme/toy": "cached"} and CALLS == ["acme/toy"]
    monkeypatch.setattr(offline, "STANDIN_VERSION", "test-bump")  # a new version means a new commit: rebuilt
    seed(tmp_path, ids=["acme/toy"], verbose=False)
    new_rev = snapshot_of(tmp_path, "acme/toy")[1]
    assert (
        CALLS == ["acme/toy"] * 2 and new_rev != rev and [p.name for p in (repo / "snapshots").iterdir()] == [new_rev]
    )


def test_dangling_link_means_not_seeded(tmp_path, toy_registry):
    seed(tmp_path, ids=["acme/toy"], verbose=False)
    require("acme/toy", home=tmp_path)
    (snapshot_of(tmp_path, "acme/toy")[2] / "weights.bin").symlink_to(tmp_path / "gone.bin")
    with pytest.raises(MissingStandIn, match="not seeded"):
        require("acme/toy", home=tmp_path)


def test_failed_builder_is_reported_not_fatal(tmp_path, toy_registry, capsys):
    report = seed(tmp_path, ids=["acme/broken", "acme/toy"])
    assert report["acme/broken"].startswith("failed: /nowhere/data.gz is missing") and report["acme/toy"] != "cached"
    assert "skipped acme/broken" in capsys.readouterr().err
    assert offline.main(["seed", str(tmp_path), "acme/broken"]) == 1


def test_unknown_ids_and_bad_entries(tmp_path):
    with pytest.raises(MissingStandIn, match="No offline stand-in for the Hub id 'acme/nothing'"):
        seed(tmp_path, ids=["acme/nothing"])
    with pytest.raises(ValueError, match="kind must be one of 'model', 'dataset'"):
        StandIn("a/b", "space", toy_model_builder, real=False)
    with pytest.raises(TypeError, match="aliases must be a tuple of strings"):
        StandIn("a/b", "model", toy_model_builder, real=False, aliases="b")


def test_messages_say_what_to_do(tmp_path, toy_registry):
    with pytest.raises(MissingStandIn) as unknown:
        require("acme/else", home=tmp_path)
    message = str(unknown.value)
    assert "StandIn('acme/else', ...)" in message and "06a_standins_text" in message and "STANDINS" in message
    assert "genaibook_offline seed" in message
    with pytest.raises(MissingStandIn, match="not seeded.*genaibook_offline seed"):
        require("acme/toy", home=tmp_path)
    seed(tmp_path, ids=["acme/toy"], verbose=False)
    require("acme/toy", "toy", home=tmp_path)


def test_message_for_a_missing_file_names_the_builder(tmp_path, toy_registry, monkeypatch):
    from huggingface_hub import hf_hub_download

    seed(tmp_path, ids=["acme/toy"], verbose=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # where explain() looks
    with pytest.raises(Exception) as info:
        hf_hub_download("acme/toy", "unet/x.bin", cache_dir=tmp_path / "hub")
    message = str(explain(info.value))
    assert "has no file 'unet/x.bin'" in message and "toy_model_builder in test_offline" in message


def test_explain_names_the_id_of_a_failed_load(offline_home):
    from transformers import AutoModelForCausalLM

    with pytest.raises(OSError) as info:
        AutoModelForCausalLM.from_pretrained("EleutherAI/gpt-neo-1.3B")
    err = explain(info.value)
    assert isinstance(err, MissingStandIn) and "EleutherAI/gpt-neo-1.3B" in str(err) and err.__cause__ is info.value
    assert explain(ValueError("unrelated")).args == ("unrelated",)


def test_explain_names_a_missing_variant(offline_home):
    from diffusers import UNet2DConditionModel

    with pytest.raises(Exception) as info:
        UNet2DConditionModel.from_pretrained(
            "stable-diffusion-v1-5/stable-diffusion-v1-5", subfolder="unet", variant="bf16"
        )
    message = str(explain(info.value))
    assert "has no file" in message and "bf16" in message


def test_error_hint_in_a_script(offline_home):
    code = (
        "from genaibook.offline import install_error_hints; install_error_hints()\n"
        "from transformers import AutoTokenizer; AutoTokenizer.from_pretrained('acme/not-real')"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "[genaibook offline] No offline stand-in for the Hub id 'acme/not-real'" in r.stderr


@pytest.mark.parametrize(
    "code, ids",
    [
        ('AutoModel.from_pretrained("Qwen/Qwen2-0.5B", dtype="auto")', {"Qwen/Qwen2-0.5B"}),
        ("load_dataset('ylecun/mnist', split='train')", {"ylecun/mnist"}),
        ('pipeline("fill-mask", model="bert-base-uncased")', {"bert-base-uncased"}),
        ('pipeline("zero-shot-image-classification")', {"openai/clip-vit-base-patch32"}),
        ('pipeline("text-generation", device=device)', {"HuggingFaceTB/SmolLM3-3B"}),
        ('pipeline("text-generation", model=model, tokenizer=tok)', set()),
        ('m.save_pretrained("out"); AutoModel.from_pretrained("out")', set()),
        ('load_dataset("imagefolder", data_dir="x")', set()),
        ('AutoModel.from_pretrained(checkpoint)', set()),
        ('SentenceTransformer("sentence-transformers/all-MiniLM-L6-v2")', {"sentence-transformers/all-MiniLM-L6-v2"}),
        ('AutoModel.from_pretrained("acme/missing")  # no stand-in on purpose', set()),
    ],
)
def test_hub_ids_in_source(code, ids):
    assert hub_ids_in_source(code) == ids


def notebook_code(nb: Path) -> str:
    return "\n".join("".join(c["source"]) for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code")


def uncovered(notebooks) -> list[str]:
    return [
        f"{nb.relative_to(ROOT)}: '{i}' has no offline stand-in"
        for nb in notebooks
        for i in sorted(hub_ids_in_source(notebook_code(nb)))
        if lookup(i) is None
    ]


def test_every_hub_id_in_the_notebooks_has_a_stand_in():
    notebooks = sorted(p for p in (ROOT / "nbs").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    assert notebooks
    missing = uncovered(notebooks)
    assert not missing, "add StandIn entries for these to a family's STANDINS (nbs/lib/06a-06d):\n" + "\n".join(missing)


def test_coverage_check_catches_an_unregistered_id(tmp_path):
    import nbformat

    nb = tmp_path / "nbs" / "99_new_chapter.ipynb"
    nb.parent.mkdir()
    nbformat.write(
        nbformat.v4.new_notebook(
            cells=[
                nbformat.v4.new_code_cell(
                    'tok = AutoTokenizer.from_pretrained("openai-community/gpt2")\n'
                    'model = AutoModel.from_pretrained("acme/brand-new-model")'
                )
            ]
        ),
        nb,
    )
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        assert uncovered([nb]) == ["nbs/99_new_chapter.ipynb: 'acme/brand-new-model' has no offline stand-in"]
    finally:
        ROOT = saved


def test_registry_covers_part_one():
    ids = set(registry())
    for i in (
        "stable-diffusion-v1-5/stable-diffusion-v1-5",
        "openai-community/gpt2",
        "Qwen/Qwen2-0.5B",
        "HuggingFaceTB/SmolLM-135M",
        "google-bert/bert-base-uncased",
        "distilbert/distilbert-base-uncased-finetuned-sst-2-english",
        "openai/clip-vit-base-patch32",
        "openai/clip-vit-large-patch14",
        "facebook/musicgen-small",
        "google/ddpm-celebahq-256",
        "ylecun/mnist",
        "zalando-datasets/fashion_mnist",
        "huggan/smithsonian_butterflies_subset",
        "sentence-transformers/all-MiniLM-L6-v2",
    ):
        assert i in ids
    for alias in ("gpt2", "bert-base-uncased", "mnist", "fashion_mnist"):
        assert lookup(alias) is not None


def test_full_size_smollm_reproduces_the_books_lora_count(tmp_path):
    "The book's chapter 6 LoRA listing: 460,800 trainable of 134,975,808 parameters (SmolLM-135M, r=8)."
    peft = pytest.importorskip("peft")
    from transformers import AutoModelForCausalLM, logging

    seed(tmp_path, ids=["HuggingFaceTB/SmolLM-135M"], full_size=True, verbose=False)
    snapshot = snapshot_of(tmp_path, "HuggingFaceTB/SmolLM-135M")[2]
    logging.set_verbosity_error()  # the one-tensor checkpoint makes transformers report every other weight as missing
    try:
        model = AutoModelForCausalLM.from_pretrained(snapshot)
    finally:
        logging.set_verbosity_warning()
    assert model.config.genaibook_twin and model.num_parameters() == 134_515_008
    lora = peft.get_peft_model(model, peft.LoraConfig(r=8, task_type="CAUSAL_LM"))
    trainable, total = lora.get_nb_trainable_parameters()
    assert (trainable, total) == (460_800, 134_975_808)


def test_twin_notice_labels_twin_outputs_only(offline_home, capsys):
    import torch
    from diffusers import DDPMPipeline
    from transformers import pipeline
    from genaibook.offline import is_twin, twin_notice

    classifier = pipeline("text-classification", model="distilbert/distilbert-base-uncased-finetuned-sst-2-english")
    assert (
        twin_notice(classifier, "score")
        and "offline twin of distilbert/distilbert-base-uncased-finetuned-sst-2-english" in capsys.readouterr().out
    )
    assert is_twin(DDPMPipeline.from_pretrained("google/ddpm-celebahq-256"))  # diffusers marks `_genaibook_twin`
    assert not twin_notice(torch.nn.Linear(2, 2)) and capsys.readouterr().out == ""


# ---------------------------------------------------------------- the registry as data


def test_every_entry_is_well_formed():
    entries = registry()
    assert len(entries) >= 15
    for repo_id, e in entries.items():
        assert isinstance(e, StandIn) and e.repo_id == repo_id and re.fullmatch(r"[\w.-]+/[\w.-]+", repo_id), repo_id
        assert e.kind in ("model", "dataset") and isinstance(e.real, bool) and isinstance(e.note, str), repo_id
        assert all(re.fullmatch(r"[\w.-]+(/[\w.-]+)?", a) for a in e.aliases), repo_id
        assert all(re.fullmatch(r"[0-9a-f]{7,40}", p) for p in e.pinned), repo_id
        assert not (e.kind == "dataset" and (e.pinned or e.full_size_build)), (
            f"{repo_id}: pinned revisions and full-size builders are for models"
        )
        assert e.build.__module__ in {f"genaibook.{f}" for f in FAMILIES}, repo_id
        builders = [b for b in (e.build, e.full_size_build) if b is not None]
        assert all(b.__name__.startswith("_") for b in builders), f"{repo_id}: builders are private to their family"


def test_ids_and_aliases_are_unique():
    names = [
        n
        for f in FAMILIES
        for e in __import__(f"genaibook.{f}", fromlist=["STANDINS"]).STANDINS
        for n in (e.repo_id, *e.aliases)
    ]
    assert len(names) == len(set(names)), sorted({n for n in names if names.count(n) > 1})
    for name in names:
        assert lookup(name) is not None


def test_the_real_entries():
    assert {e.repo_id for e in registry().values() if e.real} >= {
        "sentence-transformers/all-MiniLM-L6-v2",
        "zalando-datasets/fashion_mnist",
        "HuggingFaceTB/SmolLM2-135M-Instruct",
    }


def _genaibook_imports(module: str) -> set[str]:
    "The genaibook modules that `module`'s source imports (relative imports resolved)."
    tree = ast.parse((ROOT / "genaibook" / f"{module}.py").read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found |= {node.module} if node.module else {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("genaibook."):
            found.add(node.module.split(".")[1])
    return {m.split(".")[0] for m in found}


def test_dependencies_run_one_way():
    "No family module reaches genaibook.offline, directly or through another module; there is no cycle."
    modules = [p.stem for p in (ROOT / "genaibook").glob("*.py") if not p.stem.startswith("_")]
    graph = {m: _genaibook_imports(m) & set(modules) for m in modules}

    for m in ("offline", "standins", *FAMILIES):
        assert m not in reachable(graph, m), f"import cycle through genaibook.{m}"
    for m in ("standins", *FAMILIES):
        assert "offline" not in reachable(graph, m), f"genaibook.{m} reaches genaibook.offline"
    assert graph["offline"] >= set(FAMILIES)


@pytest.mark.parametrize("module", ["offline", "standins", *FAMILIES])
def test_each_module_imports_alone_and_light(module):
    "In a fresh interpreter: the import works alone, loads no Hugging Face library; families leave offline out."
    code = (
        f"import sys, genaibook.{module}; "
        "print(sorted(m for m in ('transformers', 'diffusers', 'datasets', 'genaibook.offline') "
        "if m in sys.modules))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == ("['genaibook.offline']" if module == "offline" else "[]"), r.stdout
