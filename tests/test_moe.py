"""genaibook.moe (chapter 10): routing, dispatch against a dense reference, the load-balancing loss, training
behaviour, Mixtral's parameter arithmetic against transformers, and bad input."""

import pytest
import torch
import torch.nn.functional as F

from genaibook.moe import Expert, MoEFeedForward, load_balancing_loss, mixtral_parameter_counts


def dense_reference(moe, x):
    "Every expert on every token, mixed with the top-k weights (zero elsewhere)."
    probs, chosen, weights = moe.route(x)
    outs = torch.stack([e(x) for e in moe.experts], 1)
    mix = torch.zeros(len(x), moe.n_experts).scatter(1, chosen, weights)
    return (mix[..., None] * outs).sum(1)


@pytest.mark.parametrize("n_experts, top_k", [(4, 1), (4, 2), (8, 2), (3, 3)])
def test_dispatch_equals_the_dense_computation(n_experts, top_k):
    torch.manual_seed(0)
    moe = MoEFeedForward(6, 10, n_experts, top_k)
    x = torch.randn(2, 7, 6)
    y, _ = moe(x)
    torch.testing.assert_close(y.reshape(-1, 6), dense_reference(moe, x.reshape(-1, 6)), rtol=1e-5, atol=1e-5)


def test_routing_weights_sum_to_one_over_distinct_experts():
    torch.manual_seed(0)
    moe = MoEFeedForward(5, 8, n_experts=6, top_k=3)
    probs, chosen, weights = moe.route(torch.randn(20, 5))
    torch.testing.assert_close(weights.sum(-1), torch.ones(20))
    assert all(len(set(row.tolist())) == 3 for row in chosen)
    torch.testing.assert_close(probs.sum(-1), torch.ones(20))


def test_one_expert_with_top_1_is_a_plain_ffn():
    torch.manual_seed(0)
    moe = MoEFeedForward(4, 8, n_experts=1, top_k=1)
    x = torch.randn(3, 4)
    torch.testing.assert_close(moe(x)[0], moe.experts[0](x))
    assert moe(x)[1].item() == pytest.approx(1.0)


def test_load_balancing_loss_bounds():
    even = load_balancing_loss(torch.full((8, 4), 0.25), torch.arange(8).remainder(4)[:, None])
    assert even.item() == pytest.approx(1.0)
    collapsed = load_balancing_loss(
        F.one_hot(torch.zeros(8, dtype=torch.long), 4).float(), torch.zeros(8, 1, dtype=torch.long)
    )
    assert collapsed.item() == pytest.approx(4.0)


def test_gradients_reach_router_and_chosen_experts_only():
    torch.manual_seed(0)
    moe = MoEFeedForward(4, 8, n_experts=4, top_k=1)
    x = torch.randn(1, 4)
    y, aux = moe(x)
    (y.sum() + aux).backward()
    chosen = moe.route(x)[1].item()
    assert moe.router.weight.grad is not None and moe.router.weight.grad.abs().sum() > 0
    for e, expert in enumerate(moe.experts):
        has_grad = expert.down.weight.grad is not None and expert.down.weight.grad.abs().sum() > 0
        assert has_grad == (e == chosen)


def test_parameter_counts():
    moe = MoEFeedForward(16, 32, n_experts=8, top_k=2)
    expert = sum(p.numel() for p in Expert(16, 32).parameters())
    assert expert == 3 * 16 * 32
    assert moe.parameter_counts() == {"total": 16 * 8 + 8 * expert, "active": 16 * 8 + 2 * expert}
    assert sum(p.numel() for p in moe.parameters()) == moe.parameter_counts()["total"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n_experts": 0}, "n_experts must be"),
        ({"top_k": 0}, "top_k must be"),
        ({"n_experts": 2, "top_k": 3}, "top_k must be"),
    ],
)
def test_bad_sizes(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MoEFeedForward(4, 8, **kwargs)


@pytest.mark.parametrize("tie, experts, k", [(False, 4, 2), (True, 3, 1), (False, 2, 2)])
def test_mixtral_counts_match_transformers(tie, experts, k):
    from transformers import MixtralConfig, MixtralForCausalLM

    config = MixtralConfig(
        vocab_size=50,
        hidden_size=24,
        intermediate_size=40,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        num_local_experts=experts,
        num_experts_per_tok=k,
        tie_word_embeddings=tie,
    )
    counts = mixtral_parameter_counts(config)
    assert counts["total"] == MixtralForCausalLM(config).num_parameters()
    assert counts["total"] == counts["shared"] + counts["experts"]
    assert counts["active"] <= counts["total"]


def test_mixtral_8x7b_is_about_47b_with_13b_active():
    from transformers import MixtralConfig

    counts = mixtral_parameter_counts(MixtralConfig())
    assert round(counts["total"] / 1e9, 1) == 46.7
    assert round(counts["active"] / 1e9, 1) == 12.9
