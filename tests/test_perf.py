"genaibook.perf: the CPU fallback, the seeding per call, and bad inputs."

from pathlib import Path

import pytest
import torch

from genaibook.perf import measure_latency_and_memory_use


def test_cpu_timing_and_report(capsys):
    calls = []

    def pipe(x):
        calls.append(torch.rand(1).item())  # set_seed(0) before each call makes these equal
        big = torch.ones(50_000_000)  # 200 MB that the calls add to the resident memory, then free
        return x * 2 + big[0]

    seconds, gb = measure_latency_and_memory_use(pipe, torch.ones(3), "toy", "cpu", nb_loops=4)
    out = capsys.readouterr().out
    assert len(calls) == 4 and len(set(calls)) == 1 and seconds >= 0
    assert "toy execution time:" in out
    if Path("/proc/self/status").exists():  # Linux: the peak RSS the calls added
        assert 0.15 < gb < 1.0 and "the most resident memory, RSS, the calls added" in out
    else:
        assert gb is None and "not measured on cpu" in out


@pytest.mark.parametrize(
    "kwargs, exc, message",
    [
        ({"pipeline": "not callable"}, TypeError, "must be callable"),
        ({"nb_loops": 0}, ValueError, "positive integer"),
        ({"nb_loops": 2.5}, ValueError, "positive integer"),
        ({"device": "not-a-device"}, RuntimeError, "device"),
    ],
)
def test_bad_inputs(kwargs, exc, message):
    args = {"pipeline": lambda x: x, "inputs": 1, "model_name": "m", "device": "cpu", "nb_loops": 1, **kwargs}
    with pytest.raises(exc, match=message):
        measure_latency_and_memory_use(**args)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_requested_without_gpu():
    with pytest.raises(RuntimeError, match="no CUDA GPU is visible"):
        measure_latency_and_memory_use(lambda x: x, 1, "m", "cuda", nb_loops=1)
