"""The Hub ids of the book's Part I chapters (1 to 5): their loading calls, verbatim, against the seeded offline cache
(HF_HUB_OFFLINE=1, set in conftest).

Each check loads an id the way the book does and asserts what is real: the real tokenizers' ids, the real MiniLM's
cosine similarity (the book reports 0.6003), the real Fashion-MNIST's 60,000/10,000 rows, every shape that does not depend
on model width, and the twin markers. Outputs of twins are random by design and are not asserted.
"""

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_sample_image

from genaibook.offline import MissingStandIn, explain, require

device = torch.device("cpu")
photo = Image.fromarray(load_sample_image("china.jpg"))  # stands in for SampleURL.* images (no network)


# ---------------------------------------------------------------- Chapter 1


def _ch1_sd15_fp16_variant():
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(
        "stable-diffusion-v1-5/stable-diffusion-v1-5", torch_dtype=torch.float16, variant="fp16"
    ).to(device)
    prompt = "a photograph of an astronaut riding a horse"
    torch.manual_seed(0)
    image = pipe(prompt, num_inference_steps=2, height=64, width=64).images[0]
    assert pipe.unet.dtype == torch.float16 and pipe.text_encoder.dtype == torch.float16
    assert image.size == (64, 64) and pipe.unet.config._genaibook_twin and pipe.text_encoder.config.genaibook_twin
    return (
        f"{type(pipe).__name__}, unet {pipe.unet.dtype}, image {image.size}, scheduler {type(pipe.scheduler).__name__}"
    )


def _ch1_text_classification_default():
    from transformers import pipeline

    classifier = pipeline("text-classification", device=device)
    out = classifier("This movie is disgustingly good!")
    assert out[0]["label"] in {"POSITIVE", "NEGATIVE"} and classifier.model.config.genaibook_twin
    return f"{classifier.model.name_or_path}: {out}"


def _ch1_text_generation_default():
    from transformers import pipeline, set_seed

    set_seed(10)
    generator = pipeline("text-generation", device=device)
    text = generator("It was a dark and stormy", max_new_tokens=10)[0]["generated_text"]
    assert text.startswith("It was a dark and stormy")
    return f"{generator.model.name_or_path} ({type(generator.model).__name__}): {text[:60]!r}"


def _ch1_text_to_audio_musicgen():
    from transformers import pipeline

    pipe = pipeline("text-to-audio", model="facebook/musicgen-small", device=device)
    data = pipe("electric rock solo, very intense")
    # transformers 5 squeezes the waveform to 1-D (book, v4: [1, 1, N]); display(ipd.Audio(data["audio"][0], ...))
    # would pass a single sample: the notebook must use data["audio"] directly.
    assert data["sampling_rate"] == 32000 and data["audio"].ndim == 1 and pipe.model.config.genaibook_twin
    seconds = len(data["audio"]) / data["sampling_rate"]
    return f"audio {data['audio'].shape} {data['audio'].dtype} ({seconds:.1f} s), sampling_rate {data['sampling_rate']}"


# ---------------------------------------------------------------- Chapter 2


def _ch2_qwen2_tokenizer_real_ids():
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained("Qwen/Qwen2-0.5B")
    prompt = "It was a dark and stormy"
    input_ids = tokenizer(prompt).input_ids
    assert input_ids == [2132, 572, 264, 6319, 323, 13458, 88], input_ids
    assert (tokenizer.encode(" positive"), tokenizer.encode(" negative")) == ([6785], [8225])
    return f"{type(tokenizer).__name__} {input_ids} {[tokenizer.decode(t) for t in input_ids]}"


def _ch2_qwen2_model_logits_and_generate():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained("Qwen/Qwen2-0.5B")
    model = AutoModelForCausalLM.from_pretrained("Qwen/Qwen2-0.5B")
    input_ids = tokenizer("It was a dark and stormy", return_tensors="pt").input_ids
    logits = model(input_ids).logits
    assert logits.shape == torch.Size([1, 7, 151936]), logits.shape
    greedy = model.generate(input_ids, max_new_tokens=20)
    beams = model.generate(input_ids, num_beams=5, repetition_penalty=2.0, max_new_tokens=8)
    sampled = model.generate(input_ids, do_sample=True, max_new_tokens=8, top_p=0.94, top_k=0)
    assert greedy.shape[1] == 27 and model.config.genaibook_twin
    return (
        f"{type(model).__name__} {model.dtype}, logits {tuple(logits.shape)}, greedy {tuple(greedy.shape)}, "
        f"beams {tuple(beams.shape)}, sampled {tuple(sampled.shape)}"
    )


def _ch2_gpt2_tokenizer_real_ids():
    from transformers import AutoTokenizer

    for repo_id in ("openai-community/gpt2", "gpt2"):
        tokenizer = AutoTokenizer.from_pretrained(repo_id)
        ids = tokenizer("Hello world! Diffusion models are fun.").input_ids
        assert ids == [15496, 995, 0, 10631, 4241, 4981, 389, 1257, 13], (repo_id, ids)
    return f"{type(tokenizer).__name__} {ids}"


def _ch2_gpt2_and_smollm_generate():
    from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

    shapes = []
    for repo_id in ("openai-community/gpt2", "gpt2", "HuggingFaceTB/SmolLM-135M"):
        tokenizer = AutoTokenizer.from_pretrained(repo_id)
        model = AutoModelForCausalLM.from_pretrained(repo_id)
        out = model.generate(
            tokenizer("It was a dark and stormy", return_tensors="pt").input_ids,
            max_new_tokens=5,
            pad_token_id=tokenizer.eos_token_id,
        )
        shapes.append(f"{repo_id}: {type(model).__name__} {tuple(out.shape)}")
    text = pipeline("text-generation", model="openai-community/gpt2")("It was a dark", max_new_tokens=5)
    return "; ".join(shapes) + f"; pipeline -> {text[0]['generated_text']!r}"


def _ch2_fill_mask_bert():
    from transformers import pipeline

    results = []
    for repo_id in ("bert-base-uncased", "google-bert/bert-base-uncased"):
        fill_masker = pipeline("fill-mask", model=repo_id)
        results = fill_masker("The [MASK] is made of milk.")
        assert len(results) == 5 and all("token_str" in r for r in results)
    ids = [fill_masker.tokenizer.convert_tokens_to_ids(w) for w in ("dish", "cheese", "milk", "drink", "bread")]
    assert ids == [9841, 8808, 6501, 4392, 7852], ids  # the book's token ids: the real uncased vocab
    return f"top-5 {[r['token_str'] for r in results]}, vocab ids {ids}"


def _ch2_sentiment_distilbert():
    from transformers import pipeline

    classifier = pipeline("text-classification", model="distilbert/distilbert-base-uncased-finetuned-sst-2-english")
    out = classifier("This movie is disgustingly good!")
    assert out[0]["label"] in {"POSITIVE", "NEGATIVE"}
    return f"{out}"


def _ch2_zero_shot_image_clip_b32():
    from transformers import pipeline

    pipe = pipeline("zero-shot-image-classification", model="openai/clip-vit-base-patch32")
    out = pipe(photo, candidate_labels=["cat", "dog", "zebra"])
    assert sorted(r["label"] for r in out) == ["cat", "dog", "zebra"] and abs(sum(r["score"] for r in out) - 1) < 1e-4
    default = pipeline("zero-shot-image-classification")  # task default: openai/clip-vit-base-patch32 @ 3d74acf
    assert default.model.config.genaibook_twin
    return f"{[(r['label'], round(r['score'], 3)) for r in out]}"


def _ch2_sentence_transformers_real_minilm():
    from sentence_transformers import SentenceTransformer, util

    model = SentenceTransformer("sentence-transformers/all-MiniLM-L6-v2")
    e1 = model.encode("I'm happy", convert_to_tensor=True)
    e2 = model.encode("I'm full of happiness", convert_to_tensor=True)
    similarity = util.pytorch_cos_sim(e1, e2)
    assert e1.shape == (384,) and abs(similarity.item() - 0.6003) < 1e-3, similarity  # book: tensor([[0.6003]])
    return f"cos_sim('I'm happy', 'I'm full of happiness') = {similarity.item():.4f} (book 0.6003)"


def _ch2_summarization_removed_in_transformers5():
    from transformers import pipeline

    with pytest.raises(Exception) as info:  # noqa: PT011 (transformers 5 raises KeyError for an unknown task)
        pipeline("summarization")
    return f"expected error: {info.type.__name__}: {str(info.value)[:90]}"


# ---------------------------------------------------------------- Chapter 3


def _ch3_load_mnist():
    from datasets import load_dataset

    for repo_id in ("mnist", "ylecun/mnist"):
        mnist = load_dataset(repo_id)
        assert set(mnist) == {"train", "test"} and mnist["train"].column_names == ["image", "label"]
        image = mnist["train"]["image"][1]
        assert image.size == (28, 28) and image.mode == "L"
    return f"{ {k: v.num_rows for k, v in mnist.items()} } {mnist['train'].features} | {mnist['train'].info.description[:40]}"


def _ch3_clip_large_processor_and_model():
    from transformers import CLIPModel, CLIPProcessor

    clip = CLIPModel.from_pretrained("openai/clip-vit-large-patch14").to(device)
    processor = CLIPProcessor.from_pretrained("openai/clip-vit-large-patch14")
    pixel_values = processor(images=photo, return_tensors="pt")["pixel_values"]
    assert pixel_values.shape == torch.Size([1, 3, 224, 224])
    text_inputs = processor(text=["a photo of a lion", "a photo of a zebra"], return_tensors="pt", padding=True)
    assert text_inputs.input_ids[0].tolist() == [49406, 320, 1125, 539, 320, 5567, 49407]  # the book's CLIP ids
    assert text_inputs.input_ids[1].tolist()[-2:] == [22548, 49407]
    inputs = processor(text=["a photo of a lion", "a puppy"], images=photo, return_tensors="pt", padding=True)
    probs = clip(**inputs).logits_per_image.softmax(dim=1)
    assert probs.shape == (1, 2) and clip.config.genaibook_twin
    return f"pixel_values {tuple(pixel_values.shape)}, ids {text_inputs.input_ids[0].tolist()}, probs {probs.tolist()}"


def _ch3_zero_shot_pipeline_clip_large():
    from transformers import pipeline

    classifier = pipeline("zero-shot-image-classification", model="openai/clip-vit-large-patch14", device=device)
    out = classifier(photo, candidate_labels=["a photo of a lion", "a puppy"], hypothesis_template="{}")
    return f"{[(r['label'], round(r['score'], 3)) for r in out]}"


# ---------------------------------------------------------------- Chapter 4


def _ch4_ddim_and_ddpm_pipelines():
    from diffusers import DDIMPipeline, DDPMPipeline

    image_pipe = DDIMPipeline.from_pretrained("google/ddpm-celebahq-256")
    image_pipe.to(device)
    images = image_pipe(num_inference_steps=2).images
    assert images[0].size == (256, 256) and type(image_pipe.scheduler).__name__ == "DDIMScheduler"
    image = torch.randn(4, 3, 256, 256).to(device)
    image_pipe.scheduler.set_timesteps(num_inference_steps=2)
    for t in image_pipe.scheduler.timesteps:
        with torch.inference_mode():
            noise_pred = image_pipe.unet(image, t)["sample"]
        scheduler_output = image_pipe.scheduler.step(noise_pred, t, image)
        image = scheduler_output.prev_sample
    assert scheduler_output.pred_original_sample.shape == (4, 3, 256, 256)
    ddpm = DDPMPipeline.from_pretrained("google/ddpm-celebahq-256")
    assert ddpm(num_inference_steps=2).images[0].size == (256, 256) and ddpm.unet.config._genaibook_twin
    return (
        f"DDIM image {images[0].size}, manual loop {tuple(image.shape)}, DDPM scheduler {type(ddpm.scheduler).__name__}"
    )


def _ch4_load_butterflies():
    from datasets import load_dataset

    dataset = load_dataset("huggan/smithsonian_butterflies_subset", split="train")
    image = dataset[0]["image"]
    assert "image" in dataset.column_names and image.mode == "RGB"
    return f"{dataset.num_rows} rows, {len(dataset.column_names)} columns, image {image.size} {image.mode}"


# ---------------------------------------------------------------- Chapter 5


def _ch5_load_fashion_mnist_real():
    from datasets import load_dataset

    for repo_id in ("fashion_mnist", "zalando-datasets/fashion_mnist"):
        fashion_mnist = load_dataset(repo_id)
        rows = {k: v.num_rows for k, v in fashion_mnist.items()}
        assert rows == {"train": 60000, "test": 10000}, rows
    features = fashion_mnist["train"].features
    # the Hub's spelling, derived from genaibook.metrics.FASHION_CLASSES by the stand-in
    assert features["label"].names == [
        "T - shirt / top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ], features["label"].names
    assert fashion_mnist["train"][0]["image"].size == (28, 28)
    labels = np.bincount(fashion_mnist["train"]["label"])
    assert (labels == 6000).all()
    return f"{rows}, first 8 labels {fashion_mnist['train']['label'][:8]}"


def _ch5_sd_components_in_depth():
    from diffusers import StableDiffusionPipeline
    from torchvision import transforms

    pipe = StableDiffusionPipeline.from_pretrained(
        "stable-diffusion-v1-5/stable-diffusion-v1-5", torch_dtype=torch.float16, variant="fp16"
    ).to(device)
    text_input = pipe.tokenizer("A photograph of a puppy", return_tensors="pt")
    assert text_input.input_ids[0].tolist() == [49406, 320, 8853, 539, 320, 6829, 49407]  # the book's ids
    padded = pipe.tokenizer("A photograph of a puppy", padding="max_length", return_tensors="pt")
    with torch.inference_mode():
        text_embeddings = pipe.text_encoder(padded.input_ids.to(device))[0]
        im = photo.resize((512, 512))
        tensor_im = transforms.ToTensor()(im).unsqueeze(0).to(device) * 2 - 1
        latents = pipe.vae.encode(tensor_im.half()).latent_dist.sample() * 0.18215
        decoded = pipe.vae.decode(latents / 0.18215).sample
        pipe.scheduler.set_timesteps(2)
        latent_input = pipe.scheduler.scale_model_input(torch.cat([latents] * 2), pipe.scheduler.timesteps[0])
        noise_pred = pipe.unet(
            latent_input, pipe.scheduler.timesteps[0], encoder_hidden_states=torch.cat([text_embeddings] * 2)
        ).sample
    assert latents.shape == (1, 4, 64, 64) and decoded.shape == (1, 3, 512, 512) and padded.input_ids.shape[1] == 77
    assert pipe.vae.config.scaling_factor == 0.18215
    return (
        f"text_embeddings {tuple(text_embeddings.shape)} (book [1, 77, 768]), latents {tuple(latents.shape)}, "
        f"noise_pred {tuple(noise_pred.shape)} {noise_pred.dtype}"
    )


def _ch5_sd_subfolder_component_loads():
    from diffusers import AutoencoderKL, DDIMScheduler, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    repo_id = "stable-diffusion-v1-5/stable-diffusion-v1-5"
    vae = AutoencoderKL.from_pretrained(repo_id, subfolder="vae")
    unet = UNet2DConditionModel.from_pretrained(repo_id, subfolder="unet")
    unet16 = UNet2DConditionModel.from_pretrained(repo_id, subfolder="unet", variant="fp16", torch_dtype=torch.float16)
    text_encoder = CLIPTextModel.from_pretrained(repo_id, subfolder="text_encoder")
    tokenizer = CLIPTokenizer.from_pretrained(repo_id, subfolder="tokenizer")
    scheduler = PNDMScheduler.from_pretrained(repo_id, subfolder="scheduler")
    ddim = DDIMScheduler.from_pretrained(repo_id, subfolder="scheduler")
    assert unet.dtype == torch.float32 and unet16.dtype == torch.float16 and tokenizer.model_max_length == 77
    assert text_encoder.dtype == torch.float32  # config.json must say float32 (transformers 5 loads dtype="auto")
    pipe = StableDiffusionPipeline.from_pretrained(repo_id)  # no variant: all fp32, and it runs
    assert {pipe.unet.dtype, pipe.text_encoder.dtype, pipe.vae.dtype, pipe.safety_checker.dtype} == {torch.float32}
    pipe("a rose", num_inference_steps=2, height=64, width=64)
    return (
        f"vae {vae.dtype}, unet {unet.dtype}/{unet16.dtype}, text_encoder {type(text_encoder).__name__}, "
        f"tokenizer {type(tokenizer).__name__}, schedulers {type(scheduler).__name__}/{type(ddim).__name__}"
    )


def _ch5_book_tokenizer_decoder_get_drift():
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained("stable-diffusion-v1-5/stable-diffusion-v1-5")
    ids = pipe.tokenizer("A photograph of a puppy", return_tensors="pt").input_ids[0]
    with pytest.raises(AttributeError):  # Lst 5.11 verbatim: transformers 5's CLIPTokenizer.decoder is a tokenizers
        [pipe.tokenizer.decoder.get(int(t)) for t in ids]  # ByteLevel decoder, not a dict
    tokens = [pipe.tokenizer.convert_ids_to_tokens(int(t)) for t in ids]
    assert tokens == ["<|startoftext|>", "a</w>", "photograph</w>", "of</w>", "a</w>", "puppy</w>", "<|endoftext|>"]
    return f"decoder.get -> AttributeError (v5 drift); convert_ids_to_tokens -> {tokens}"


# ---------------------------------------------------------------- Errors and markers


def _explained(load, *args, **kwargs) -> str:
    "The offline hint for a load that must fail: what `explain` makes of its error."
    with pytest.raises(Exception) as info:  # noqa: PT011 (each library raises its own type)
        load(*args, **kwargs)
    explained = explain(info.value)
    assert isinstance(explained, MissingStandIn), str(info.value)[:300]
    return str(explained)


def _unknown_id_gives_clear_error():
    from datasets import load_dataset
    from diffusers import UNet2DConditionModel
    from transformers import AutoModelForCausalLM

    messages = []
    for load, repo_id in (
        (AutoModelForCausalLM.from_pretrained, "EleutherAI/gpt-neo-1.3B"),
        (load_dataset, "stanfordnlp/imdb"),
    ):
        message = _explained(load, repo_id)
        assert repo_id in message and "No offline stand-in" in message, message
        messages.append(message)
    # a registered id, but a file its stand-in lacks
    message = _explained(
        UNet2DConditionModel.from_pretrained,
        "stable-diffusion-v1-5/stable-diffusion-v1-5",
        subfolder="unet",
        variant="bf16",
    )
    assert "has no file" in message and "bf16" in message, message
    messages.append(message)
    with pytest.raises(MissingStandIn, match="EleutherAI/gpt-neo-1.3B"):
        require("EleutherAI/gpt-neo-1.3B")
    return " || ".join(m[:110] + "..." for m in messages)


def test_ch1_sd15_fp16_variant(offline_home):
    print(_ch1_sd15_fp16_variant())


def test_ch1_text_classification_default(offline_home):
    print(_ch1_text_classification_default())


def test_ch1_text_generation_default(offline_home):
    print(_ch1_text_generation_default())


def test_ch1_text_to_audio_musicgen(offline_home):
    print(_ch1_text_to_audio_musicgen())


def test_ch2_qwen2_tokenizer_real_ids(offline_home):
    print(_ch2_qwen2_tokenizer_real_ids())


def test_ch2_qwen2_model_logits_and_generate(offline_home):
    print(_ch2_qwen2_model_logits_and_generate())


def test_ch2_gpt2_tokenizer_real_ids(offline_home):
    print(_ch2_gpt2_tokenizer_real_ids())


def test_ch2_gpt2_and_smollm_generate(offline_home):
    print(_ch2_gpt2_and_smollm_generate())


def test_ch2_fill_mask_bert(offline_home):
    print(_ch2_fill_mask_bert())


def test_ch2_sentiment_distilbert(offline_home):
    print(_ch2_sentiment_distilbert())


def test_ch2_zero_shot_image_clip_b32(offline_home):
    print(_ch2_zero_shot_image_clip_b32())


def test_ch2_sentence_transformers_real_minilm(offline_home):
    print(_ch2_sentence_transformers_real_minilm())


def test_ch2_summarization_removed_in_transformers5(offline_home):
    print(_ch2_summarization_removed_in_transformers5())


def test_ch3_load_mnist(offline_home):
    print(_ch3_load_mnist())


def test_ch3_clip_large_processor_and_model(offline_home):
    print(_ch3_clip_large_processor_and_model())


def test_ch3_zero_shot_pipeline_clip_large(offline_home):
    print(_ch3_zero_shot_pipeline_clip_large())


def test_ch4_ddim_and_ddpm_pipelines(offline_home):
    print(_ch4_ddim_and_ddpm_pipelines())


def test_ch4_load_butterflies(offline_home):
    print(_ch4_load_butterflies())


def test_ch5_load_fashion_mnist_real(offline_home):
    print(_ch5_load_fashion_mnist_real())


def test_ch5_sd_components_in_depth(offline_home):
    print(_ch5_sd_components_in_depth())


def test_ch5_sd_subfolder_component_loads(offline_home):
    print(_ch5_sd_subfolder_component_loads())


def test_ch5_book_tokenizer_decoder_get_drift(offline_home):
    print(_ch5_book_tokenizer_decoder_get_drift())


def test_unknown_id_gives_clear_error(offline_home):
    print(_unknown_id_gives_clear_error())
