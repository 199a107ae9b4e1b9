"""Pre-process the notebooks for the docs site: `nbdev_proc_nbs` without its Quarto step.

Where Quarto is missing, `nbdev_proc_nbs` downloads and installs it (with sudo) and then runs `pip install -e .[dev]`;
CI has no network for that. This runs the same steps nbdev does before rendering: refresh nbs/nbdev.yml, rebuild
genaibook/_modidx.py, and write the processed notebooks (show_doc cells executed) to _proc/. Then it adds the
docs-only "Open in Colab" badge to each chapter's copy and escapes show_doc headings (scripts/docs_procs.py); run it
before `nbdev_docs`, which renders the copies in _proc/ as they are.
"""

import shutil
import subprocess
from pathlib import Path

from docs_procs import ROOT, process  # scripts/ is on sys.path: this file runs as `python scripts/proc_docs.py`


def main():
    if shutil.which("quarto"):
        subprocess.run(["nbdev_proc_nbs"], check=True)
        proc = ROOT / "_proc"
    else:
        from nbdev.doclinks import _build_modidx
        from nbdev.quarto import refresh_quarto_yml
        from nbdev.serve import proc_nbs

        refresh_quarto_yml()
        _build_modidx()
        proc = proc_nbs("nbs", force=True)
    print("processed notebooks in", proc)
    for what, nbs in process(Path(proc)).items():
        print(f"{what}: {', '.join(nbs) or 'no notebook (none needed it)'}")


if __name__ == "__main__":
    main()  # the guard matters: nbdev's worker processes re-import this file
