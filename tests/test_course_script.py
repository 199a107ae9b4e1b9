"scripts/course.sh: its stages run with no network at all, and gpu-check stops at once without a CUDA GPU."

import os
import re
import shutil
import subprocess
import sys
import time

import nbformat
import pytest

from conftest import ROOT


def course_sh(*args, env=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "scripts/course.sh", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def _unshare() -> list[str]:
    "The unshare command that makes a network namespace here, tried as course.sh tries it; [] if none works."
    if not shutil.which("unshare"):
        return []
    for how in (["unshare", "-n"], ["unshare", "-rn"]):  # as root; else in a user namespace, where those are allowed
        if subprocess.run([*how, "true"], capture_output=True).returncode == 0:
            return how
    return []


UNSHARE = _unshare()
needs_unshare = pytest.mark.skipif(
    not UNSHARE,
    reason=(
        "unshare -n is missing or not permitted here (it needs root, CAP_SYS_ADMIN or user namespaces), "
        "so course.sh test runs unisolated"
    ),
)


@pytest.fixture(scope="module")
def set_up():
    "course.sh's commands begin with setup, which would pip install unless .venv was set up from this very course.sh."
    if course_sh("_is-set-up", timeout=30).returncode:
        pytest.skip(
            ".venv was set up from another settings.ini/setup.py/course.sh, so the command would reinstall it "
            "first: run `bash scripts/course.sh setup`"
        )


@needs_unshare
def test_the_namespace_has_no_network():
    t0 = time.monotonic()  # no connection, and no waiting for one: the namespace has no route at all
    connect = "import socket; socket.create_connection(('pypi.org', 443), timeout=3)"
    r = subprocess.run([*UNSHARE, sys.executable, "-c", connect], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and time.monotonic() - t0 < 3, r.stderr
    r = subprocess.run(
        [*UNSHARE, "bash", "scripts/course.sh", "_no-network"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith("network: none (pypi.org: ") and "loopback: up" in r.stdout


@needs_unshare
def test_offline_check_runs_a_kernel_with_no_network(set_up, tmp_path):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    nbformat.write(
        nbformat.v4.new_notebook(
            cells=[
                nbformat.v4.new_code_cell(
                    "import socket\ntry: socket.create_connection(('pypi.org', 443), timeout=3); print('online')\n"
                    "except OSError: print('KEY RESULT: offline')"
                )
            ]
        ),
        nbs / "probe.ipynb",
    )
    r = course_sh("offline-check", "--nbs", str(nbs), "--out", str(tmp_path / "out"))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "network: none" in r.stdout and "offline check passed" in r.stdout
    assert re.search(r"^probe +\d+\.\d +ok +offline$", r.stdout, re.M), r.stdout  # the kernel ran, and saw no network


def test_offline_check_refuses_where_no_namespace_can_be_made(set_up, tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "unshare").write_text("#!/bin/sh\necho 'unshare: unshare failed: Operation not permitted' >&2\nexit 1\n")
    (fake / "unshare").chmod(0o755)
    r = course_sh("offline-check", env={"PATH": f"{fake}{os.pathsep}{os.environ['PATH']}"})
    assert r.returncode != 0 and "offline-check cannot cut the network here" in r.stderr, r.stderr


def test_gpu_check_stops_at_once_without_cuda(set_up):
    t0 = time.monotonic()
    r = course_sh("gpu-check", env={"CUDA_VISIBLE_DEVICES": ""})
    assert r.returncode != 0
    assert "ERROR: no CUDA GPU: gpu-check needs one; see README" in r.stderr
    assert "nbdev_test" not in r.stdout and "stand-ins" not in r.stdout  # nothing ran after the check
    assert time.monotonic() - t0 < 120
