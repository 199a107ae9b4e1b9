"""Shared fixtures and helpers: a headless matplotlib, no network, a small HTTP server on loopback for load_image, the
Stable Diffusion twin pipeline, the list of notebooks, and a fresh interpreter for import checks.

Where a check belongs:
- A notebook cell asserts what it demonstrates (demo-then-assert): fast checks, right after the code they exercise,
  that document how the API is used.
- tests/ holds edge cases, bad inputs and their messages, regressions, and the slower numeric comparisons (against
  diffusers or transformers, over many seeds or settings), which would only clutter a lesson.
- bench/ holds speed and quality measurements (import time, steps per second, FID against training time). Their numbers
  are recorded in bench/results and quoted in the chapters; tests never assert them, because they depend on the machine.
"""

import ast
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BytesIO
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "Agg")
# Tests never reach the Hub: they read the seeded stand-in cache. Set before any Hugging Face library is imported.
from genaibook.offline import default_home, seed  # noqa: E402 (stdlib-only at import time)

os.environ["HF_HOME"] = str(default_home())
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# huggingface_hub and datasets read HF_HOME once, at import: import them now, so no test can bind them elsewhere.
import datasets  # noqa: E402,F401
import huggingface_hub  # noqa: E402,F401

import matplotlib.pyplot as plt
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted(p for p in (ROOT / "nbs").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


def run_python(code: str, timeout: float = 120) -> subprocess.CompletedProcess:
    "Run `code` in a fresh interpreter that sees this checkout's package, with no GPU and no network."
    env = {
        "CUDA_VISIBLE_DEVICES": "",
        "PATH": "/usr/bin:/bin",
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        **{k: os.environ[k] for k in ("HOME",) if k in os.environ},
    }
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT
    )


def modules_loaded_by(statement: str, modules) -> list[str]:
    "Which of `modules` are in `sys.modules` after running `statement` (an import) in a fresh interpreter."
    r = run_python(f"import sys; {statement}; print(sorted(m for m in {sorted(modules)!r} if m in sys.modules))")
    assert r.returncode == 0, r.stderr
    return ast.literal_eval(r.stdout.strip().splitlines()[-1])


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    "Every node of `graph` (node -> the nodes it points to) that a path from `start` reaches."
    seen, todo = set(), [start]
    while todo:
        for nxt in graph[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


def png_bytes(size=(40, 30), color=(200, 30, 30)) -> bytes:
    buf = BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


class _Handler(BaseHTTPRequestHandler):
    routes = {}  # path -> (status, body, headers)

    def do_GET(self):
        if self.path == "/slow":
            time.sleep(3)
        status, body, headers = self.routes.get(self.path, (404, b"not found", {}))
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args):
        pass


@pytest.fixture(scope="session")
def http_server():
    "A server on 127.0.0.1 with a PNG, text, a large body and a slow route; yields its base URL."
    _Handler.routes = {
        "/cat.png": (200, png_bytes(), {"Content-Type": "image/png"}),
        "/page.html": (200, b"<html>not an image</html>", {"Content-Type": "text/html"}),
        "/big.bin": (200, b"x" * 5000, {"Content-Length": "5000"}),
        "/big-no-length.bin": (200, b"x" * 5000, {}),
        "/slow": (200, png_bytes(), {}),
    }
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.fixture(scope="session")
def offline_home():
    "The seeded stand-in cache (HF_HOME); seeding is idempotent and takes about a second when done."
    report = seed(os.environ["HF_HOME"], verbose=False)
    failed = {k: v for k, v in report.items() if str(v).startswith("failed")}
    assert not failed, f"stand-ins could not be built: {failed}"
    return os.environ["HF_HOME"]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture
def clean_env(monkeypatch):
    "No GENAIBOOK_* or IN_TEST variables, whatever the outer environment sets."
    for k in ("GENAIBOOK_MODE", "GENAIBOOK_DEVICE", "IN_TEST"):
        monkeypatch.delenv(k, raising=False)
    return monkeypatch


@pytest.fixture(scope="module")
def pipe(offline_home):
    "The Stable Diffusion 1.5 twin (the real architecture, tiny random weights), one per test module, no progress bars."
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()
    p = StableDiffusionPipeline.from_pretrained("stable-diffusion-v1-5/stable-diffusion-v1-5")
    p.set_progress_bar_config(disable=True)
    return p
