"genaibook.memory: the book's Table B-1 cell by cell, chapter 6's numbers, unit handling, bad inputs and the training estimate."

import pytest

from genaibook.memory import (
    BYTES_PER_PARAM,
    TRAINING_RECIPES,
    activation_bytes,
    format_memory,
    measure_peak_rss,
    memory_table,
    model_memory_gb,
    parse_size,
    training_memory_gb,
)

BOOK_TABLE_B1 = {  # Appendix B, Table B-1 (decimal units)
    "2B": ["8 GB", "4 GB", "2 GB", "1 GB", "512 MB"],
    "8B": ["32 GB", "16 GB", "8 GB", "4 GB", "2 GB"],
    "70B": ["280 GB", "140 GB", "70 GB", "35 GB", "17.5 GB"],
    "405B": ["1.62 TB", "810 GB", "405 GB", "202.5 GB", "101.25 GB"],
}
DTYPES = ("float32", "float16", "int8", "int4", "int2")


@pytest.mark.parametrize("size", BOOK_TABLE_B1)
@pytest.mark.parametrize("col", range(len(DTYPES)), ids=DTYPES)
def test_table_b1_cell_by_cell(size, col):
    ours, book = memory_table()[DTYPES[col]][size], BOOK_TABLE_B1[size][col]
    if (size, DTYPES[col]) == ("2B", "int2"):
        # The book's quirk: 2e9 × 0.25 bytes = 0.5e9 bytes = 500 MB in the table's decimal units; "512 MB" is 0.5 GB
        # converted as if 1 GB were 1024 MB.
        assert (ours, book) == ("500 MB", "512 MB")
        assert model_memory_gb("2B", "int2") * 1024 == 512
    else:
        assert ours == book


def test_table_shape_and_numbers():
    t = memory_table(formatted=False)
    assert list(t.index) == list(BOOK_TABLE_B1) and list(t.columns) == list(DTYPES)
    assert t.loc["405B", "float32"] == pytest.approx(1620)
    assert memory_table(sizes=("1B",), dtypes=("bfloat16",)).iloc[0, 0] == "2 GB"


def test_chapter6_exercise5_70b():
    assert [model_memory_gb("70B", d) for d in ("float32", "float16", "int8", "int4")] == [280, 140, 70, 35]


def test_gib_units_of_chapter6():
    assert model_memory_gb("7B", "float32") == pytest.approx(28)
    assert model_memory_gb("7B", "float32", unit=2**30) == pytest.approx(26.08, abs=0.01)  # the book's "≈ 26 GB"
    assert model_memory_gb("7B", "float16", unit=2**30) == pytest.approx(13.04, abs=0.01)  # "13 GB"
    assert model_memory_gb("135M", "float16") == pytest.approx(0.27)
    assert model_memory_gb(134_515_008, "bfloat16") == pytest.approx(0.269, abs=1e-3)


def test_dtypes_and_sizes():
    assert BYTES_PER_PARAM == {"float32": 4, "float16": 2, "bfloat16": 2, "int8": 1, "int4": 0.5, "int2": 0.25}
    assert parse_size("8b") == parse_size(" 8 B ") == parse_size(8e9) == parse_size("8e9") == 8e9
    assert parse_size("1.5T") == 1.5e12 and parse_size("135M") == 135e6 and parse_size("500K") == 5e5


@pytest.mark.parametrize(
    "n_bytes,text",
    [(8e9, "8 GB"), (17.5e9, "17.5 GB"), (1.62e12, "1.62 TB"), (5e8, "500 MB"), (0, "0 B"), (1500, "1.5 kB")],
)
def test_format_memory(n_bytes, text):
    assert format_memory(n_bytes) == text


@pytest.mark.parametrize("bad", ["70 GB", "B", "", "7B params", "-3B", None, True, [1]])
def test_bad_size_strings(bad):
    with pytest.raises(ValueError, match=r"'135M', '8B'"):
        parse_size(bad)


@pytest.mark.parametrize("bad", [0, -1, -7e9, float("nan"), float("inf"), "0B"])
def test_non_positive_params(bad):
    with pytest.raises(ValueError, match="positive number of parameters"):
        model_memory_gb(bad)


def test_unknown_dtype_names_the_known_ones():
    with pytest.raises(
        ValueError, match="dtype must be one of 'float32', 'float16', 'bfloat16', 'int8', 'int4', 'int2', got 'fp8'"
    ):
        model_memory_gb("8B", "fp8")


def test_bad_unit_and_format_inputs():
    with pytest.raises(ValueError, match=r"1e9 .* or 2\*\*30"):
        model_memory_gb("8B", unit=1024)
    with pytest.raises(ValueError, match="non-negative"):
        format_memory(-5)
    with pytest.raises(ValueError, match="digits"):
        format_memory(5, digits=-1)


def test_bad_method_and_options():
    with pytest.raises(ValueError, match="method must be one of 'full', 'lora', 'qlora', got 'prefix'"):
        training_memory_gb("8B", "prefix")
    with pytest.raises(ValueError, match="unknown option.*optimizer_bytes"):
        training_memory_gb("8B", "lora", optim_bytes=4)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        training_memory_gb("8B", batch_size=0)


@pytest.mark.parametrize("size", ["135M", "8B", "70B", "405B"])
def test_training_estimate_order_and_breakdown(size):
    est = {m: training_memory_gb(size, m, batch_size=2, seq_len=512) for m in TRAINING_RECIPES}
    assert est["full"].total > est["lora"].total > est["qlora"].total
    for e in est.values():
        d = e.as_dict()
        assert d["total"] == pytest.approx(d["weights"] + d["gradients"] + d["optimizer"] + d["activations"])
        assert min(d.values()) > 0


def test_training_estimate_parts():
    n = 8e9
    full = training_memory_gb(n, "full", hidden_size=4096, n_layers=32)
    assert (full.weights, full.gradients, full.optimizer) == pytest.approx((16, 16, 96))  # 2 + 2 + 12 bytes
    lora = training_memory_gb(n, "lora", hidden_size=4096, n_layers=32, trainable_fraction=0.01)
    assert lora.weights == pytest.approx(16 + 0.32) and lora.gradients == pytest.approx(0.32)
    assert lora.optimizer == pytest.approx(0.64)
    qlora = training_memory_gb(n, "qlora", hidden_size=4096, n_layers=32)
    assert qlora.weights == pytest.approx(8 * (0.5 + 0.127 / 8) + 0.16)
    assert full.activations == lora.activations == qlora.activations
    gib = training_memory_gb(n, "full", hidden_size=4096, n_layers=32, unit=2**30)
    assert gib.total == pytest.approx(full.total * 1e9 / 2**30)


def test_activations():
    plain = activation_bytes(1, 1000, 100, 10, act_bytes=2, act_factor=20)
    assert plain == 1000 * 100 * 20 * 2 * 10
    ckpt = activation_bytes(1, 1000, 100, 10, act_bytes=2, act_factor=20, grad_checkpointing=True)
    assert ckpt == 1000 * 100 * 2 * 10 + 1000 * 100 * 20 * 2 < plain
    assert activation_bytes(2, 10, 8, 1, vocab_size=50) - activation_bytes(2, 10, 8, 1) == 20 * 50 * 4 * 3


def test_measure_peak_rss_sees_an_allocation():
    m = measure_peak_rss("buf = bytearray(50_000_000)\nresult = len(buf)")
    assert m["result"] == 50_000_000
    if m["peak_reset"]:  # Linux: the high-water mark was reset after the setup
        assert 45e6 < m["peak"] < 60e6 and 45e6 < m["resident"] < 60e6


def test_measure_peak_rss_reports_the_childs_error():
    with pytest.raises(RuntimeError, match="NameError"):
        measure_peak_rss("undefined_name")
