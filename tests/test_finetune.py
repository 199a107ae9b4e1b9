"""genaibook.finetune (chapter 6): the fortunes topic data, metrics, perplexity, choice scoring, LoRA from scratch
against peft, absmax quantization, and the chapter's offline stand-ins; edge cases and bad input."""

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from genaibook.finetune import (
    FORTUNE_TOPICS,
    LoRALinear,
    absmax_dequantize,
    absmax_quantize,
    add_lora,
    choice_accuracy,
    classification_metrics,
    fortune_topics,
    lora_param_count,
    perplexity,
    plot_confusion_matrix,
    quiz_messages,
    read_fortunes,
    topic_quiz,
)

needs_fortunes = pytest.mark.skipif(
    not Path("/usr/share/games/fortunes/computers").exists(),
    reason="Debian's fortunes is not installed: apt-get install fortunes",
)


# ---- data -----------------------------------------------------------------------------------------------------------
@pytest.fixture
def fake_fortunes(tmp_path):
    "A fortunes folder with three small topics."
    for topic, n in (("cats", 10), ("dogs", 6), ("fish", 4)):
        quotes = [f"{topic} quote number {i}, long enough to keep" for i in range(n)]
        (tmp_path / topic).write_text("\n%\n".join(quotes + ["short", "x" * 500]) + "\n%\n")
    return tmp_path


def test_read_fortunes_filters_lengths_and_collapses_whitespace(tmp_path):
    (tmp_path / "t").write_text("one  quote\nwith   lines, long enough\n%\nshort\n%\n" + "y" * 401 + "\n")
    assert read_fortunes("t", tmp_path) == ["one quote with lines, long enough"]


def test_read_fortunes_missing_topic_names_the_topics(fake_fortunes, tmp_path):
    with pytest.raises(FileNotFoundError, match="topics there: \\['cats', 'dogs', 'fish'\\]"):
        read_fortunes("birds", fake_fortunes)
    with pytest.raises(FileNotFoundError, match="apt-get install fortunes"):
        read_fortunes("cats", tmp_path / "nowhere")


def test_fortune_topics_split_is_stratified_disjoint_and_seeded(fake_fortunes):
    d = fortune_topics(("cats", "dogs", "fish"), max_per_topic=8, test_size=0.25, root=fake_fortunes)
    assert d["train"].features["label"].names == ["cats", "dogs", "fish"]
    assert np.bincount(d["test"]["label"]).tolist() == [2, 2, 1]  # 8, 6 and 4 quotes, a quarter of each
    assert np.bincount(d["train"]["label"]).tolist() == [6, 4, 3]
    assert not set(d["train"]["text"]) & set(d["test"]["text"])
    again = fortune_topics(("cats", "dogs", "fish"), max_per_topic=8, test_size=0.25, root=fake_fortunes)
    assert list(again["train"]["text"]) == list(d["train"]["text"])
    other = fortune_topics(("cats", "dogs", "fish"), max_per_topic=8, test_size=0.25, seed=1, root=fake_fortunes)
    assert list(other["train"]["text"]) != list(d["train"]["text"])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"topics": ("cats",)}, "at least 2 topics"),
        ({"test_size": 0}, "between 0 and 1"),
        ({"test_size": 1.5}, "between 0 and 1"),
    ],
)
def test_fortune_topics_bad_input(fake_fortunes, kwargs, message):
    with pytest.raises(ValueError, match=message):
        fortune_topics(**{"topics": ("cats", "dogs"), **kwargs}, root=fake_fortunes)


@needs_fortunes
def test_the_real_topic_set():
    d = fortune_topics()
    assert d["train"].features["label"].names == list(FORTUNE_TOPICS)
    assert (len(d["train"]), len(d["test"])) == (1051, 263)
    assert np.bincount(d["test"]["label"]).tolist() == [60, 60, 60, 23, 60]  # sports has 114 quotes


def test_topic_quiz_messages(fake_fortunes):
    split = fortune_topics(("cats", "dogs"), root=fake_fortunes)["test"]
    quiz = topic_quiz(split)
    assert quiz.column_names == ["messages"]
    user, assistant = quiz[0]["messages"]
    assert user["role"] == "user" and "cats or dogs?" in user["content"] and split[0]["text"] in user["content"]
    assert assistant == {"role": "assistant", "content": ["cats", "dogs"][split[0]["label"]]}
    assert quiz_messages("q", ("a", "b", "c"))[0]["content"].startswith("Which topic is this quote from: a, b or c?")
    with pytest.raises(ValueError, match="empty dataset"):
        topic_quiz(split.select([]))


# ---- metrics --------------------------------------------------------------------------------------------------------
def test_classification_metrics_match_sklearn():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    logits, labels = rng.normal(size=(50, 4)), rng.integers(0, 4, 50)
    m = classification_metrics((logits, labels))
    assert m["accuracy"] == pytest.approx(np.mean(logits.argmax(1) == labels))
    assert m["f1"] == pytest.approx(f1_score(labels, logits.argmax(1), average="weighted"))
    assert classification_metrics((np.eye(3), [0, 1, 2])) == {"accuracy": 1.0, "f1": 1.0}


def test_classification_metrics_takes_an_eval_prediction():
    from transformers import EvalPrediction

    m = classification_metrics(EvalPrediction(predictions=np.eye(2)[[1, 0, 0, 1]], label_ids=np.array([0, 1, 0, 1])))
    assert m["accuracy"] == 0.5  # the book's example


@pytest.mark.parametrize(
    "logits, labels, message",
    [(np.zeros(4), [0, 1, 0, 1], "expected logits"), (np.zeros((3, 2)), [0, 1], "expected logits")],
)
def test_classification_metrics_bad_shapes(logits, labels, message):
    with pytest.raises(ValueError, match=message):
        classification_metrics((logits, labels))


def test_classification_metrics_empty():
    with pytest.raises(ValueError, match="evaluation set is empty"):
        classification_metrics((np.zeros((0, 3)), []))


def test_confusion_matrix_rows_and_counts():
    refs, preds = [0, 0, 0, 1, 2, 2], [0, 1, 1, 1, 2, 0]
    cm = plot_confusion_matrix(refs, preds, ["a", "b", "c"])
    np.testing.assert_allclose(cm.sum(1), 1)
    np.testing.assert_allclose(cm[0], [1 / 3, 2 / 3, 0])
    counts = plot_confusion_matrix(refs, preds, ["a", "b", "c"], normalize=None)
    assert counts.tolist() == [[1, 2, 0], [0, 1, 0], [1, 0, 1]]


def test_confusion_matrix_keeps_classes_never_seen():
    cm = plot_confusion_matrix([0, 0], [0, 0], ["a", "b", "c"], normalize=None)
    assert cm.shape == (3, 3)


# ---- perplexity and choice scoring on a tiny real transformer --------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_lm():
    "A tiny random Llama with the real SmolLM2 tokenizer's vocabulary size and chat template."
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2
    )
    return LlamaForCausalLM(config).eval()


class CharTokenizer:
    "Characters as token ids (a-z -> 1..26), 0 for padding; enough for perplexity."

    pad_token_id, eos_token_id = 0, 0

    def __call__(self, text, truncation=True, max_length=256, add_special_tokens=True):
        return {"input_ids": [1 + (ord(c) - 97) % 26 for c in text][:max_length]}


def test_perplexity_is_the_exp_of_the_models_own_loss(tiny_lm):
    tok = CharTokenizer()
    ids = torch.tensor([tok("hello world")["input_ids"]])
    expected = torch.exp(tiny_lm(input_ids=ids, labels=ids).loss).item()
    assert perplexity(tiny_lm, tok, ["hello world"]) == pytest.approx(expected, rel=1e-5)


def test_perplexity_does_not_depend_on_batching_or_padding(tiny_lm):
    texts = ["a", "short one", "a much longer text than the others", "mid length"]
    tok = CharTokenizer()
    one = perplexity(tiny_lm, tok, [t for t in texts if len(t) > 1], batch_size=1)
    assert perplexity(tiny_lm, tok, texts[1:], batch_size=3) == pytest.approx(one, rel=1e-5)


def test_perplexity_truncates_and_restores_training_mode(tiny_lm):
    tok = CharTokenizer()
    tiny_lm.train()
    try:
        assert perplexity(tiny_lm, tok, ["abcdefgh"], max_length=3) == pytest.approx(
            perplexity(tiny_lm, tok, ["abc"]), rel=1e-5
        )
        assert tiny_lm.training
    finally:
        tiny_lm.eval()


@pytest.mark.parametrize(
    "texts, kwargs, message",
    [([], {}, "at least one text"), (["a", "b"], {}, "too short"), (["ab"], {"batch_size": 0}, "batch_size must")],
)
def test_perplexity_bad_input(tiny_lm, texts, kwargs, message):
    with pytest.raises(ValueError, match=message):
        perplexity(tiny_lm, CharTokenizer(), texts, **kwargs)


@pytest.fixture(scope="module")
def chat_tokenizer(offline_home):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained("HuggingFaceTB/SmolLM2-135M-Instruct")


class FavouriteTokenLM(nn.Module):
    "Always gives the highest logit to one token id."

    def __init__(self, favourite: int, vocab: int = 49152):
        super().__init__()
        self.favourite, self.vocab, self.dummy = favourite, vocab, nn.Parameter(torch.zeros(1))

    def forward(self, input_ids):
        logits = torch.zeros(*input_ids.shape, self.vocab)
        logits[..., self.favourite] = 1.0
        return type("Out", (), {"logits": logits})()


def test_choice_accuracy_picks_the_most_likely_first_token(chat_tokenizer):
    choices = ("computers", "politics", "sports")
    sports = chat_tokenizer("sports", add_special_tokens=False)["input_ids"][0]
    questions = [quiz_messages(f"quote {i}", choices) for i in range(4)]
    model = FavouriteTokenLM(sports).train()
    acc, picks = choice_accuracy(
        model, chat_tokenizer, questions, ["sports", "sports", "politics", "computers"], choices
    )
    assert picks == ["sports"] * 4 and acc == 0.5
    assert model.training  # put back as it was


@pytest.mark.parametrize(
    "answers, choices, message",
    [
        (["sports"], ("sport", "sports"), "share a first token"),
        (["chess"], ("sports", "politics"), "not among the choices"),
        ([], ("sports", "politics"), "one answer per question"),
    ],
)
def test_choice_accuracy_bad_input(chat_tokenizer, answers, choices, message):
    with pytest.raises(ValueError, match=message):
        choice_accuracy(FavouriteTokenLM(0), chat_tokenizer, [quiz_messages("q", choices)], answers, choices)


# ---- LoRA -----------------------------------------------------------------------------------------------------------
def test_lora_param_count():
    assert lora_param_count(10_000, 20_000, 8) == 240_000  # the book's example
    assert lora_param_count(576, 192, 8) == 6_144
    for bad in ((0, 5, 8), (5, 5, 0), (5, 5, -1), (5, 5, 2.5)):
        with pytest.raises(ValueError, match="must be"):
            lora_param_count(*bad)


def test_lora_linear_starts_at_the_base_and_merges_exactly():
    torch.manual_seed(0)
    base = nn.Linear(12, 7)
    lora = LoRALinear(base, r=3, alpha=6)
    x = torch.randn(5, 12)
    torch.testing.assert_close(lora(x), base(x))
    nn.init.normal_(lora.lora_B)
    manual = base(x) + 2.0 * x @ lora.lora_A.T @ lora.lora_B.T  # alpha / r = 2
    torch.testing.assert_close(lora(x), manual)
    torch.testing.assert_close(lora.merged()(x), lora(x), rtol=1e-5, atol=1e-5)
    assert [n for n, p in lora.named_parameters() if p.requires_grad] == ["lora_A", "lora_B"]


def test_lora_linear_trains_only_the_adapter():
    torch.manual_seed(0)
    lora = LoRALinear(nn.Linear(4, 4, bias=False), r=2)
    w0 = lora.base.weight.clone()
    opt = torch.optim.SGD([p for p in lora.parameters() if p.requires_grad], lr=0.1)
    for _ in range(3):
        lora(torch.randn(8, 4)).pow(2).sum().backward()
        opt.step()
        opt.zero_grad()
    torch.testing.assert_close(lora.base.weight, w0)
    assert lora.lora_B.abs().sum() > 0
    assert lora.merged().bias is None


def test_lora_linear_dropout_touches_the_adapter_only():
    torch.manual_seed(0)
    lora = LoRALinear(nn.Linear(6, 6), r=2, dropout=0.9).train()
    x = torch.randn(3, 6)
    torch.testing.assert_close(lora(x), lora.base(x))  # B = 0: whatever the dropout does, the base is untouched


@pytest.mark.parametrize("bad, message", [({"r": 0}, "r must be"), ({"r": -2}, "r must be")])
def test_lora_linear_bad_rank(bad, message):
    with pytest.raises(ValueError, match=message):
        LoRALinear(nn.Linear(2, 2), **bad)


def test_lora_linear_needs_a_linear():
    with pytest.raises(TypeError, match="wraps an nn.Linear"):
        LoRALinear(nn.Embedding(3, 2))


@pytest.fixture
def tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=50,
        hidden_size=24,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    return LlamaForCausalLM(config).eval()


def test_add_lora_equals_peft_on_a_llama(tiny_llama):
    "Same A and B in our layers and peft's: same logits; same merged weights as merge_and_unload."
    import copy

    from peft import LoraConfig, get_peft_model

    ours = add_lora(copy.deepcopy(tiny_llama), ("q_proj", "v_proj"), r=4, alpha=8)
    theirs = get_peft_model(tiny_llama, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])).eval()
    peft_layers = {n.removeprefix("base_model.model."): m for n, m in theirs.named_modules() if hasattr(m, "lora_A")}
    with torch.no_grad():
        for name, layer in ours.named_modules():
            if isinstance(layer, LoRALinear):
                nn.init.normal_(peft_layers[name].lora_B["default"].weight)
                layer.lora_A.copy_(peft_layers[name].lora_A["default"].weight)
                layer.lora_B.copy_(peft_layers[name].lora_B["default"].weight)
    assert sum(p.numel() for p in ours.parameters() if p.requires_grad) == theirs.get_nb_trainable_parameters()[0]
    ids = torch.randint(0, 50, (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(ours(ids).logits, theirs(ids).logits)
    merged = theirs.merge_and_unload()
    for i in range(2):
        for proj in ("q_proj", "v_proj"):
            ours_w = getattr(ours.model.layers[i].self_attn, proj).merged().weight
            torch.testing.assert_close(ours_w, getattr(merged.model.layers[i].self_attn, proj).weight)


def test_add_lora_freezes_everything_else(tiny_llama):
    add_lora(tiny_llama, ("q_proj",), r=2)
    trainable = {n for n, p in tiny_llama.named_parameters() if p.requires_grad}
    assert trainable and all(n.endswith(("lora_A", "lora_B")) and "q_proj" in n for n in trainable)
    assert len(trainable) == 2 * 2  # 2 layers × (A, B)


def test_add_lora_unknown_target_lists_the_linears(tiny_llama):
    with pytest.raises(ValueError, match=r"\['qkv'\] match no nn.Linear.*'q_proj'"):
        add_lora(tiny_llama, ("q_proj", "qkv"))


def test_add_lora_bad_rank_changes_nothing(tiny_llama):
    with pytest.raises(ValueError, match="r must be"):
        add_lora(tiny_llama, r=0)
    assert all(p.requires_grad for p in tiny_llama.parameters())


def test_the_books_lora_line_on_the_real_smollm2(offline_home):
    "Book listing 6.27 on the real SmolLM2-135M-Instruct (the architecture of the book's SmolLM-135M)."
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained("HuggingFaceTB/SmolLM2-135M-Instruct")
    assert not getattr(model.config, "genaibook_twin", True)  # the real weights
    lora = get_peft_model(model, LoraConfig(r=8, lora_alpha=32, lora_dropout=0.05, task_type="CAUSAL_LM"))
    trainable, total = lora.get_nb_trainable_parameters()
    assert (trainable, total) == (460_800, 134_975_808)
    assert f"{100 * trainable / total:.4f}" == "0.3414"
    assert 30 * (lora_param_count(576, 576, 8) + lora_param_count(192, 576, 8)) == 460_800


# ---- absmax quantization --------------------------------------------------------------------------------------------
BOOK_X = [1.2, -0.5, -4.3, 1.2, -3.1, 0.8, 2.4, 5.4, 0.3]


def test_absmax_reproduces_the_books_arrays():
    q, scale = absmax_quantize(BOOK_X)
    assert scale == 23.518518518518515
    assert q.dtype == np.int8 and q.tolist() == [28, -12, -101, 28, -73, 19, 56, 127, 7]
    np.testing.assert_allclose(
        absmax_dequantize(q, scale),
        [1.19055118, -0.51023622, -4.29448819, 1.19055118, -3.10393701, 0.80787402, 2.38110236, 5.4, 0.2976378],
        atol=1e-8,
    )
    np.testing.assert_allclose(
        np.array(BOOK_X) - absmax_dequantize(q, scale),
        [0.00944882, 0.01023622, -0.00551181, 0.00944882, 0.00393701, -0.00787402, 0.01889764, 0.0, 0.0023622],
        atol=1e-8,
    )


def test_absmax_round_trip_error_is_at_most_half_a_step():
    x = np.random.default_rng(0).normal(size=1000)
    for bits in (8, 4, 2):
        q, scale = absmax_quantize(x, bits)
        assert np.abs(q).max() == 2 ** (bits - 1) - 1
        assert np.abs(x - absmax_dequantize(q, scale)).max() <= 0.5 / scale + 1e-12


@pytest.mark.parametrize(
    "x, bits, error, message",
    [
        ([0.0, 0.0], 8, ValueError, "not all zero"),
        ([1.0, np.nan], 8, ValueError, "finite"),
        ([1.0, np.inf], 8, ValueError, "finite"),
        ([], 8, ValueError, "no values"),
        ([1.0], 16, ValueError, "bits must be"),
        ([1.0], 1, ValueError, "bits must be"),
    ],
)
def test_absmax_bad_input(x, bits, error, message):
    with pytest.raises(error, match=message):
        absmax_quantize(x, bits)


# ---- the chapter's stand-ins ----------------------------------------------------------------------------------------
@needs_fortunes
def test_ag_news_stand_in_has_ag_news_shape(offline_home):
    from datasets import load_dataset

    from genaibook.offline import lookup

    assert lookup("fancyzhx/ag_news").real is False
    d = load_dataset("fancyzhx/ag_news")
    assert set(d) == {"train", "test"} and d["train"].column_names == ["text", "label"]
    assert d["train"].features["label"].names == ["World", "Sports", "Business", "Sci/Tech"]


@needs_fortunes
def test_guanaco_stand_in_has_the_human_assistant_format(offline_home):
    from datasets import load_dataset

    row = load_dataset("timdettmers/openassistant-guanaco", split="train")[0]["text"]
    assert row.startswith("### Human: Which topic") and "### Assistant: " in row


# ---- preference pairs (chapter 10) ----------------------------------------------------------------------------------
def test_topic_preferences_pairs_a_right_and_a_wrong_topic(fake_fortunes):
    from genaibook.finetune import topic_preferences

    split = fortune_topics(("cats", "dogs", "fish"), root=fake_fortunes)["train"]
    prefs = topic_preferences(split, seed=0)
    assert prefs.column_names == ["prompt", "chosen", "rejected"]
    names = ("cats", "dogs", "fish")
    for row, label in zip(prefs, split["label"]):
        assert row["chosen"] == [{"role": "assistant", "content": names[label]}]
        assert row["rejected"][0]["content"] in names and row["rejected"][0]["content"] != names[label]
    assert list(topic_preferences(split, seed=0)["rejected"]) == list(prefs["rejected"])
    with pytest.raises(ValueError, match="empty dataset"):
        topic_preferences(split.select([]))


def test_completion_logprobs_score_only_the_reply(chat_tokenizer):
    from genaibook.finetune import completion_logprobs

    computers = chat_tokenizer("computers", add_special_tokens=False)["input_ids"]
    work = chat_tokenizer("work", add_special_tokens=False)["input_ids"]
    assert len(computers) == len(work) == 1  # equal lengths: only the favoured token differs
    prompt = quiz_messages("a quote", ("computers", "work"))
    model = FavouriteTokenLM(computers[0])
    favour, other = completion_logprobs(model, chat_tokenizer, prompt, ["computers", "work"])
    assert favour - other == pytest.approx(1.0, abs=1e-4)  # the favoured token's logit is 1 higher
    with pytest.raises(ValueError, match="at least one completion"):
        completion_logprobs(model, chat_tokenizer, prompt, [])
