"Edge cases of genaibook.train: exact resume, atomic checkpoints, bad inputs."

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import genaibook.train as T
from genaibook.train import Learner, ResumableSampler, make_dataloader

XS = torch.linspace(-1, 1, 96)[:, None]
DS = TensorDataset(XS, 2 * XS + 0.5)


def noisy_loss(model, batch):
    x, y = batch
    pred = model(x + 0.05 * torch.randn_like(x))
    return {"loss": nn.functional.mse_loss(pred, y), "l1": (pred - y).abs().mean()}


def learner(dl=None, **kw):
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 1))
    kw.setdefault("lr", 0.01)
    return Learner(model, dl or make_dataloader(DS, 16, seed=3), noisy_loss, device="cpu", progress=False, **kw)


class StopAt:
    def __init__(self, step):
        self.step = step

    def after_step(self, learn):
        if learn.step == self.step:
            raise KeyboardInterrupt


def interrupted_then_resumed(tmp_path, stop, make=learner, **kw):
    with pytest.raises(KeyboardInterrupt):
        make(ckpt_dir=tmp_path, callbacks=[StopAt(stop)], **kw).fit(epochs=4)
    return make(ckpt_dir=tmp_path, **kw).fit(epochs=4)


@pytest.mark.parametrize("schedule", ["constant", "cosine", "onecycle"])
def test_resume_mid_epoch_reproduces_history(tmp_path, schedule):
    full = learner(lr_schedule=schedule, ema_decay=0.95, grad_clip=1.0).fit(epochs=4)
    resumed = interrupted_then_resumed(tmp_path, 15, lr_schedule=schedule, ema_decay=0.95, grad_clip=1.0, ckpt_every=4)
    assert resumed.history == full.history
    for a, b in zip(resumed.model.parameters(), full.model.parameters()):
        assert torch.equal(a, b)
    for a, b in zip(resumed.ema_model.parameters(), full.ema_model.parameters()):
        assert torch.equal(a, b)


def test_resume_at_epoch_boundary(tmp_path):
    full = learner().fit(epochs=4)
    resumed = interrupted_then_resumed(tmp_path, 13, ckpt_every=6)  # checkpoint at step 12 = end of epoch 2
    assert resumed.history["loss"] == full.history["loss"]


def test_resume_with_plain_sequential_dataloader(tmp_path):
    make = lambda **kw: learner(DataLoader(DS, batch_size=16), **kw)
    full = make().fit(epochs=4)
    resumed = interrupted_then_resumed(tmp_path, 9, make=make, ckpt_every=4)
    assert resumed.history["loss"] == full.history["loss"]


def test_fit_on_finished_run_does_nothing(tmp_path, capsys):
    learner(ckpt_dir=tmp_path).fit(steps=5)
    again = learner(ckpt_dir=tmp_path).fit(steps=5)
    assert again.step == 5 and "nothing to do" in capsys.readouterr().out
    assert len(again.history["loss"]) == 5


def test_extend_a_finished_run(tmp_path):
    learner(ckpt_dir=tmp_path).fit(steps=6)
    more = learner(ckpt_dir=tmp_path).fit(steps=10)
    assert more.step == 10 and more.history["step"] == list(range(1, 11))


def test_crash_while_saving_keeps_previous_checkpoint(tmp_path, monkeypatch):
    learn = learner(ckpt_dir=tmp_path).fit(steps=3)
    before = (tmp_path / "last.pt").read_bytes()

    def broken_save(obj, f):
        open(f, "wb").write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(T.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        learn.save_checkpoint()
    assert (tmp_path / "last.pt").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_weights_only_load(tmp_path):
    trained = learner(ckpt_dir=tmp_path).fit(steps=6)
    fresh = learner(ckpt_dir=tmp_path).load_checkpoint(weights_only=True)
    for a, b in zip(fresh.model.parameters(), trained.model.parameters()):
        assert torch.equal(a, b)
    assert fresh.step == 0


def test_history_logs_every_scalar_and_lr():
    learn = learner(log_every=4, lr_schedule=T.cosine_schedule(warmup=0.3)).fit(steps=10)
    assert set(learn.history) == {"step", "lr", "loss", "l1"}
    assert len(learn.history["l1"]) == 10 and learn.history["step"] == list(range(1, 11))
    assert learn.history["lr"][0] < learn.history["lr"][1]  # warm-up


def test_evaluate_is_repeatable_and_leaves_training_rng_alone():
    learn = learner(valid_dl=make_dataloader(DS, 32, shuffle=False))
    state = torch.get_rng_state()
    a, b = learn.evaluate(), learn.evaluate()
    assert a == b and set(a) == {"loss", "l1"}
    assert torch.equal(state, torch.get_rng_state())
    assert learn.model.training


def test_dict_batches_and_tensor_loss():
    ds = [{"x": torch.tensor([float(i)]), "y": torch.tensor([2.0 * i])} for i in range(8)]
    loss = lambda m, b: nn.functional.mse_loss(m(b["x"]), b["y"])
    learn = Learner(nn.Linear(1, 1), make_dataloader(ds, 4), loss, lr=0.01, device="cpu", progress=False).fit(steps=4)
    assert len(learn.history["loss"]) == 4


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(epochs=None, steps=None), "exactly one of"),
        (dict(epochs=1, steps=3), "exactly one of"),
        (dict(steps=0), "Nothing to train"),
    ],
)
def test_fit_bad_lengths(kwargs, match):
    with pytest.raises(ValueError, match=match):
        learner().fit(**kwargs)


def test_bad_construction():
    with pytest.raises(ValueError, match="no batches"):
        Learner(nn.Linear(1, 1), DataLoader([], batch_size=2), noisy_loss, device="cpu")
    with pytest.raises(ValueError, match="needs ckpt_dir"):
        learner(ckpt_every=3)
    with pytest.raises(ValueError, match="mixed_precision must be"):
        learner(mixed_precision="fp8")
    with pytest.raises(ValueError, match="needs a CUDA GPU"):
        learner(mixed_precision="bf16")
    with pytest.raises(ValueError, match="Unknown lr_schedule"):
        learner(lr_schedule="step").fit(steps=1)
    with pytest.raises(ValueError, match="Nothing to evaluate"):
        learner().evaluate()
    with pytest.raises(FileNotFoundError, match="No checkpoint"):
        learner().load_checkpoint("/nonexistent/last.pt")
    with pytest.raises(ValueError, match="batch_size"):
        make_dataloader(DS, 0)
    with pytest.raises(ValueError, match="non-empty"):
        ResumableSampler(0)


def test_bad_loss_outputs():
    bad = Learner(nn.Linear(1, 1), make_dataloader(DS, 16), lambda m, b: 3.0, device="cpu", progress=False)
    with pytest.raises(TypeError, match="scalar tensor or a dict"):
        bad.fit(steps=1)
    with pytest.raises(FloatingPointError, match="at step 1"):
        Learner(
            nn.Linear(1, 1),
            make_dataloader(DS, 16),
            lambda m, b: m(b[0]).sum() * float("nan"),
            device="cpu",
            progress=False,
        ).fit(steps=2)


def test_auto_precision_is_off_on_cpu():
    assert learner().amp_dtype is None


def test_smooth():
    assert T.smooth([1, 3, 5], window=2).tolist() == [1.0, 2.0, 4.0]
    assert len(T.smooth([])) == 0


def test_plot_history():
    import matplotlib

    matplotlib.use("Agg")
    learn = learner(valid_dl=make_dataloader(DS, 32, shuffle=False)).fit(steps=12)
    fig = learn.plot_history(skip=2, logy=True)
    assert len(fig.axes) == 2
    with pytest.raises(ValueError, match="call fit"):
        learner().plot_history()


def test_run_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("GENAIBOOK_MODE", "cpu")
    monkeypatch.setenv("GENAIBOOK_RUNS", str(tmp_path))
    assert T.run_dir("ch4") == tmp_path / "ch4"
    monkeypatch.setenv("GENAIBOOK_MODE", "tiny")
    a, b = T.run_dir("ch4"), T.run_dir("ch4")
    assert a != b and a.is_dir() and not any(a.iterdir())
    with pytest.raises(ValueError, match="plain folder name"):
        T.run_dir("../x")
