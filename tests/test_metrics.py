"genaibook.metrics: input checks, the shipped classifier, class accuracy and FID, on real Fashion-MNIST test images."

import sys
import types
import warnings

import pytest
import torch
import torch.nn.functional as F

from genaibook.metrics import (
    FID,
    FashionClassifier,
    augment_batch,
    class_accuracy,
    classifier_weights_path,
    fashion_classifier,
    fid,
    load_fashion_mnist_tensors,
    predict_classes,
    prepare_images,
    save_classifier,
    train_fashion_classifier,
)


@pytest.fixture(scope="module")
def real():
    "The first 1,000 real test images and their labels."
    return load_fashion_mnist_tensors("test", n=1000)


@pytest.fixture(scope="module")
def clf():
    return fashion_classifier("cpu")


def test_load_tensors(real):
    x, y = real
    assert x.shape == (1000, 1, 28, 28) and x.dtype == torch.float32 and 0 <= x.min() < x.max() <= 1
    assert y.shape == (1000,) and y.dtype == torch.int64 and set(y.tolist()) == set(range(10))
    xu, yu = load_fashion_mnist_tensors("test", n=10, dtype="uint8")
    assert xu.dtype == torch.uint8 and torch.equal(xu.float() / 255, x[:10]) and torch.equal(yu, y[:10])
    with pytest.raises(ValueError, match="split must be one of 'train', 'test', got 'valid'"):
        load_fashion_mnist_tensors("valid")
    with pytest.raises(ValueError, match="dtype must be one of 'float', 'uint8'"):
        load_fashion_mnist_tensors("test", dtype="int")
    with pytest.raises(ValueError, match="positive integer"):
        load_fashion_mnist_tensors("test", n=0)


def test_shipped_weights(clf, real):
    path = classifier_weights_path()
    assert path.exists() and path.stat().st_size < 1_000_000
    assert not clf.training and not any(p.requires_grad for p in clf.parameters())
    assert fashion_classifier("cpu") is clf  # cached
    x, y = real
    assert class_accuracy(x, y, clf) >= 0.9
    assert class_accuracy(x, y.tolist()) == class_accuracy(x, y, clf)  # default classifier, list labels


def test_28_and_32_pixels_agree(clf, real):
    x = real[0][:64]
    x32 = F.pad(x, (2, 2, 2, 2))  # the book's Pad(2)
    assert torch.equal(prepare_images(x32), x)
    assert torch.equal(predict_classes(x32, clf), predict_classes(x, clf))
    assert clf.features(x32).shape == (64, 256)
    assert torch.equal(predict_classes((x * 255).round().byte(), clf), predict_classes(x, clf))  # uint8 is scaled


@pytest.mark.parametrize(
    "make, exc, message",
    [
        (lambda x: x.repeat(1, 3, 1, 1), ValueError, r"1 \(grayscale\) channel.*x.mean\(1, keepdim=True\)"),
        (lambda x: x * 2 - 1, ValueError, r"\(x \+ 1\) / 2"),
        (lambda x: x * 255, ValueError, "divide 0-255 pixel values by 255"),
        (lambda x: x[:, 0], ValueError, r"batch \[N, 1, H, W\]"),
        (lambda x: F.interpolate(x, size=64), ValueError, "28x28 or 32x32"),
        (lambda x: x.long(), TypeError, "float in"),
        (lambda x: x.numpy(), TypeError, "torch.Tensor"),
        (lambda x: x * float("nan"), ValueError, "NaN"),
    ],
)
def test_bad_images(real, make, exc, message):
    x = make(real[0][:4].clone())
    with pytest.raises(exc, match=message):
        prepare_images(x)
    with pytest.raises(exc, match=message):
        class_accuracy(x, [0, 0, 0, 0])


def test_small_overshoot_is_clamped(real):
    x = real[0][:4] * 1.005 - 0.002
    out = prepare_images(x)
    assert out.min() >= 0 and out.max() <= 1


def test_class_accuracy_bad_labels(real):
    x, y = real
    with pytest.raises(ValueError, match="got 10 images but 9 labels"):
        class_accuracy(x[:10], y[:9])
    with pytest.raises(ValueError, match="at least one image"):
        class_accuracy(x[:0], y[:0])
    assert predict_classes(x[:0]).shape == (0,)


def test_fid_self_is_zero_and_monotone_in_noise(real):
    x = real[0]
    metric = FID(x, device="cpu")
    assert metric.n_real == 1000
    assert abs(metric(x)) < 1e-2
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(x.shape, generator=g)
    scores = [metric((x + s * noise).clamp(0, 1)) for s in (0.0, 0.05, 0.1, 0.2, 0.4)]
    assert all(a < b for a, b in zip(scores, scores[1:])), scores
    assert metric(x) == pytest.approx(scores[0])  # real statistics are kept across calls


def test_fid_function_and_other_set(real):
    x, y = real
    a, b = x[:500], x[500:]
    with pytest.warns(UserWarning, match="biased"):
        same_dist = fid(a, b, device="cpu")
        one_class = fid(a, x[y == 0], device="cpu")
    assert 0 < same_dist < one_class


def test_fid_custom_classifier(real):
    torch.manual_seed(0)
    net = FashionClassifier(width=4, n_features=8).eval()
    value = fid(real[0][:100], real[0][100:200], classifier=net)
    assert value >= 0 and FID(real[0][:20], classifier=net).device == torch.device("cpu")


@pytest.mark.parametrize("n_real, n_fake, which", [(1, 10, "real"), (10, 1, "generated"), (10, 0, "generated")])
def test_fid_too_few_samples(real, n_real, n_fake, which):
    x = real[0]
    with pytest.raises(ValueError, match=f"at least 2 {which} images"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the real set is smaller than the feature count
        fid(x[:n_real], x[:n_fake], device="cpu")


def test_fid_bad_features(real):
    with pytest.raises(ValueError, match="features must be one of 'fashion', 'inception', got 'clip'"):
        fid(real[0][:4], real[0][:4], features="clip")


@pytest.mark.parametrize(
    "call",
    [
        lambda x: predict_classes(x, batch_size=0),
        lambda x: FID(x, batch_size=2.5),
        lambda x: class_accuracy(x, [0] * len(x), batch_size=-1),
    ],
)
def test_bad_batch_size(real, call):
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        call(real[0][:4])


def test_inception_without_torch_fidelity(real, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch_fidelity", None)  # import fails, as on a machine without it
    with pytest.raises(RuntimeError, match=r"torch-fidelity.*features='fashion'"):
        fid(real[0][:4], real[0][:4], features="inception", device="cpu")


def test_inception_weights_unreachable(real, monkeypatch):
    import torchmetrics.image.fid as tm_fid

    monkeypatch.setitem(sys.modules, "torch_fidelity", types.ModuleType("torch_fidelity"))

    def offline(*args, **kwargs):
        raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr(tm_fid, "FrechetInceptionDistance", offline)
    with pytest.raises(RuntimeError, match=r"could not load the Inception v3 weights.*offline.*features='fashion'"):
        fid(real[0][:4], real[0][:4], features="inception", device="cpu")


def test_augment_batch(real):
    x = real[0][:16]
    a = augment_batch(x, torch.Generator().manual_seed(0))
    b = augment_batch(x, torch.Generator().manual_seed(0))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, x)
    assert 0 <= a.min() and a.max() <= 1


def test_training_is_deterministic(tmp_path):
    logs, states = [], []
    for _ in range(2):
        model, log = train_fashion_classifier(epochs=1, seed=3, batch_size=64, n_train=640, n_test=64, device="cpu")
        logs.append(log)
        states.append(model.state_dict())
    assert logs[0]["losses"] == logs[1]["losses"] and logs[0]["n_train"] == 640
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    path = save_classifier(model, tmp_path / "w.safetensors", seed=3)
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        assert f.metadata()["seed"] == "3"
    with pytest.raises(ValueError, match="epochs must be a positive integer"):
        train_fashion_classifier(epochs=0)
