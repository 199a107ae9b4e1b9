"Edge cases and bad inputs for genaibook.core."

import random

import numpy as np
import pytest
import torch
from PIL import Image

from genaibook.core import (
    by_mode,
    check_choice,
    check_int,
    get_device,
    in_test,
    init_ddpm,
    load_image,
    pil_to_tensor,
    run_mode,
    set_run_mode,
    set_seed,
)
from conftest import png_bytes


# ---- get_device ---------------------------------------------------------------------------------------------------
def test_cpu_when_nothing_else(clean_env):
    clean_env.setattr(torch.cuda, "is_available", lambda: False)
    clean_env.setattr(torch.backends.mps, "is_available", lambda: False)
    assert get_device() == torch.device("cpu")


def test_mps_before_cpu(clean_env):
    clean_env.setattr(torch.cuda, "is_available", lambda: False)
    clean_env.setattr(torch.backends.mps, "is_available", lambda: True)
    assert get_device().type == "mps"


@pytest.fixture
def two_gpus(clean_env):
    clean_env.setattr(torch.cuda, "is_available", lambda: True)
    clean_env.setattr(torch.cuda, "device_count", lambda: 2)
    return clean_env


def test_cuda_first_and_ordinals(two_gpus):
    assert get_device() == torch.device("cuda")
    assert get_device(1) == torch.device("cuda", 1)
    assert get_device(np.int64(0)) == torch.device("cuda", 0)


@pytest.mark.parametrize(
    "bad, message",
    [
        (2, "only 2 CUDA device"),
        (-1, "non-negative"),
        ("0", "non-negative"),
        (1.0, "non-negative"),
        (True, "non-negative"),
    ],
)
def test_bad_cuda_ordinal(two_gpus, bad, message):
    with pytest.raises(ValueError, match=message):
        get_device(bad)


def test_env_override(clean_env):
    clean_env.setenv("GENAIBOOK_DEVICE", "cpu")
    clean_env.setattr(torch.cuda, "is_available", lambda: True)
    assert get_device() == torch.device("cpu")
    clean_env.setenv("GENAIBOOK_DEVICE", "gpu-please")
    with pytest.raises(ValueError, match="GENAIBOOK_DEVICE='gpu-please'"):
        get_device()


# ---- set_seed -----------------------------------------------------------------------------------------------------
def draws():
    return random.random(), float(np.random.rand()), torch.randn(3).tolist()


def test_seed_repeats_all_generators():
    set_seed(123)
    a = draws()
    set_seed(123)
    b = draws()
    set_seed(124)
    c = draws()
    assert a == b and a != c


@pytest.mark.parametrize("seed", [0, 2**32 - 1, np.uint32(7)])
def test_seed_bounds_ok(seed):
    assert set_seed(seed) == int(seed)


@pytest.mark.parametrize("bad", [-1, 2**32, 1.5, "42", None, True])
def test_bad_seed(bad):
    with pytest.raises(ValueError, match="seed must be an integer from 0 to 4294967295"):
        set_seed(bad)


def test_deterministic_flag():
    try:
        set_seed(0, deterministic=True)
        assert torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(False)


# ---- run modes ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "in_test_env, mode_env, cuda, expected",
    [
        ("1", None, True, "tiny"),
        ("", None, False, "cpu"),
        ("0", None, True, "book"),
        ("1", "book", False, "book"),
        ("", "CPU ", True, "cpu"),
    ],
)
def test_run_mode(clean_env, in_test_env, mode_env, cuda, expected):
    clean_env.setenv("IN_TEST", in_test_env)
    if mode_env is not None:
        clean_env.setenv("GENAIBOOK_MODE", mode_env)
    clean_env.setattr(torch.cuda, "is_available", lambda: cuda)
    assert run_mode() == expected


def test_in_test(clean_env):
    assert not in_test()
    for v, expected in (("1", True), ("true", True), ("0", False), ("false", False)):
        clean_env.setenv("IN_TEST", v)
        assert in_test() is expected


def test_by_mode_falls_back_to_the_larger_budget(clean_env):
    for mode, all_three, no_tiny, book_only in (("tiny", 1, 5, 100), ("cpu", 5, 5, 100), ("book", 100, 100, 100)):
        clean_env.setenv("GENAIBOOK_MODE", mode)
        assert (by_mode(100, cpu=5, tiny=1), by_mode(100, cpu=5), by_mode(100)) == (all_three, no_tiny, book_only)
    clean_env.setenv("GENAIBOOK_MODE", "tiny")
    assert by_mode(100, cpu=None, tiny=1) == 1 and by_mode(100, tiny=None) is None  # None is a value, not "unset"


def test_set_run_mode(clean_env):
    assert set_run_mode("tiny") == "tiny" and run_mode() == "tiny"
    clean_env.setattr(torch.cuda, "is_available", lambda: False)
    assert set_run_mode(None) == "cpu"
    with pytest.raises(ValueError, match="mode must be one of 'book', 'cpu', 'tiny', got 'full'"):
        set_run_mode("full")


@pytest.mark.parametrize("bad", ["turbo", "full"])
def test_bad_mode(clean_env, bad):
    clean_env.setenv("GENAIBOOK_MODE", bad)
    with pytest.raises(ValueError, match="GENAIBOOK_MODE must be one of"):
        by_mode(1, tiny=2)


# ---- argument checks ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "value, kw, message",
    [
        (True, {}, "n must be a positive integer, got True"),
        (np.bool_(True), {}, "positive integer"),
        (2.0, {}, "got 2.0"),
        ("3", {}, "got '3'"),
        (0, {}, "positive integer"),
        (-1, {"low": 0}, "non-negative integer"),
        (11, {"high": 10}, "from 1 to 10"),
        (None, {}, "got None"),
        (3, {"low": 5}, "of at least 5"),
        (3, {"low": None, "high": 2}, "of at most 2"),
        (1.5, {"none_ok": True}, "positive integer or None"),
    ],
)
def test_check_int_rejects(value, kw, message):
    with pytest.raises(ValueError, match=message):
        check_int("n", value, **kw)


def test_check_int_accepts():
    assert check_int("n", np.int64(3)) == 3 and type(check_int("n", np.int64(3))) is int
    assert check_int("n", None, none_ok=True) is None and check_int("n", -5, low=None) == -5


def test_check_choice():
    assert check_choice("kind", "a", ("a", "b")) == "a"
    with pytest.raises(ValueError, match="kind must be one of 'a', 'b', got 'c'"):
        check_choice("kind", "c", ["a", "b"])


# ---- load_image ---------------------------------------------------------------------------------------------------
def test_local_file_and_sizes(tmp_path):
    p = tmp_path / "im.png"
    p.write_bytes(png_bytes((40, 30)))
    assert load_image(p).size == (40, 30)
    assert load_image(str(p), size=16).size == (16, 16)
    assert load_image(p, size=(20, 10)).size == (20, 10)
    t = load_image(p, return_tensor=True)
    assert t.shape == (3, 30, 40) and t.dtype == torch.float32
    assert torch.allclose(t[:, 0, 0], torch.tensor([200, 30, 30]) / 255)


def test_grey_and_rgba_become_rgb(tmp_path):
    for mode in ("L", "RGBA", "P"):
        p = tmp_path / f"{mode}.png"
        Image.new(mode, (8, 8)).save(p)
        assert load_image(p).mode == "RGB"


def test_pil_passthrough():
    assert load_image(Image.new("L", (5, 5)), size=(3, 3)).size == (3, 3)


def test_url(http_server):
    assert load_image(f"{http_server}/cat.png").size == (40, 30)


@pytest.mark.parametrize(
    "path, exc, message",
    [
        ("/missing.png", ConnectionError, "HTTP 404"),
        ("/page.html", ValueError, "not an image"),
        ("/big.bin", ValueError, "larger than max_bytes"),
        ("/big-no-length.bin", ValueError, "larger than max_bytes"),
    ],
)
def test_bad_urls(http_server, path, exc, message):
    with pytest.raises(exc, match=message):
        load_image(f"{http_server}{path}", max_bytes=1000)


def test_timeout(http_server):
    with pytest.raises(ConnectionError, match="Could not download .*Timeout"):
        load_image(f"{http_server}/slow", timeout=0.5)


def test_unreachable():
    with pytest.raises(ConnectionError, match="Check your connection"):
        load_image("http://127.0.0.1:9/x.png", timeout=2)


def test_bad_local_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="No image at"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(IsADirectoryError, match="is a folder"):
        load_image(tmp_path)
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"definitely not a jpeg")
    with pytest.raises(ValueError, match="not an image that Pillow can read"):
        load_image(junk)
    big = tmp_path / "big.png"
    big.write_bytes(png_bytes((200, 200)))
    with pytest.raises(ValueError, match="max_bytes"):
        load_image(big, max_bytes=10)
    with pytest.raises(TypeError, match="got int"):
        load_image(42)


@pytest.mark.parametrize("size", [0, -3, (10,), (10, 0), (1.5, 2), "64", (True, 3)])
def test_bad_size(tmp_path, size):
    p = tmp_path / "im.png"
    p.write_bytes(png_bytes())
    with pytest.raises(ValueError, match="size must be"):
        load_image(p, size=size)


def test_pil_to_tensor_grey():
    t = pil_to_tensor(Image.new("L", (4, 2), 255))
    assert t.shape == (1, 2, 4) and t.max().item() == 1.0


# ---- init_ddpm ----------------------------------------------------------------------------------------------------
def test_init_ddpm_zeroes_and_keeps_working():
    from diffusers import UNet2DModel

    unet = UNet2DModel(
        sample_size=16,
        in_channels=3,
        out_channels=3,
        block_out_channels=(8, 16),
        layers_per_block=1,
        norm_num_groups=4,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
    )
    assert init_ddpm(unet) is unet
    assert all(r.conv2.weight.abs().sum() == 0 for b in [*unet.down_blocks, *unet.up_blocks] for r in b.resnets)
    out = unet(torch.randn(2, 3, 16, 16), 10).sample
    # conv_out's weights are zero, so the freshly initialised model predicts its bias everywhere
    assert torch.allclose(out, unet.conv_out.bias.detach().view(1, -1, 1, 1).expand_as(out))


def test_init_ddpm_rejects_other_models():
    with pytest.raises(TypeError, match="UNet2DModel-like"):
        init_ddpm(torch.nn.Conv2d(1, 1, 1))
