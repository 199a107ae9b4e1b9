"""genaibook.sd_finetune (chapter 7): the Stable Diffusion trainers run for a few steps on the SD 1.5 stand-in (loss
goes down, exact resume, the LoRA file loads with load_lora_weights, prior-preservation batches), the command line,
the new-concept tools of the CPU path, and clear errors on bad input."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from genaibook.offline import use_offline_cache

use_offline_cache()

from diffusers import DiffusionPipeline, UNet2DModel  # noqa: E402

from genaibook.sd_finetune import (  # noqa: E402
    ConceptJudge,
    FineTuneArgs,
    add_concept_class,
    digit_images,
    finetune,
    lora_base_model,
    make_learner,
    make_optimizer,
    nearest_distance,
    prepare_concept_model,
    write_imagefolder,
)

SD = "stable-diffusion-v1-5/stable-diffusion-v1-5"
ROOT = Path(__file__).resolve().parents[1]


def _pictures(n=3):
    "Small real-looking pictures: gradients in three colours (64 px, not square, so cropping matters)."
    out = []
    for i in range(n):
        im = Image.linear_gradient("L").resize((80, 64)).convert("RGB")
        out.append(
            Image.merge("RGB", [c.point(lambda v, k=i + j: (v * (k + 1)) % 256) for j, c in enumerate(im.split())])
        )
    return out


@pytest.fixture
def data(tmp_path):
    return write_imagefolder(_pictures(), ["a red thing", "a green thing", "a blue thing"], tmp_path / "data")


def _args(tmp_path, **kw):
    base = dict(
        resolution=64,
        train_batch_size=2,
        max_train_steps=2,
        output_dir=str(tmp_path / "out"),
        device="cpu",
        progress=False,
        seed=0,
    )
    return FineTuneArgs(**{**base, **kw})


def _pipe():
    return DiffusionPipeline.from_pretrained(SD)


def _fixed_loss(learner):
    batch = next(iter(learner.train_dl))
    return learner.evaluate([batch], seed=0)["loss"]


# ---- training ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("rank", [None, 4])
def test_loss_decreases_on_a_repeated_batch(tmp_path, data, rank):
    learner = make_learner(
        _args(tmp_path, train_data_dir=str(data), rank=rank, learning_rate=3e-2 if rank else 2e-3, train_batch_size=3),
        _pipe(),
    )
    before = _fixed_loss(learner)
    learner.fit(steps=25)
    after = _fixed_loss(learner)
    assert after < 0.95 * before, (before, after)


def test_resume_reproduces_the_uninterrupted_run(tmp_path, data):
    kw = dict(
        train_data_dir=str(data),
        train_batch_size=1,
        gradient_accumulation_steps=2,
        use_ema=True,
        ema_decay=0.9,
        checkpointing_steps=2,
        random_flip=True,
        learning_rate=1e-3,
    )
    whole = finetune(_args(tmp_path / "a", max_train_steps=4, **kw), _pipe())
    finetune(_args(tmp_path / "b", max_train_steps=2, **kw), _pipe())
    resumed = finetune(_args(tmp_path / "b", max_train_steps=4, **kw), _pipe())
    assert resumed.step == 4 and resumed.history["step"] == [1, 2, 3, 4]
    for (name, p), q in zip(whole.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(p, q), name
    for p, q in zip(whole.ema_model.parameters(), resumed.ema_model.parameters()):
        assert torch.equal(p, q)
    assert (tmp_path / "b" / "out" / "model_index.json").exists()  # the full fine-tune saved a pipeline


def test_saved_lora_loads_into_a_fresh_pipeline_and_changes_it(tmp_path, data):
    learner = finetune(
        _args(tmp_path, train_data_dir=str(data), rank=4, learning_rate=5e-2, max_train_steps=3), _pipe()
    )
    assert learner.saved.name == "pytorch_lora_weights.safetensors"

    def image(pipe):
        g = torch.Generator().manual_seed(0)
        return pipe("a red thing", num_inference_steps=2, height=64, width=64, generator=g, output_type="pt").images

    fresh = _pipe()
    before = image(fresh)
    fresh.load_lora_weights(str(tmp_path / "out"))
    with_lora = image(fresh)
    assert (with_lora - before).abs().max() > 1e-3
    fresh.fuse_lora()
    torch.testing.assert_close(image(fresh), with_lora, atol=1e-4, rtol=0)


def test_dreambooth_prior_preservation_batches_hold_both_kinds(tmp_path, data):
    args = _args(
        tmp_path,
        instance_data_dir=str(data),
        instance_prompt="a photo of sks thing",
        with_prior_preservation=True,
        class_prompt="a thing",
        num_class_images=2,
        train_text_encoder=True,
    )
    learner = make_learner(args, _pipe())
    batch = next(iter(learner.train_dl))
    assert batch["is_prior"].tolist() == [False, True, False, True]
    assert len(list((tmp_path / "out" / "class_images").glob("*.png"))) == 2
    encoder = learner.model.text_encoders[0]
    start = [p.detach().clone() for p in encoder.parameters()]
    learner.fit(steps=1)
    assert {"instance_loss", "prior_loss"} <= set(learner.history)
    assert any(not torch.equal(a, b) for a, b in zip(start, encoder.parameters())), "the text encoder did not train"


# ---- bad input -----------------------------------------------------------------------------------------------------
def test_empty_folder_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no images"):
        make_learner(_args(tmp_path, instance_data_dir=str(tmp_path / "empty"), instance_prompt="a sks"), _pipe())


def test_missing_caption_column_is_a_clear_error(tmp_path):
    folder = write_imagefolder(_pictures(2), ["x", "y"], tmp_path / "d", caption_column="caption")
    with pytest.raises(ValueError, match="no caption column 'text'"):
        make_learner(_args(tmp_path, train_data_dir=str(folder)), _pipe())


@pytest.mark.parametrize("bad", [dict(rank=0), dict(rank=-4), dict(resolution=100), dict(resolution=0)])
def test_bad_rank_or_resolution_is_refused_before_loading(tmp_path, bad):
    with pytest.raises(ValueError, match="rank must be|resolution must be"):
        make_learner(_args(tmp_path, train_data_dir="unused", **bad), pipe=object())


def test_8bit_adam_falls_back_with_a_message(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # as if it were not installed
    opt = make_optimizer(use_8bit_adam=True)(torch.nn.Linear(2, 2).parameters(), lr=1e-3)
    assert type(opt) is torch.optim.AdamW and "falling back to torch.optim.AdamW" in capsys.readouterr().out


# ---- the command line ----------------------------------------------------------------------------------------------
def test_command_line_runs_under_accelerate_launch(tmp_path, data):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1"}
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--num_processes",
        "1",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "-m",
        "genaibook.sd_finetune",
        "--train_data_dir",
        str(data),
        "--resolution",
        "64",
        "--rank",
        "2",
        "--max_train_steps",
        "1",
        "--output_dir",
        str(tmp_path / "cli"),
        "--no_progress",
    ]
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "cli" / "pytorch_lora_weights.safetensors").exists()


def test_command_line_help_lists_the_book_flags():
    done = subprocess.run(
        [sys.executable, "-m", "genaibook.sd_finetune", "--help"], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    for flag in (
        "--use_ema",
        "--mixed_precision",
        "--center_crop",
        "--random_flip",
        "--gradient_checkpointing",
        "--use_8bit_adam",
        "--validation_prompts",
        "--with_prior_preservation",
        "--train_text_encoder",
        "--rank",
    ):
        assert flag in done.stdout


def test_lora_base_model_reads_the_cached_model_card():
    assert lora_base_model("alvdansen/littletinies") == "stabilityai/stable-diffusion-xl-base-1.0"


# ---- the CPU path: a new concept for a small UNet -------------------------------------------------------------------
def _small_unet():
    return UNet2DModel(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        block_out_channels=(8, 8),
        norm_num_groups=4,
        layers_per_block=1,
        down_block_types=("DownBlock2D",) * 2,
        up_block_types=("UpBlock2D",) * 2,
        num_class_embeds=3,
    )


def test_concept_class_needs_a_class_conditioned_unet_and_only_one():
    with pytest.raises(ValueError, match="no class embedding"):
        add_concept_class(UNet2DModel(**{**_small_unet().config, "num_class_embeds": None}))
    unet = _small_unet()
    with pytest.raises(ValueError, match="add_concept_class"):
        prepare_concept_model(unet, "full")
    assert add_concept_class(unet) == 3
    with pytest.raises(ValueError, match="rank must be"):
        prepare_concept_model(unet, "lora", rank=0)


def test_lora_concept_model_trains_only_adapters_and_the_new_row():
    unet = _small_unet()
    add_concept_class(unet, init_from=2)
    prepare_concept_model(unet, "lora", rank=2)
    trainable = {n for n, p in unet.named_parameters() if p.requires_grad}
    assert "class_embedding.new" in trainable
    assert all("lora_" in n for n in trainable - {"class_embedding.new"})


def test_concept_judge_tells_real_digits_from_garments():
    from genaibook.recipes import fashion_mnist_32_tensors

    digits, labels = digit_images()
    fashion = fashion_mnist_32_tensors("test", n=600)[0]
    judge = ConceptJudge(digits[::2], labels[::2], fashion[:300], target=3)
    held_out_threes = digits[1::2][labels[1::2] == 3]
    assert judge(held_out_threes)["fidelity"] > 0.85
    assert judge(fashion[300:])["fidelity"] < 0.05
    assert nearest_distance(held_out_threes[:2], held_out_threes).max() < 1e-3  # each is its own nearest
    assert nearest_distance(-held_out_threes[:2], held_out_threes).min() > 0.3
