"genaibook.perf: the CPU fallback, the seeding per call, and bad inputs."

import pytest
import torch

from genaibook.perf import measure_latency_and_memory_use


def test_cpu_timing_and_report(capsys):
    calls = []

    def pipe(x):
        calls.append(torch.rand(1).item())  # set_seed(0) before each call makes these equal
        return x * 2

    seconds, gb = measure_latency_and_memory_use(pipe, torch.ones(3), "toy", "cpu", nb_loops=4)
    out = capsys.readouterr().out
    assert len(calls) == 4 and len(set(calls)) == 1
    assert seconds >= 0 and gb is None
    assert "toy execution time:" in out and "not measured on cpu" in out


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
