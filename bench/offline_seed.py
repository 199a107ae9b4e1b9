"""Seeding the offline cache: wall time from scratch, time when cached, and size on disk.

Usage: python bench/offline_seed.py [DIR]   (default: a new temporary folder, removed afterwards)
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def du(path: Path, follow: bool) -> int:
    out = subprocess.run(["du", "-s", "-B1", *(["-L"] if follow else []), str(path)], capture_output=True, text=True)
    return int(out.stdout.split()[0])


def timed_seed(home: Path) -> float:
    start = time.perf_counter()
    subprocess.run(
        [str(Path(sys.executable).parent / "genaibook_offline"), "seed", str(home)],
        check=True,
        capture_output=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    return time.perf_counter() - start


if __name__ == "__main__":
    home = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp()) / "hf"
    scratch, cached = timed_seed(home), timed_seed(home)
    print(
        f"from scratch: {scratch:.1f} s; cached: {cached:.1f} s; size: {du(home, False) / 1e6:.0f} MB "
        f"({du(home, True) / 1e6:.0f} MB following links to real models in site-packages)"
    )
    if len(sys.argv) == 1:
        shutil.rmtree(home.parent)
