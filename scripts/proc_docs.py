"""Pre-process the notebooks for the docs site: `nbdev_proc_nbs` without its Quarto step.

Where Quarto is missing, `nbdev_proc_nbs` downloads and installs it (with sudo) and then runs `pip install -e .[dev]`;
CI has no network for that. This runs the same steps nbdev does before rendering: refresh nbs/nbdev.yml, rebuild
genaibook/_modidx.py, and write the processed notebooks (show_doc cells executed) to _proc/.
"""
import shutil
import subprocess

def main():
    if shutil.which("quarto"): subprocess.run(["nbdev_proc_nbs"], check=True); return
    from nbdev.doclinks import _build_modidx
    from nbdev.quarto import refresh_quarto_yml
    from nbdev.serve import proc_nbs
    refresh_quarto_yml(); _build_modidx()
    print("processed notebooks in", proc_nbs("nbs", force=True))


if __name__ == "__main__": main()  # the guard matters: nbdev's worker processes re-import this file
