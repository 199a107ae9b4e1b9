"genaibook.offline: the seeding mechanism on toy stand-ins, clear errors, and the coverage check over every notebook."
import json
import subprocess
import sys
from pathlib import Path

import pytest

from genaibook import offline
from genaibook.offline import (MissingStandIn, cache_paths, explain, hub_ids_in_source, hub_repo_dir, is_seeded, lookup,
                               missing_message, register, registry, require, revision_of, seed)

ROOT = Path(__file__).resolve().parent.parent
CALLS = []


def toy_model_builder(folder, repo_id):
    CALLS.append(repo_id)
    (folder/"config.json").write_text(json.dumps({"model_type": "gpt2", "genaibook_twin": True}))


def toy_failing_builder(folder, repo_id):
    raise FileNotFoundError("/nowhere/data.gz is missing: apt-get install something")


@pytest.fixture
def toy_registry():
    "Register toy stand-ins for the test, and take them out again."
    register("acme/toy", "model", toy_model_builder, real=False, aliases=("toy",), pinned=("abc1234",))
    register("acme/broken", "model", toy_failing_builder, real=False)
    yield
    for k in ("acme/toy", "acme/broken"): offline.REGISTRY.pop(k, None)


def test_seed_layout_idempotence_and_rebuild(tmp_path, toy_registry, monkeypatch):
    CALLS.clear()
    assert seed(tmp_path, ids=["toy"], verbose=False) == {"acme/toy": pytest.approx(0, abs=5)}
    hub, datasets_cache = cache_paths(tmp_path)
    repo = hub_repo_dir(hub, "acme/toy")
    rev = (repo/"refs"/"main").read_text()
    assert rev == revision_of(lookup("acme/toy")) and (repo/"refs"/"abc1234").read_text() == rev
    assert (repo/"snapshots"/rev/"config.json").exists()
    assert (hub/"models--toy").is_symlink() and (hub/"models--toy"/"refs"/"main").read_text() == rev
    assert seed(tmp_path, ids=["acme/toy"], verbose=False) == {"acme/toy": "cached"} and CALLS == ["acme/toy"]
    monkeypatch.setattr(offline, "STANDIN_VERSION", "test-bump")  # a new version means a new commit: rebuilt
    seed(tmp_path, ids=["acme/toy"], verbose=False)
    assert CALLS == ["acme/toy"] * 2 and [p.name for p in (repo/"snapshots").iterdir()] == [revision_of(lookup("acme/toy"))]


def test_dangling_link_means_not_seeded(tmp_path, toy_registry):
    seed(tmp_path, ids=["acme/toy"], verbose=False)
    hub, datasets_cache = cache_paths(tmp_path)
    snapshot = next((hub_repo_dir(hub, "acme/toy")/"snapshots").iterdir())
    (snapshot/"weights.bin").symlink_to(tmp_path/"gone.bin")
    assert not is_seeded(lookup("acme/toy"), hub, datasets_cache)


def test_failed_builder_is_reported_not_fatal(tmp_path, toy_registry, capsys):
    report = seed(tmp_path, ids=["acme/broken", "acme/toy"])
    assert report["acme/broken"].startswith("failed: /nowhere/data.gz is missing") and report["acme/toy"] != "cached"
    assert "skipped acme/broken" in capsys.readouterr().err
    assert offline.main(["seed", str(tmp_path), "acme/broken"]) == 1


def test_unknown_ids_and_bad_kinds(tmp_path):
    with pytest.raises(MissingStandIn, match="No offline stand-in for the Hub id 'acme/nothing'"): seed(tmp_path, ids=["acme/nothing"])
    with pytest.raises(ValueError, match="'model' or 'dataset'"): register("a/b", "space", toy_model_builder, real=False)


def test_messages_say_what_to_do(tmp_path, toy_registry):
    assert "register('acme/else'" in missing_message("acme/else", home=tmp_path)
    assert "not seeded" in missing_message("acme/toy", home=tmp_path) and "genaibook_offline seed" in missing_message("acme/toy", home=tmp_path)
    seed(tmp_path, ids=["acme/toy"], verbose=False)
    assert "has no file 'unet/x.bin'" in missing_message("acme/toy", "unet/x.bin", home=tmp_path)
    with pytest.raises(MissingStandIn, match="acme/toy"): require("acme/toy", home=tmp_path / "empty")
    require("acme/toy", home=tmp_path)


def test_explain_names_the_id_of_a_failed_load(offline_home):
    from transformers import AutoModelForCausalLM
    with pytest.raises(OSError) as info: AutoModelForCausalLM.from_pretrained("EleutherAI/gpt-neo-1.3B")
    err = explain(info.value)
    assert isinstance(err, MissingStandIn) and "EleutherAI/gpt-neo-1.3B" in str(err) and err.__cause__ is info.value
    assert explain(ValueError("unrelated")) .args == ("unrelated",)


def test_explain_names_a_missing_variant(offline_home):
    from diffusers import UNet2DConditionModel
    with pytest.raises(Exception) as info:
        UNet2DConditionModel.from_pretrained("stable-diffusion-v1-5/stable-diffusion-v1-5", subfolder="unet", variant="bf16")
    message = str(explain(info.value))
    assert "has no file" in message and "bf16" in message


def test_error_hint_in_a_script(offline_home):
    code = ("from genaibook.offline import install_error_hints; install_error_hints()\n"
            "from transformers import AutoTokenizer; AutoTokenizer.from_pretrained('acme/not-real')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "[genaibook offline] No offline stand-in for the Hub id 'acme/not-real'" in r.stderr


@pytest.mark.parametrize("code, ids", [
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
])
def test_hub_ids_in_source(code, ids):
    assert hub_ids_in_source(code) == ids


def notebook_code(nb: Path) -> str:
    return "\n".join("".join(c["source"]) for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code")


def uncovered(notebooks) -> list[str]:
    return [f"{nb.relative_to(ROOT)}: '{i}' has no offline stand-in" for nb in notebooks for i in sorted(hub_ids_in_source(notebook_code(nb)))
            if lookup(i) is None]


def test_every_hub_id_in_the_notebooks_has_a_stand_in():
    notebooks = sorted(p for p in (ROOT/"nbs").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    assert notebooks
    missing = uncovered(notebooks)
    assert not missing, "register these in nbs/lib/06_standins.ipynb:\n" + "\n".join(missing)


def test_coverage_check_catches_an_unregistered_id(tmp_path):
    import nbformat
    nb = tmp_path/"nbs"/"99_new_chapter.ipynb"; nb.parent.mkdir()
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        'tok = AutoTokenizer.from_pretrained("openai-community/gpt2")\nmodel = AutoModel.from_pretrained("acme/brand-new-model")')]), nb)
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try: assert uncovered([nb]) == ["nbs/99_new_chapter.ipynb: 'acme/brand-new-model' has no offline stand-in"]
    finally: ROOT = saved


def test_registry_covers_part_one():
    ids = set(registry())
    for i in ("stable-diffusion-v1-5/stable-diffusion-v1-5", "openai-community/gpt2", "Qwen/Qwen2-0.5B", "HuggingFaceTB/SmolLM-135M",
              "google-bert/bert-base-uncased", "distilbert/distilbert-base-uncased-finetuned-sst-2-english", "openai/clip-vit-base-patch32",
              "openai/clip-vit-large-patch14", "facebook/musicgen-small", "google/ddpm-celebahq-256", "ylecun/mnist",
              "zalando-datasets/fashion_mnist", "huggan/smithsonian_butterflies_subset", "sentence-transformers/all-MiniLM-L6-v2"):
        assert i in ids
    for alias in ("gpt2", "bert-base-uncased", "mnist", "fashion_mnist"): assert lookup(alias) is not None


def test_full_size_smollm_reproduces_the_books_lora_count(tmp_path):
    "The book's chapter 6 LoRA listing: 460,800 trainable of 134,975,808 parameters (SmolLM-135M, r=8)."
    peft = pytest.importorskip("peft")
    from transformers import AutoModelForCausalLM, logging
    seed(tmp_path, ids=["HuggingFaceTB/SmolLM-135M"], full_size=True, verbose=False)
    hub, _ = cache_paths(tmp_path)
    snapshot = next((hub_repo_dir(hub, "HuggingFaceTB/SmolLM-135M")/"snapshots").iterdir())
    logging.set_verbosity_error()  # the one-tensor checkpoint makes transformers report every other weight as missing
    try: model = AutoModelForCausalLM.from_pretrained(snapshot)
    finally: logging.set_verbosity_warning()
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
    assert twin_notice(classifier, "score") and "offline twin of distilbert/distilbert-base-uncased-finetuned-sst-2-english" in capsys.readouterr().out
    assert is_twin(DDPMPipeline.from_pretrained("google/ddpm-celebahq-256"))  # diffusers marks `_genaibook_twin`
    assert not twin_notice(torch.nn.Linear(2, 2)) and capsys.readouterr().out == ""
