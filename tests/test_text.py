"""genaibook.text: the hand-written generate_text() against transformers' model.generate on the offline Qwen2 and GPT-2
twins (greedy and seeded sampling, token for token), the KV cache, the filters (against transformers' warpers and by
their definitions), the empirical sampling distribution, the tables and plots, and the explorer's static fallback.

Twins have random weights, so nothing here asserts what the text says: only that the two implementations agree.
"""

import copy
import sys
from types import SimpleNamespace

import matplotlib.pyplot as plt
import pandas as pd
import pytest
import torch
from scipy.stats import chisquare
from transformers.generation.logits_process import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

from genaibook import text
from genaibook.offline import quiet_libraries
from genaibook.text import (
    explore_sampling,
    filter_logits,
    filter_top_k,
    filter_top_p,
    generate_text,
    next_token_logits,
    next_token_probs,
    pick_next_token,
    plot_next_tokens,
    plot_sampling,
    sampling_table,
    scale_logits,
    token_label,
    top_next_tokens,
    widgets_available,
)

PROMPT = "It was a dark and stormy"
MODELS = {"qwen": "Qwen/Qwen2-0.5B", "gpt2": "openai-community/gpt2"}


def _load(repo_id):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with quiet_libraries():
        return AutoTokenizer.from_pretrained(repo_id), AutoModelForCausalLM.from_pretrained(repo_id).eval()


@pytest.fixture(scope="module")
def lms(offline_home):
    "name -> (tokenizer, model) for the Qwen2 and GPT-2 twins."
    return {name: _load(repo_id) for name, repo_id in MODELS.items()}


@pytest.fixture(params=list(MODELS))
def lm(request, lms):
    return lms[request.param]


def _ids(tokenizer, *prompts):
    return tokenizer(list(prompts), return_tensors="pt").input_ids


def _hf(model, input_ids, seed=None, **kwargs):
    "model.generate with Top-K off unless asked (its default is top_k=50 when sampling)."
    if kwargs.get("do_sample"):
        kwargs.setdefault("top_k", 0)
    if seed is not None:
        torch.manual_seed(seed)
    return model.generate(input_ids, **kwargs)


def _mine(model, tokenizer, input_ids, seed=None, **kwargs):
    if seed is not None:
        torch.manual_seed(seed)
    return generate_text(model, tokenizer, input_ids, **kwargs)


# ---------------------------------------------------------------- the twins' generation config adds nothing


def test_generation_config_adds_no_processors(lm):
    "Equality with model.generate is only meaningful if its config adds no penalties, beams or forced tokens."
    tokenizer, model = lm
    g = model.generation_config
    assert model.config.genaibook_twin
    assert g.repetition_penalty in (None, 1.0) and g.no_repeat_ngram_size in (None, 0) and g.num_beams in (None, 1)
    assert g.bad_words_ids is None and g.suppress_tokens is None and g.begin_suppress_tokens is None
    assert g.forced_bos_token_id is None and g.forced_eos_token_id is None and g.min_new_tokens is None
    assert g.min_length in (None, 0) and g.temperature in (None, 1.0) and g.top_p in (None, 1.0) and not g.do_sample
    assert g.eos_token_id == tokenizer.eos_token_id


# ---------------------------------------------------------------- greedy: identical ids


@pytest.mark.parametrize(
    "prompts,max_length", [((PROMPT,), 27), (("Hello",), 12), (("The quick brown fox", "A B C D"), 20)]
)
def test_greedy_matches_model_generate(lm, prompts, max_length):
    tokenizer, model = lm
    input_ids = _ids(tokenizer, *prompts)
    assert input_ids.shape[1] == len(tokenizer(prompts[0]).input_ids)  # equal-length prompts: no padding
    ours = generate_text(model, tokenizer, input_ids, max_length=max_length)
    assert torch.equal(ours, _hf(model, input_ids, max_length=max_length, do_sample=False))
    assert ours.shape == (len(prompts), max_length)


def test_cache_and_no_cache_agree(lm):
    tokenizer, model = lm
    input_ids = _ids(tokenizer, PROMPT)
    assert torch.equal(
        generate_text(model, tokenizer, input_ids, max_length=30),
        generate_text(model, tokenizer, input_ids, max_length=30, use_cache=False),
    )
    kw = dict(max_length=30, do_sample=True, temperature=0.9, top_k=40)
    assert torch.equal(
        generate_text(model, tokenizer, input_ids, generator=torch.Generator().manual_seed(3), **kw),
        generate_text(model, tokenizer, input_ids, generator=torch.Generator().manual_seed(3), use_cache=False, **kw),
    )


def test_cache_feeds_only_the_new_token(lms):
    "With the cache, every call after the first sees one token; without it, the whole sequence."
    tokenizer, model = lms["gpt2"]
    lengths = []
    hook = model.register_forward_pre_hook(
        lambda m, args, kwargs: lengths.append(kwargs["input_ids"].shape[1]), with_kwargs=True
    )
    try:
        generate_text(model, tokenizer, _ids(tokenizer, PROMPT), max_length=10)
        cached, lengths[:] = lengths[:], []
        generate_text(model, tokenizer, _ids(tokenizer, PROMPT), max_length=10, use_cache=False)
    finally:
        hook.remove()
    n = len(tokenizer(PROMPT).input_ids)
    assert cached == [n] + [1] * (9 - n)
    assert lengths == list(range(n, 10))


def test_next_token_logits_with_cache_matches_full_pass(lms):
    tokenizer, model = lms["gpt2"]
    input_ids = _ids(tokenizer, PROMPT)
    _, cache = next_token_logits(model, input_ids)
    step, _ = next_token_logits(model, torch.tensor([[262]]), cache)
    full, none = next_token_logits(model, torch.cat([input_ids, torch.tensor([[262]])], 1), use_cache=False)
    assert none is None and step.dtype == torch.float32
    torch.testing.assert_close(step, full, atol=1e-4, rtol=1e-4)


# ---------------------------------------------------------------- seeded sampling: identical ids


SAMPLING = [
    dict(),
    dict(top_k=0),
    dict(top_k=5),
    dict(top_k=1),
    dict(top_p=0.9, temperature=0.7),
    dict(top_p=0.3),
    dict(top_k=50, top_p=0.5, temperature=1.3),
    dict(temperature=2.0),
    dict(top_p=0.05),
    dict(temperature=0.01),
]


@pytest.mark.parametrize("settings", SAMPLING, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()) or "plain")
def test_seeded_sampling_matches_model_generate(lm, settings):
    tokenizer, model = lm
    input_ids = _ids(tokenizer, PROMPT)
    for seed in (0, 70):
        ours = _mine(model, tokenizer, input_ids, seed, max_length=25, do_sample=True, **settings)
        assert torch.equal(ours, _hf(model, input_ids, seed, max_length=25, do_sample=True, **settings)), (
            settings,
            seed,
        )


def test_generator_is_reproducible_and_leaves_global_rng_alone(lms):
    tokenizer, model = lms["gpt2"]
    input_ids = _ids(tokenizer, PROMPT)
    run = lambda seed: generate_text(
        model, tokenizer, input_ids, max_length=30, do_sample=True, generator=torch.Generator().manual_seed(seed)
    )
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a, b, c = run(1), run(1), run(2)
    assert torch.equal(torch.rand(1), before)  # the global generator was not used
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_low_temperature_sampling_is_greedy(lm):
    tokenizer, model = lm
    input_ids = _ids(tokenizer, PROMPT)
    greedy = generate_text(model, tokenizer, input_ids, max_length=20)
    # float32 logits of a bfloat16 model tie often; a tiny top_k breaks no argmax, so compare with top_k=1
    assert torch.equal(generate_text(model, tokenizer, input_ids, max_length=20, do_sample=True, top_k=1), greedy)


# ---------------------------------------------------------------- stopping at the end of sequence


@pytest.mark.parametrize("name", list(MODELS))
def test_stops_at_eos_like_model_generate(lms, name):
    "Make a later greedy token (one not generated before it) the end-of-sequence id: both loops stop right after it."
    tokenizer, model = lms[name]
    input_ids = _ids(tokenizer, PROMPT)
    n = input_ids.shape[1]
    new = generate_text(model, tokenizer, input_ids, max_length=20)[0, n:].tolist()
    j = max(i for i in range(len(new)) if new[i] not in new[:i])  # 0 if the twin repeats one token
    model = copy.deepcopy(model)
    model.generation_config.eos_token_id = new[j]
    ours = generate_text(model, tokenizer, input_ids, max_length=20)
    assert ours.shape[1] == n + j + 1 and ours[0, -1].item() == new[j]
    assert torch.equal(ours, _hf(model, input_ids, max_length=20, do_sample=False))


class Counter(torch.nn.Module):
    "Predicts token t+1 after token t; returns bare logits and no cache."

    def __init__(self, vocab):
        super().__init__()
        self.vocab = vocab

    def forward(self, input_ids, **kwargs):
        return torch.nn.functional.one_hot((input_ids + 1) % self.vocab, self.vocab).float() * 10


def test_batch_pads_finished_rows_and_stops_when_all_end():
    tok = SimpleNamespace(eos_token_id=9)
    out = generate_text(Counter(12), tok, torch.tensor([[5], [7], [1]]), max_length=6)
    assert out.tolist() == [[5, 6, 7, 8, 9, 9], [7, 8, 9, 9, 9, 9], [1, 2, 3, 4, 5, 6]]  # row 3 never ends: max_length
    assert generate_text(Counter(12), tok, torch.tensor([[8]]), max_length=50).tolist() == [[8, 9]]
    assert generate_text(
        Counter(12), SimpleNamespace(eos_token_id=None), torch.tensor([[8]]), max_length=5
    ).tolist() == [[8, 9, 10, 11, 0]]


# ---------------------------------------------------------------- clear errors


@pytest.mark.parametrize(
    "kwargs,error,message",
    [
        (dict(temperature=0, do_sample=True), ValueError, "temperature must be a number > 0"),
        (dict(temperature=-0.5), ValueError, "do_sample=False"),
        (dict(temperature="hot"), ValueError, "temperature"),
        (dict(top_k=-3), ValueError, "top_k must be a non-negative integer or None, got -3"),
        (dict(top_k=2.5), ValueError, "top_k"),
        (dict(top_k=True), ValueError, "top_k"),
        (dict(top_p=0.0), ValueError, "top_p must be a number in (0, 1]"),
        (dict(top_p=1.01), ValueError, "(0, 1]"),
        (dict(top_p=-0.2), ValueError, "top_p"),
        (dict(max_length=7), ValueError, "greater than the prompt's 7 tokens"),
        (dict(max_length=3), ValueError, "max_length counts the prompt"),
        (dict(max_length=20.0), ValueError, "max_length"),
        (dict(input_ids=torch.tensor([1, 2, 3])), ValueError, "input_ids[None]"),
        (dict(input_ids=torch.zeros(1, 0, dtype=torch.long)), ValueError, "non-empty"),
        (dict(input_ids=torch.zeros(1, 2, 3, dtype=torch.long)), ValueError, "2-D"),
        (dict(input_ids=[[1, 2, 3]]), TypeError, "torch.Tensor"),
        (dict(input_ids=torch.tensor([[1.0, 2.0]])), TypeError, "integer ids"),
    ],
)
def test_bad_inputs(lms, kwargs, error, message):
    tokenizer, model = lms["qwen"]
    kwargs = {"input_ids": _ids(tokenizer, PROMPT), **kwargs}
    with pytest.raises(error) as e:
        generate_text(model, tokenizer, **kwargs)
    assert message in str(e.value)


# ---------------------------------------------------------------- the filters


def test_temperature_math():
    z = torch.randn(3, 50, generator=torch.Generator().manual_seed(0))
    for T in (0.1, 0.5, 1.0, 3.0):
        torch.testing.assert_close(
            scale_logits(z, T).softmax(-1), torch.exp(z / T) / torch.exp(z / T).sum(-1, keepdim=True)
        )
        assert torch.equal(scale_logits(z, T).argsort(-1), z.argsort(-1))  # order never changes
    entropy = lambda p: -(p * p.log()).sum(-1)
    e = [entropy(next_token_probs(z, temperature=T)).mean().item() for T in (0.2, 0.5, 1.0, 2.0, 5.0)]
    assert e == sorted(e)  # flatter and flatter
    assert next_token_probs(z, temperature=1e-3).max(-1).values.min() > 0.99  # nearly one-hot


@pytest.mark.parametrize("k", [1, 2, 7, 49, 50, 1000])
def test_top_k_keeps_exactly_k_distinct_scores(k):
    z = torch.randn(4, 50, generator=torch.Generator().manual_seed(k))  # distinct with probability 1
    kept = filter_top_k(z, k).isfinite()
    assert (kept.sum(-1) == min(k, 50)).all()
    assert torch.equal(kept, torch.zeros_like(kept).scatter(-1, z.topk(min(k, 50)).indices, True))  # the k highest
    assert torch.equal(filter_top_k(z, k)[kept], z[kept])  # survivors unchanged


def test_top_k_keeps_ties_like_transformers():
    z = torch.tensor([[3.0, 2.0, 2.0, 2.0, 1.0]])
    assert filter_top_k(z, 2).isfinite().tolist() == [[True, True, True, True, False]]
    assert torch.equal(filter_top_k(z, 2), TopKLogitsWarper(2)(None, z))


def _smallest_nucleus(probs, p):
    "Brute force: the number of most likely tokens needed to reach mass p (at least one)."
    s = probs.sort(descending=True).values.cumsum(0)
    return max(1, int((s < p).sum().item()) + 1)


@pytest.mark.parametrize("seed", range(6))
def test_top_p_keeps_the_smallest_set_with_mass_p(seed):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(30, generator=g) * (0.5 + seed)
    probs = z.softmax(-1)
    for p in (0.01, 0.1, 0.33, 0.5, 0.77, 0.9, 0.999):
        kept = filter_top_p(z, p).isfinite()
        n = _smallest_nucleus(probs, p)
        assert kept.sum().item() == n, (p, kept.sum().item(), n)
        assert probs[kept].sum() >= p - 1e-6 or n == 1  # enough mass ...
        assert probs[kept].min() >= probs[~kept].max() if (~kept).any() else True  # ... in the most likely tokens
        if n > 1:
            assert probs[kept].sum() - probs[kept].min() < p  # ... and no smaller set would do
    assert filter_top_p(z, 1e-9).isfinite().sum() == 1  # always at least one token
    assert torch.equal(filter_top_p(z, 1.0), z) and torch.equal(filter_top_p(z, None), z)


def test_filters_match_transformers_warpers():
    "Same masks as transformers' warpers, row by row, including bfloat16-style ties."
    g = torch.Generator().manual_seed(0)
    z = torch.randn(8, 5000, generator=g)
    tied = z.bfloat16().float()
    for scores in (z, tied):
        for T, k, p in [(1.0, None, 0.9), (0.7, 40, None), (1.3, 50, 0.5), (2.0, 3, 0.99), (0.5, None, 0.2)]:
            ref = TemperatureLogitsWarper(T)(None, scores) if T != 1.0 else scores
            if k:
                ref = TopKLogitsWarper(k)(None, ref)
            if p:
                ref = TopPLogitsWarper(p)(None, ref)
            assert torch.equal(filter_logits(scores, T, k, p), ref), (T, k, p)


def test_next_token_probs_is_a_distribution_over_the_survivors():
    z = torch.randn(2, 100, generator=torch.Generator().manual_seed(1))
    probs = next_token_probs(z, temperature=0.8, top_k=10, top_p=0.7)
    torch.testing.assert_close(probs.sum(-1), torch.ones(2))
    assert ((probs > 0).sum(-1) <= 10).all()
    survivors = filter_logits(z, 0.8, 10, 0.7).isfinite()
    assert torch.equal(probs > 0, survivors)


# ---------------------------------------------------------------- the empirical distribution of sampling


def test_sampling_distribution_total_variation():
    "20,000 draws over six tokens: total variation from the filtered softmax below 0.02 (typically about 0.005)."
    six = torch.tensor([2.0, 1.5, 1.0, 0.2, -0.5, -3.0])
    for T, k, p in [(1.0, None, None), (0.8, 4, 0.9), (2.0, None, 0.8), (0.5, 2, None)]:
        expected = next_token_probs(six, T, k, p)
        draws = pick_next_token(six.expand(20_000, -1), True, T, k, p, generator=torch.Generator().manual_seed(0))
        observed = torch.bincount(draws, minlength=6) / len(draws)
        assert (observed - expected).abs().sum().item() / 2 < 0.02, (T, k, p)
        assert observed[expected == 0].sum() == 0


def test_sampling_distribution_on_model_scores_chi_square(lms):
    "The Qwen twin's 300 best scores as a vocabulary; 30,000 draws; chi-square goodness of fit p > 0.001."
    tokenizer, model = lms["qwen"]
    logits, _ = next_token_logits(model, _ids(tokenizer, PROMPT))
    vocab = logits[0].topk(300).values * 40  # sharpen the twin's near-uniform scores so the filters bite
    for T, k, p in [(1.0, 10, None), (0.7, None, 0.8), (1.5, 50, 0.9)]:
        expected = next_token_probs(vocab, T, k, p)
        draws = pick_next_token(vocab.expand(30_000, -1), True, T, k, p, generator=torch.Generator().manual_seed(1))
        counts = torch.bincount(draws, minlength=300).double()
        kept = expected > 0
        assert counts[~kept].sum() == 0
        f_exp = expected[kept].double() / expected[kept].double().sum() * len(draws)
        assert chisquare(counts[kept].numpy(), f_exp.numpy()).pvalue > 1e-3, (T, k, p)


def test_greedy_pick_is_argmax():
    z = torch.randn(5, 40, generator=torch.Generator().manual_seed(2))
    assert torch.equal(pick_next_token(z), z.argmax(-1))
    assert torch.equal(pick_next_token(z, False, 0.1, 1, 0.1), z.argmax(-1))  # filters don't apply to greedy


# ---------------------------------------------------------------- tables, plots and the explorer


def test_top_next_tokens(lms):
    tokenizer, model = lms["qwen"]
    table = top_next_tokens(model, tokenizer, PROMPT, k=7)
    assert isinstance(table, pd.DataFrame) and list(table.columns) == ["token", "id", "probability"] and len(table) == 7
    logits, _ = next_token_logits(model, _ids(tokenizer, PROMPT))
    probs, ids = logits[0].softmax(-1).topk(7)
    assert table.id.tolist() == ids.tolist()
    assert table.token.tolist() == [tokenizer.decode(i) for i in ids]
    torch.testing.assert_close(torch.tensor(table.probability.values, dtype=torch.float32), probs)
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="k must be a positive int"):
            top_next_tokens(model, tokenizer, PROMPT, k=bad)


def test_plots_and_labels(lms):
    tokenizer, model = lms["qwen"]
    table = top_next_tokens(model, tokenizer, PROMPT, k=5)
    ax = plot_next_tokens(table, title="t")
    assert len(ax.patches) == 5 and ax.get_title() == "t"
    assert token_label(" night") == "' night'" and token_label("麗") == "'\\u9e97'" and token_label("é") == "'é'"
    logits, _ = next_token_logits(model, _ids(tokenizer, PROMPT))
    st = sampling_table(logits, tokenizer, temperature=0.7, top_k=3, n=12)
    assert list(st.columns) == ["token", "id", "probability", "kept", "filtered"] and len(st) == 12
    assert st.kept.tolist()[:3] == [True] * 3 and st.filtered[~st.kept].sum() == 0
    torch.testing.assert_close(st.filtered[st.kept].sum(), 1.0, atol=1e-5, rtol=0)
    fig, axes = plt.subplots(1, 2)
    assert plot_sampling(st, ax=axes[1]) is axes[1] and len(axes[1].patches) == 24


@pytest.fixture
def no_widget_env(monkeypatch):
    for k in ("IN_TEST", "GENAIBOOK_WIDGETS"):
        monkeypatch.delenv(k, raising=False)
    return monkeypatch


def test_widgets_unavailable_outside_a_kernel_under_tests_or_when_switched_off(no_widget_env):
    assert not widgets_available()  # pytest: no Jupyter kernel
    fake_shell = SimpleNamespace(kernel=object())
    no_widget_env.setattr("IPython.get_ipython", lambda: fake_shell)
    assert widgets_available()
    no_widget_env.setenv("GENAIBOOK_WIDGETS", "0")
    assert not widgets_available()
    no_widget_env.delenv("GENAIBOOK_WIDGETS")
    no_widget_env.setenv("IN_TEST", "1")
    assert not widgets_available()
    no_widget_env.delenv("IN_TEST")
    no_widget_env.setitem(sys.modules, "ipywidgets", None)  # import fails
    assert not widgets_available()


def test_explore_sampling_static_fallback(lms, no_widget_env, capsys):
    tokenizer, model = lms["qwen"]
    no_widget_env.setenv("IN_TEST", "1")
    ax = explore_sampling(model, tokenizer, PROMPT, temperature=0.5, top_k=8, n=15)
    assert isinstance(ax, plt.Axes) and len(ax.patches) == 30
    assert "temperature=0.50" in ax.get_title() and "top_k=8" in ax.get_title() and "random weights" in ax.get_title()
    assert "offline twin" in capsys.readouterr().out  # twin outputs are labelled
    with pytest.raises(ValueError, match="top_p"):
        explore_sampling(model, tokenizer, PROMPT, top_p=2)


def test_explore_sampling_interactive_redraws(lms, no_widget_env):
    ipywidgets = pytest.importorskip("ipywidgets")
    tokenizer, model = lms["qwen"]
    drawn = []
    real = text.plot_sampling
    no_widget_env.setattr(
        text, "plot_sampling", lambda table, ax=None, title=None: drawn.append((table, title)) or real(table, ax, title)
    )
    box = explore_sampling(model, tokenizer, PROMPT, top_k=10, interactive=True)
    assert isinstance(box, ipywidgets.VBox)
    t, k, p = box.children[0].children
    assert (k.value, p.value) == (10, 1.0)
    k.value = 0
    p.value = 0.5
    assert len(drawn) == 3
    assert "top_k=None" in drawn[-1][1] and "top_p=0.5" in drawn[-1][1]


def test_top_k_zero_means_off_as_in_model_generate():
    "The book passes top_k=0 to model.generate to switch Top-K off; generate and the filters accept it the same way."
    from genaibook.text import filter_top_k

    z = torch.randn(3, 50)
    assert torch.equal(filter_top_k(z, 0), z) and torch.equal(filter_top_k(z, None), z)
