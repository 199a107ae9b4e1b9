"Shared fixtures: a headless matplotlib, no network, and a small HTTP server on loopback for load_image."
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BytesIO

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


def png_bytes(size=(40, 30), color=(200, 30, 30)) -> bytes:
    buf = BytesIO(); Image.new("RGB", size, color).save(buf, format="PNG"); return buf.getvalue()


class _Handler(BaseHTTPRequestHandler):
    routes = {}  # path -> (status, body, headers)

    def do_GET(self):
        if self.path == "/slow": time.sleep(3)
        status, body, headers = self.routes.get(self.path, (404, b"not found", {}))
        self.send_response(status)
        for k, v in headers.items(): self.send_header(k, v)
        self.end_headers()
        try: self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError): pass

    def log_message(self, *args): pass


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
    thread = threading.Thread(target=server.serve_forever, daemon=True); thread.start()
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
    for k in ("GENAIBOOK_MODE", "GENAIBOOK_DEVICE", "IN_TEST"): monkeypatch.delenv(k, raising=False)
    return monkeypatch
