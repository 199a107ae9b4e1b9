"genaibook.unets: the book's BasicUNet, SmallUNet shapes, conditioning and gradients, and clear errors for bad inputs."

import pytest
import torch
from diffusers.models.embeddings import get_timestep_embedding

from genaibook.unets import BasicUNet, ResBlock, SelfAttention, SmallUNet, timestep_embedding, trace_shapes, train_speed


def n_params(m):
    return sum(p.numel() for p in m.parameters())


@pytest.fixture
def cond_model():
    torch.manual_seed(0)
    return SmallUNet(widths=(16, 32, 64), num_classes=10)


# --- BasicUNet (listing 4.22) ---


def test_basic_unet_params_and_shapes():
    net = BasicUNet()
    assert n_params(net) == 309_057
    assert net(torch.rand(5, 1, 28, 28)).shape == (5, 1, 28, 28)
    assert BasicUNet(3, 3)(torch.rand(2, 3, 32, 32)).shape == (2, 3, 32, 32)


def test_basic_unet_trace_matches_the_book(capsys):
    trace = trace_shapes(BasicUNet(), torch.rand(1, 1, 28, 28))
    assert [s for _, s in trace] == [
        (32, 28, 28),
        (32, 14, 14),
        (64, 14, 14),
        (64, 7, 7),
        (64, 7, 7),
        (64, 7, 7),
        (64, 14, 14),
        (32, 14, 14),
        (32, 28, 28),
        (1, 28, 28),
    ]
    out = capsys.readouterr().out
    assert "down_layers.0" in out and "[1, 28, 28]" in out
    assert trace_shapes(BasicUNet(), torch.rand(1, 1, 28, 28), show=False) == trace
    assert capsys.readouterr().out == ""


def test_trace_leaves_no_hooks():
    net = BasicUNet()
    trace_shapes(net, torch.rand(1, 1, 28, 28), show=False)
    assert all(not m._forward_hooks for m in net.modules())


# --- SmallUNet shapes ---


@pytest.mark.parametrize("size", [28, 32])
@pytest.mark.parametrize(
    "kwargs",
    [
        dict(),
        dict(attention=False),
        dict(conditioning="film"),
        dict(blocks_per_level=2),
        dict(num_classes=10),
        dict(widths=(8, 16), norm_groups=4),
    ],
)
def test_smallunet_shapes(size, kwargs):
    model = SmallUNet(**{"widths": (16, 32, 64), **kwargs})
    x = torch.randn(2, 1, size, size)
    labels = torch.tensor([3, 10]) if kwargs.get("num_classes") else None
    out = model(x, torch.tensor([1, 999]), class_labels=labels)
    assert isinstance(out, torch.Tensor) and out.shape == x.shape


def test_smallunet_rgb_and_four_levels():
    model = SmallUNet(in_channels=3, out_channels=6, widths=(8, 16, 32, 32))
    assert model(torch.randn(2, 3, 32, 32), 5).shape == (2, 6, 32, 32)


def test_smallunet_trace(cond_model):
    trace = dict(trace_shapes(cond_model, torch.randn(1, 1, 28, 28), 10, class_labels=[1], show=False))
    assert (
        trace["mid_attn"] == (64, 7, 7) and trace["upsamplers.1"] == (16, 28, 28) and trace["conv_out"] == (1, 28, 28)
    )


@pytest.mark.parametrize("t", [7, 7.0, torch.tensor(7), torch.tensor([7]), torch.tensor([7, 7, 7])])
def test_timestep_forms_agree(cond_model, t):
    x, y = torch.randn(3, 1, 28, 28), torch.tensor([0, 1, 2])
    with torch.no_grad():
        torch.testing.assert_close(cond_model(x, t, class_labels=y), cond_model(x, torch.full((3,), 7), class_labels=y))


def test_config_and_null_class(cond_model):
    assert cond_model.null_class == 10 and cond_model.config.in_channels == 1 and cond_model.config.num_levels == 3
    assert SmallUNet(widths=(8, 16)).null_class is None


# --- clear errors ---


@pytest.mark.parametrize(
    "widths, size, msg",
    [((16, 32, 64), 30, "multiples of 4"), ((8, 16, 32, 32), 28, "multiples of 8"), ((16, 32), 27, "multiples of 2")],
)
def test_odd_sizes_error(widths, size, msg):
    with pytest.raises(ValueError, match=msg):
        SmallUNet(widths=widths)(torch.randn(1, 1, size, size), 1)


def test_wrong_channels_error():
    with pytest.raises(ValueError, match=r"\[B, 1, H, W\]"):
        SmallUNet(widths=(8, 16))(torch.randn(1, 3, 16, 16), 1)
    with pytest.raises(ValueError, match=r"\[B, 1, H, W\]"):
        SmallUNet(widths=(8, 16))(torch.randn(16, 16), 1)


def test_bad_timesteps_error():
    with pytest.raises(ValueError, match="one timestep per image"):
        SmallUNet(widths=(8, 16))(torch.randn(2, 1, 16, 16), torch.tensor([1, 2, 3]))


def test_class_label_errors(cond_model):
    x = torch.randn(2, 1, 28, 28)
    with pytest.raises(ValueError, match="pass class_labels"):
        cond_model(x, 1)
    with pytest.raises(ValueError, match=r"must be in 0\.\.10"):
        cond_model(x, 1, class_labels=torch.tensor([0, 11]))
    with pytest.raises(ValueError, match=r"must be in 0\.\.10"):
        cond_model(x, 1, class_labels=torch.tensor([-1, 0]))
    with pytest.raises(ValueError, match="one label per image"):
        cond_model(x, 1, class_labels=torch.tensor([0, 1, 2]))
    with pytest.raises(TypeError, match="must be integers"):
        cond_model(x, 1, class_labels=torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="without num_classes"):
        SmallUNet(widths=(8, 16))(torch.randn(2, 1, 16, 16), 1, class_labels=[0, 1])
    assert cond_model(x, 1, class_labels=10).shape == x.shape  # one label for the batch; the null class is valid


@pytest.mark.parametrize(
    "kwargs, msg",
    [
        (dict(widths=(12, 24)), "multiple of norm_groups=8"),
        (dict(widths=()), "non-empty"),
        (dict(widths=(16, 40), attention_heads=3), "must divide"),
        (dict(conditioning="concat"), '"add" or "film"'),
        (dict(num_classes=0), "positive int"),
        (dict(blocks_per_level=0), "blocks_per_level"),
    ],
)
def test_constructor_errors(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        SmallUNet(**kwargs)


# --- conditioning and gradients ---


@pytest.mark.parametrize("conditioning", ["add", "film"])
def test_time_and_class_conditioning_change_the_output(conditioning):
    torch.manual_seed(0)
    model = SmallUNet(widths=(16, 32), conditioning=conditioning, num_classes=3).eval()
    x, y = torch.randn(2, 1, 16, 16), torch.tensor([0, 1])
    with torch.no_grad():
        base = model(x, 10, class_labels=y)
        assert (model(x, 900, class_labels=y) - base).abs().mean() > 1e-3
        assert (model(x, 10, class_labels=torch.tensor([2, 2])) - base).abs().mean() > 1e-3
        assert (model(x, 10, class_labels=3) - base).abs().mean() > 1e-3  # the null class too


def test_gradients_reach_every_parameter(cond_model):
    x = torch.randn(4, 1, 28, 28)
    cond_model(x, torch.tensor([1, 200, 500, 999]), class_labels=torch.tensor([0, 5, 9, 10])).pow(2).mean().backward()
    missing = [n for n, p in cond_model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no gradient for {missing}"
    grad_x = torch.autograd.grad(cond_model(x.requires_grad_(), 3, class_labels=1).sum(), x)[0]
    assert grad_x.abs().sum() > 0


def test_blocks():
    torch.manual_seed(0)
    block = ResBlock(8, 16, 32)
    assert block(torch.randn(2, 8, 4, 4), torch.randn(2, 32)).shape == (2, 16, 4, 4)
    with pytest.raises(ValueError, match="must divide"):
        SelfAttention(30, heads=4, norm_groups=5)
    attn = SelfAttention(16)
    x = torch.randn(1, 16, 5, 5)
    x2 = x.clone()
    x2[..., 0, 0] += 1
    assert (attn(x) - attn(x2))[..., 4, 4].abs().max() > 0  # global: a corner reaches the opposite corner


def test_timestep_embedding_matches_diffusers():
    t = torch.tensor([0, 1, 17, 500, 999])
    torch.testing.assert_close(
        timestep_embedding(t, 32), get_timestep_embedding(t, 32, flip_sin_to_cos=True, downscale_freq_shift=0)
    )
    with pytest.raises(ValueError, match="must be even"):
        timestep_embedding(t, 7)


def test_train_speed_positive():
    assert train_speed(SmallUNet(widths=(8, 16), num_classes=2), size=16, batch_size=2, steps=1, num_classes=2) > 0
