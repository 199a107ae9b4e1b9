"bench/quality_vs_time.py: its smoke mode end to end (real Fashion-MNIST, the shipped classifier), clock, LR schedule."

import importlib.util
import json
import math
import time
from pathlib import Path

import pytest
import torch

_path = Path(__file__).resolve().parents[1] / "bench" / "quality_vs_time.py"
_spec = importlib.util.spec_from_file_location("quality_vs_time", _path)
qvt = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(qvt)


def test_quick_run_writes_table_json_and_png(tmp_path, capsys):
    args = [
        "--quick",
        "--minutes",
        "0.02",
        "--every",
        "0.01",
        "--n",
        "8",
        "--ddim-steps",
        "2",
        "--threads",
        "1",
        "--out",
        str(tmp_path),
    ]
    result = qvt.main(args)
    out = capsys.readouterr().out
    assert "reference FID" in out and "FID" in out and "wrote" in out
    data = json.loads((tmp_path / "quality_vs_time.json").read_text())
    assert (tmp_path / "quality_vs_time.png").stat().st_size > 1000
    rows = data["rows"]
    assert data["complete"] is True
    assert len(rows) == 2 and data["settings"]["n"] == 8 and data["settings"]["recipe"]["n_train"] == 256
    for key in ("minutes", "steps", "loss", "fid", "sampling_s", "cpu_minutes_per_thread", "load_avg"):
        assert key in rows[0]
    assert rows[0]["minutes"] >= 0.01 and rows[1]["minutes"] >= 0.02  # points are reached, never early
    assert 0 < rows[0]["steps"] < rows[1]["steps"] and all(math.isfinite(r["loss"]) and r["fid"] >= 0 for r in rows)
    assert all(0 < r["lr"] <= qvt.QUICK.lr for r in rows)  # the schedule itself: test_time_cosine_follows_the_time_...
    assert result["samples"].shape == (2, 8, 1, 32, 32) and 0 <= result["samples"].min() <= result["samples"].max() <= 1
    # evaluation time does not count as training time
    assert data["total_wall_minutes"] > rows[1]["wall_minutes"]


def test_clock_pauses():
    clock = qvt.Clock("wall")
    assert clock.seconds() == 0.0
    clock.start()
    time.sleep(0.02)
    clock.pause()
    frozen = clock.seconds()
    time.sleep(0.3)
    assert clock.seconds() == frozen >= 0.02
    clock.resume()
    time.sleep(0.01)
    assert frozen < clock.seconds() < frozen + 0.25  # the 0.3 s pause is not counted
    with pytest.raises(ValueError, match="'wall' or 'cpu'"):
        qvt.Clock("gpu")


class FakeClock:
    def __init__(self):
        self.s = 0.0

    def seconds(self):
        return self.s


def test_time_cosine_follows_the_time_budget():
    clock, opt = FakeClock(), torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = qvt.time_cosine(clock, budget_s=100, warmup=0.1)(opt, 10**9)  # the step count is ignored
    assert isinstance(sched, torch.optim.lr_scheduler.LambdaLR)
    lrs = {}
    for s in (0, 5, 10, 55, 100, 200):
        clock.s = s
        lrs[s] = sched.lr_lambdas[0](12345)
    assert lrs[0] == pytest.approx(0.01) and lrs[5] == pytest.approx(0.5) and lrs[10] == pytest.approx(1.0)
    assert lrs[55] == pytest.approx(0.5)
    assert lrs[100] == pytest.approx(0.0, abs=1e-9) and lrs[200] == pytest.approx(0.0, abs=1e-9)


def test_fid_points():
    assert qvt.fid_points(14, 2) == [2, 4, 6, 8, 10, 12, 14]
    assert qvt.fid_points(5, 2) == [2, 4, 5]
    assert qvt.fid_points(14, points=[8, 2, 4]) == [2, 4, 8, 14]
    assert qvt.fid_points(14, points=[2, 14]) == [2, 14]
    with pytest.raises(ValueError, match="positive"):
        qvt.fid_points(14, points=[0, 2])


def test_pad32_and_bad_settings():
    x = torch.rand(3, 1, 28, 28)
    y = qvt.pad32(x)
    assert y.shape == (3, 1, 32, 32) and torch.equal(y[:, :, :2], torch.full((3, 1, 2, 32), -1.0))
    assert torch.allclose(y[:, :, 2:30, 2:30], x * 2 - 1)
    with pytest.raises(ValueError, match="positive"):
        qvt.run(minutes=0)
    with pytest.raises(ValueError, match="no later than"):
        qvt.run(minutes=4, points=[2, 5])
    with pytest.raises(ValueError, match="at least 2"):
        qvt.run(n=1)
