"""genaibook.autoencoders: the book's parameter counts and shapes, the VAE loss on hand-made tensors, the Learner-form
losses, the frozen-latent classifier, a VAE trained with genaibook.train.Learner that resumes exactly, and bad inputs."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from genaibook.autoencoders import (
    BOOK_CHANNELS,
    VAE,
    AutoEncoder,
    Decoder,
    Encoder,
    FrozenEncoderClassifier,
    VAEEncoder,
    VAELoss,
    ae_loss,
    conv_block,
    conv_macs,
    conv_transpose_block,
    encode_dataset,
    n_params,
    probe_accuracy,
    train_probe,
    vae_loss,
)
from genaibook.train import Learner, make_dataloader

SMALL = (4, 8, 8, 16)


@pytest.mark.parametrize(
    "make, count",
    [
        (lambda: AutoEncoder(1), 17_215_635),  # the book's torchsummary total
        (lambda: AutoEncoder(1).encoder, 11_034_256),
        (lambda: AutoEncoder(1).decoder, 6_181_379),
        (lambda: AutoEncoder(in_channels=1, latent_dims=2), 16_971_907),
        (lambda: VAE(in_channels=1, latent_dims=2), 16_973_957),
        (lambda: AutoEncoder(1, latent_dims=16, output="bn_relu"), 17_215_635),
        (lambda: AutoEncoder(1, latent_dims=16), 17_215_633),  # sigmoid output: no BatchNorm(1) at the end
    ],
)
def test_book_parameter_counts(make, count):
    assert n_params(make()) == count


def test_book_torchsummary_rows():
    "A few rows of the book's torchsummary table, layer by layer."
    model = AutoEncoder(1)
    convs = [n_params(b[0]) for b in model.encoder.conv_layers]
    assert convs == [2_176, 524_544, 2_097_664, 8_389_632]
    assert n_params(model.encoder.linear) == 16_400 and n_params(model.decoder.linear) == 278_528
    assert [n_params(b[0]) for b in model.decoder.t_conv_layers] == [4_719_104, 1_179_904, 2_305]
    assert n_params(model.decoder.t_conv_layers[-1][1]) == 2  # the first decoder ends with BatchNorm2d(1)...
    assert isinstance(model.decoder.t_conv_layers[-1][2], torch.nn.ReLU)  # ...and a ReLU


def test_shape_trace():
    encoder = Encoder(1).eval()
    x = torch.rand(1, 1, 28, 28)
    shapes = []
    for block in encoder.conv_layers:
        x = block(x)
        shapes.append(tuple(x.shape))
    assert shapes == [(1, 128, 14, 14), (1, 256, 7, 7), (1, 512, 3, 3), (1, 1024, 1, 1)]
    assert encoder(torch.rand(1, 1, 28, 28)).shape == (1, 16)
    decoder = Decoder(1)
    h = decoder.linear(torch.randn(64, 16)).reshape(-1, 1024, 4, 4)
    out = []
    for block in decoder.t_conv_layers:
        h = block(h)
        out.append(tuple(h.shape[1:]))
    assert out == [(512, 7, 7), (256, 14, 14), (1, 28, 28)]


@pytest.mark.parametrize("latent_dims", [1, 2, 16, 32])
def test_roundtrip_shapes_and_ranges(latent_dims):
    torch.manual_seed(0)
    x = torch.rand(5, 1, 28, 28)
    ae = AutoEncoder(1, latent_dims, channels=SMALL)
    assert ae.encode(x).shape == (5, latent_dims) and ae(x).shape == x.shape
    assert ae(x).min() > 0 and ae(x).max() < 1  # sigmoid output
    vae = VAE(1, latent_dims, channels=SMALL)
    recon, mu, logvar = vae(x)
    assert recon.shape == x.shape and mu.shape == logvar.shape == (5, latent_dims)
    assert vae.eval().generate(3).shape == (3, 1, 28, 28)


def test_rgb_images():
    ae = AutoEncoder(3, 8, channels=SMALL)
    assert ae(torch.rand(2, 3, 28, 28)).shape == (2, 3, 28, 28)


def test_first_decoder_output_is_relu():
    out = Decoder(1).train()(torch.randn(8, 16))
    assert (out >= 0).all() and out.max() > 1  # BatchNorm + ReLU: non-negative, not bounded by 1


def test_blocks():
    assert conv_block(3, 5)(torch.zeros(2, 3, 28, 28)).shape == (2, 5, 14, 14)
    assert conv_transpose_block(5, 3, output_padding=1)(torch.zeros(2, 5, 7, 7)).shape == (2, 3, 14, 14)
    assert len(conv_transpose_block(5, 3, with_act=False)) == 1


def test_vae_loss_by_hand():
    batch = torch.zeros(2, 1, 2, 2)
    reconstructed = torch.stack([torch.zeros(1, 2, 2), torch.full((1, 2, 2), 0.5)])
    mu, logvar = torch.tensor([[0.0, 0.0], [1.0, 0.0]]), torch.zeros(2, 2)
    loss, rec, kl = vae_loss(batch, reconstructed, mu, logvar)
    assert rec.tolist() == [0.0, 1.0]  # 4 pixels off by 0.5: 4 * 0.25, summed not averaged
    assert kl.tolist() == [0.0, 0.5]  # KL(N(1, 1) || N(0, 1)) = 1/2 * mu^2
    assert loss.item() == pytest.approx(0.75)
    # sigma = 2 with mu = 0: KL = -1/2 (1 + log 4 - 4) per dimension, 2 dimensions
    _, _, kl = vae_loss(batch, batch, torch.zeros(2, 2), torch.full((2, 2), math.log(4.0)))
    assert kl.tolist() == pytest.approx([-(1 + math.log(4.0) - 4)] * 2)


@pytest.mark.parametrize("kl_weight, expected", [(0.0, 0.5), (0.1, 0.525), (1.0, 0.75), (2.0, 1.0)])
def test_vae_loss_kl_weight(kl_weight, expected):
    batch = torch.zeros(2, 1, 2, 2)
    reconstructed = torch.stack([torch.zeros(1, 2, 2), torch.full((1, 2, 2), 0.5)])
    loss, rec, kl = vae_loss(batch, reconstructed, torch.tensor([[0.0, 0.0], [1.0, 0.0]]), torch.zeros(2, 2), kl_weight)
    assert loss.item() == pytest.approx(expected)
    assert kl.tolist() == [0.0, 0.5]  # the returned parts are unweighted


def test_vae_loss_matches_book_formula_on_random_tensors():
    torch.manual_seed(0)
    x, r = torch.rand(6, 1, 28, 28), torch.rand(6, 1, 28, 28)
    mu, logvar = torch.randn(6, 3), torch.randn(6, 3)
    loss, rec, kl = vae_loss(x, r, mu, logvar)
    assert torch.allclose(rec, ((r - x) ** 2).flatten(1).sum(1))
    # KL(N(mu, s^2) || N(0, 1)) summed over dimensions, from torch.distributions
    p = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    ref = torch.distributions.kl_divergence(p, torch.distributions.Normal(0.0, 1.0)).sum(-1)
    assert torch.allclose(kl, ref, atol=1e-5)
    assert torch.allclose(loss, (rec + kl).mean())


def test_learner_losses_and_batch_forms():
    torch.manual_seed(0)
    x, y = torch.rand(4, 1, 28, 28), torch.arange(4)
    ae = AutoEncoder(1, 2, channels=SMALL)
    ref = F.mse_loss(ae(x), x)
    for batch in (x, (x, y), [x, y], {"image": x, "label": y}):
        assert torch.allclose(ae_loss(ae, batch), ref)
    out = VAELoss(0.5)(VAE(1, 2, channels=SMALL), {"image": x})
    assert set(out) == {"loss", "reconstruction_loss", "kl_loss"}
    assert out["loss"].requires_grad and not out["kl_loss"].requires_grad
    assert torch.allclose(out["loss"], out["reconstruction_loss"] + 0.5 * out["kl_loss"], atol=1e-4)
    assert "0.5" in repr(VAELoss(0.5))


def test_vae_trains_with_learner_and_resumes_exactly(tmp_path):
    "The VAE's sampling draws random numbers every step: a resumed run must still match an uninterrupted one."
    torch.manual_seed(0)
    data = torch.rand(48, 1, 28, 28)

    def learner(ckpt_dir):
        torch.manual_seed(1)
        return Learner(
            VAE(1, 2, channels=SMALL),
            make_dataloader(data, batch_size=8, seed=3),
            VAELoss(),
            lr=1e-3,
            ckpt_dir=ckpt_dir,
            device="cpu",
            progress=False,
            log_every=1,
        )

    full = learner(tmp_path / "full").fit(steps=10)
    first = learner(tmp_path / "split").fit(steps=4)
    assert first.step == 4
    resumed = learner(tmp_path / "split").fit(steps=10)  # loads last.pt and continues
    assert resumed.history["loss"] == pytest.approx(full.history["loss"], rel=1e-5)
    assert set(full.history) >= {"loss", "reconstruction_loss", "kl_loss"}
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-6)


def test_autoencoder_learns_on_a_tiny_set():
    "A few hundred steps on 64 fixed images lower the reconstruction error clearly."
    torch.manual_seed(0)
    data = (torch.rand(64, 1, 28, 28) > 0.7).float()
    learn = Learner(
        AutoEncoder(1, 8, channels=SMALL),
        make_dataloader(data, batch_size=16),
        ae_loss,
        lr=3e-3,
        device="cpu",
        progress=False,
    )
    before = learn.evaluate(DataLoader(data, batch_size=32))["loss"]
    learn.fit(steps=150)
    assert learn.evaluate(DataLoader(data, batch_size=32))["loss"] < 0.8 * before


def test_encode_dataset_and_probe():
    torch.manual_seed(0)
    images, labels = torch.rand(20, 1, 28, 28), torch.arange(20) % 3
    vae = VAE(1, 4, channels=SMALL)
    z, y = encode_dataset(vae, DataLoader(TensorDataset(images, labels), batch_size=6))
    assert z.shape == (20, 4) and torch.equal(y, labels)
    assert torch.allclose(z, vae.eval().encode(images)[0], atol=1e-5)  # a VAE contributes its means
    z2, y2 = encode_dataset(AutoEncoder(1, 2, channels=SMALL), DataLoader(images, batch_size=7))
    assert z2.shape == (20, 2) and y2 is None
    z_dict, _ = encode_dataset(vae, [{"image": images[:5], "label": labels[:5]}])
    assert z_dict.shape == (5, 4)


def test_probe_separates_classes_and_classifier_stays_frozen():
    torch.manual_seed(0)
    z = torch.cat([torch.randn(100, 3) + 3, torch.randn(100, 3) - 3, torch.randn(100, 3) * 0.3])
    y = torch.arange(3).repeat_interleave(100)
    head = train_probe(z, y, n_classes=3, epochs=10)
    assert probe_accuracy(head, z, y) > 0.95
    ae = AutoEncoder(1, 3, channels=SMALL)
    clf = FrozenEncoderClassifier(ae, head).train()
    assert not ae.training and not any(p.requires_grad for p in ae.parameters())
    assert clf(torch.rand(4, 1, 28, 28)).shape == (4, 3)


def test_conv_macs_scales_with_width():
    book = conv_macs(AutoEncoder(1, 16))
    assert 180e6 < book < 195e6  # about 0.19 GMAC per image forward
    half = conv_macs(AutoEncoder(1, 16, channels=tuple(c // 2 for c in BOOK_CHANNELS)))
    assert 3.5 < book / half < 4.5


@pytest.mark.parametrize(
    "make, exc, message",
    [
        (lambda: Encoder(1)(torch.rand(4, 1, 32, 32)), ValueError, "28x28"),
        (lambda: Encoder(1)(torch.rand(1, 28, 28)), ValueError, r"x\[None\]"),
        (lambda: Encoder(1)(torch.rand(4, 3, 28, 28)), ValueError, r"\[N, 1, 28, 28\]"),
        (lambda: Encoder(1).train()(torch.rand(1, 1, 28, 28)), ValueError, "model.eval()"),
        (
            lambda: AutoEncoder(1, 2, channels=SMALL)(torch.zeros(2, 1, 28, 28, dtype=torch.uint8)),
            TypeError,
            "ToTensor",
        ),
        (lambda: VAEEncoder(1, 2, channels=SMALL)(torch.rand(2, 1, 64, 64)), ValueError, "28x28"),
        (lambda: AutoEncoder(1, latent_dims=0), ValueError, "latent_dims must be a positive integer"),
        (lambda: VAE(1, latent_dims=-3), ValueError, "latent_dims must be a positive integer"),
        (lambda: AutoEncoder(1, latent_dims=2.5), ValueError, "latent_dims must be a positive integer"),
        (lambda: AutoEncoder(1, channels=(8, 16, 32)), ValueError, "4 positive integers"),
        (lambda: AutoEncoder(1, output="tanh"), ValueError, "one of"),
        (lambda: Decoder(1, 2, channels=SMALL)(torch.randn(3, 5)), ValueError, r"\[N, 2\]"),
        (
            lambda: vae_loss(torch.rand(2, 1, 4, 4), torch.rand(2, 1, 5, 5), torch.zeros(2, 2), torch.zeros(2, 2)),
            ValueError,
            "differ in shape",
        ),
        (
            lambda: vae_loss(torch.rand(2, 1, 4, 4), torch.rand(2, 1, 4, 4), torch.zeros(3, 2), torch.zeros(3, 2)),
            ValueError,
            "latent_dims",
        ),
        (lambda: VAELoss(kl_weight=-0.1), ValueError, ">= 0"),
        (lambda: ae_loss(AutoEncoder(1, 2, channels=SMALL), {"label": torch.zeros(2)}), KeyError, "'image' key"),
        (lambda: ae_loss(AutoEncoder(1, 2, channels=SMALL), 3), TypeError, "cannot find images"),
        (lambda: train_probe(torch.zeros(5, 2), torch.zeros(4)), ValueError, "labels"),
    ],
)
def test_bad_inputs(make, exc, message):
    with pytest.raises(exc, match=message):
        make()
