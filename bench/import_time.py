"""How long `import genaibook.core` takes on top of `import torch`, in fresh interpreters (median of N runs).

Usage: python bench/import_time.py [N]
"""

import statistics
import subprocess
import sys

CODE = (
    "import time; t0 = time.perf_counter(); import torch; t1 = time.perf_counter(); import genaibook.core; "
    "t2 = time.perf_counter(); import sys; "
    "heavy = [m for m in ('matplotlib', 'diffusers', 'transformers') if m in sys.modules]; "
    "print(t1 - t0, t2 - t1, ','.join(heavy))"
)


def measure(n: int = 5) -> tuple[float, float, str]:
    runs = [
        subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, check=True).stdout.split()
        for _ in range(n)
    ]
    return (
        statistics.median(float(r[0]) for r in runs),
        statistics.median(float(r[1]) for r in runs),
        runs[-1][2] if len(runs[-1]) > 2 else "none",
    )


if __name__ == "__main__":
    torch_s, core_s, heavy = measure(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
    print(
        f"import torch: {torch_s:.2f} s; genaibook.core on top: {core_s * 1000:.0f} ms; heavy modules imported: {heavy}"
    )
