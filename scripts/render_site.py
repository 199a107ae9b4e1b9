"""Render the docs site's pages and check them in a real browser (headless Chromium), where Quarto isn't installed.

The published site is built by Quarto in CI (.github/workflows/deploy.yaml). This builds a plain stand-in from the
same processed notebooks and checks what Quarto would carry over unchanged:

1. `python scripts/proc_docs.py` writes the processed notebooks to _proc/ (show_doc cells executed, Colab badges);
2. nbconvert turns each one into _site_check/<same path>.html (title from the frontmatter; `#| echo: false` inputs
   hidden, as Quarto hides them);
3. Chromium opens every page over file:// and checks that it loads, that no local image is broken (naturalWidth 0),
   that each chapter has the Colab badge linking to its own notebook, and that each library page shows the signature
   of every `show_doc` in its processed notebook (at least one wherever the notebook exports a public function or
   class); then it takes screenshots of three pages into _site_check/screenshots/.

Remote images (the Colab badge's picture) can't load without a network: they are listed, not failed, unless
--online is given. Chromium is driven through its DevTools protocol with `websocket-client` (a jupyter_server
dependency, so the dev extra brings it).

Usage: python scripts/render_site.py [--no-proc] [--online]   (exit status 1 if any page fails)
"""

import argparse
import ast
import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

from docs_procs import colab_url, is_chapter

ROOT = Path(__file__).resolve().parent.parent
PROC, OUT = ROOT / "_proc", ROOT / "_site_check"
SCREENSHOTS = {
    "index.html": "index.png",
    "04_diffusion.html": "chapter_04_diffusion.png",
    "lib/10_schedulers.html": "lib_10_schedulers.png",
}
WIDTH, HEIGHT = 1280, 1600
SHOW_DOC_RE = re.compile(r"^#{2,4} (\S+)\n+```python\n(?:async def|def|class) ", re.M)  # what nbdev's show_doc writes


# ---- 1-2. processed notebooks to HTML --------------------------------------------------------------------------------
def frontmatter(nb) -> dict:
    "The YAML front matter nbdev puts in the first raw cell."
    cells = [c for c in nb.cells if c.cell_type == "raw" and c.source.startswith("---")]
    return (yaml.safe_load(cells[0].source.strip().strip("-")) or {}) if cells else {}


def directives(src: str) -> set[str]:
    "Quarto's `#| key: value` lines at the top of a code cell, normalised to 'key: value'."
    lines = [l for l in src.splitlines() if l.startswith("#|")]
    return {re.sub(r"\s+", " ", l[2:].strip()) for l in lines}


def prepare(nb):
    "What Quarto does that nbconvert doesn't: a title block, and no input where a cell says `echo: false`."
    import nbformat

    fm = frontmatter(nb)
    cells = [nbformat.v4.new_markdown_cell(f"# {fm.get('title', '')}\n\n*{fm.get('description', '')}*")]
    for c in nb.cells:
        if c.cell_type == "raw":
            continue
        ds = directives(c.source) if c.cell_type == "code" else set()
        if "include: false" in ds:
            continue
        if "echo: false" in ds:
            c.metadata.setdefault("transient", {})["remove_source"] = True
        cells.append(c)
    nb.cells = cells
    return nb


def render(proc: Path = PROC, out: Path = OUT) -> list[str]:
    "Write every notebook in `proc` as HTML under `out` (other files are copied); returns the pages' relative paths."
    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab", exclude_input_prompt=True, exclude_output_prompt=True)
    shutil.rmtree(out, ignore_errors=True)
    pages = []
    for src in sorted(p for p in proc.rglob("*") if p.is_file()):
        rel = src.relative_to(proc)
        dst = out / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.suffix != ".ipynb":
            shutil.copy2(src, dst)
            continue
        html, _ = exporter.from_notebook_node(prepare(nbformat.read(src, as_version=4)))
        dst.with_suffix(".html").write_text(html, encoding="utf-8")
        pages.append(rel.with_suffix(".html").as_posix())
    return pages


# ---- what each page must show ----------------------------------------------------------------------------------------
def public_api(nb_path: Path) -> list[str]:
    "Functions and classes a library notebook exports under public names (nbdev gives each a show_doc)."
    names = []
    for c in json.loads(nb_path.read_text(encoding="utf-8"))["cells"]:
        src = "".join(c["source"])
        if c["cell_type"] != "code" or not re.match(r"\s*#\|\s*exports?\b", src):
            continue
        try:
            tree = ast.parse("\n".join(l for l in src.splitlines() if not l.lstrip().startswith(("%", "!"))))
        except SyntaxError:
            continue
        defs = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
        names += [n.name for n in tree.body if isinstance(n, defs) and not n.name.startswith("_")]
    return names


def expectations(page: str, proc: Path = PROC, nbs: Path = ROOT / "nbs") -> dict:
    "What `page` must show: its own Colab link if it is a chapter, and the show_doc signatures of its notebook."
    rel = Path(page).with_suffix(".ipynb").as_posix()
    nb = json.loads((proc / rel).read_text(encoding="utf-8"))
    outs = ["".join(o.get("data", {}).get("text/markdown", "")) for c in nb["cells"] for o in c.get("outputs", [])]
    names = [m[1].replace("\\_", "_").split(".")[-1] for o in outs if (m := SHOW_DOC_RE.search(o))]
    public = rel.startswith("lib/") and (nbs / rel).exists() and bool(public_api(nbs / rel))
    return {"colab": colab_url(rel), "chapter": is_chapter(rel), "signatures": names, "needs_signature": public}


# ---- 3. Chromium over the DevTools protocol --------------------------------------------------------------------------
PAGE_FACTS = r"""(() => {
  const imgs = [...document.images].map(i => ({src: (i.getAttribute('src') || '').slice(0, 100),
                                               ok: i.complete && i.naturalWidth > 0}));
  const badges = [...document.querySelectorAll('a[href*="colab.research.google.com/github/"]')]
    .filter(a => a.querySelector('img')).map(a => a.href);
  const sigs = [];
  for (const h of document.querySelectorAll('.jp-OutputArea-output :is(h2, h3, h4)')) {
    const name = h.textContent.replace('¶', '').trim().split('.').pop();
    const sig = new RegExp('^\\s*(async\\s+def|def|class)\\s+' + name.replace(/\W/g, '') + '\\b');
    for (let el = h.nextElementSibling; el && !/^H[1-6]$/.test(el.tagName); el = el.nextElementSibling) {
      const pre = el.tagName === 'PRE' ? el : el.querySelector('pre');
      if (pre && sig.test(pre.textContent)) { sigs.push(name); break; }
    }
  }
  return {title: document.title, cells: document.querySelectorAll('.jp-Cell').length, imgs, badges, sigs};
})()"""


class Chromium:
    "A headless Chromium and one tab, driven over the DevTools protocol (stopped by `close`, or `with`)."

    def __init__(self, exe: str, timeout: float = 60):
        import websocket

        self.tmp, self.timeout, self.events, self.id = tempfile.mkdtemp(prefix="render_site_"), timeout, [], 0
        flags = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
            "--remote-debugging-port=0",
            "--remote-allow-origins=*",
            f"--user-data-dir={self.tmp}",
            f"--window-size={WIDTH},{HEIGHT}",
            "about:blank",
        ]
        self.proc = subprocess.Popen(
            [exe, *flags], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )  # its own process group, so `close` ends all of it
        try:
            self.ws = websocket.create_connection(self._page_ws_url(), timeout=timeout, suppress_origin=True)
        except BaseException:
            self.close()
            raise
        self.send("Page.enable")
        self.send("Emulation.setDeviceMetricsOverride", width=WIDTH, height=HEIGHT, deviceScaleFactor=1, mobile=False)

    def _page_ws_url(self) -> str:
        port_file, t0 = Path(self.tmp) / "DevToolsActivePort", time.time()
        while not port_file.exists() or not port_file.read_text().strip():
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited with status {self.proc.returncode}")
            if time.time() - t0 > self.timeout:
                raise TimeoutError("chromium did not open its DevTools port")
            time.sleep(0.1)
        port = port_file.read_text().split()[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            targets = json.load(r)
        return next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")

    def _recv(self) -> dict:
        msg = json.loads(self.ws.recv())
        if "method" in msg:
            self.events.append(msg)
        return msg

    def send(self, method: str, **params) -> dict:
        self.id += 1
        self.ws.send(json.dumps({"id": self.id, "method": method, "params": params}))
        while (msg := self._recv()).get("id") != self.id:
            pass
        if "error" in msg:
            raise RuntimeError(f"{method}: {msg['error'].get('message')}")
        return msg.get("result", {})

    def wait_for(self, event: str):
        t0 = time.time()
        while not any(e["method"] == event for e in self.events):
            if time.time() - t0 > self.timeout:
                raise TimeoutError(f"no {event} in {self.timeout:.0f} s")
            self._recv()

    def open(self, url: str) -> dict:
        "Load `url`, wait for its load event, and return the page's facts (PAGE_FACTS)."
        self.events.clear()
        res = self.send("Page.navigate", url=url)
        if res.get("errorText"):
            raise RuntimeError(f"navigation failed: {res['errorText']}")
        self.wait_for("Page.loadEventFired")
        return self.send("Runtime.evaluate", expression=PAGE_FACTS, returnByValue=True)["result"]["value"]

    def screenshot(self, path: Path):
        data = self.send("Page.captureScreenshot", format="png")["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))

    def close(self):
        if getattr(self, "ws", None):
            self.ws.close()
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def find_chromium() -> str | None:
    return next((p for n in ("chromium", "chromium-browser", "google-chrome") if (p := shutil.which(n))), None)


def problems(facts: dict, exp: dict, online: bool = False) -> tuple[list[str], list[str]]:
    "The page's failures, and the remote images it could not load (failures too when `online`)."
    fails = [] if facts["cells"] else ["no notebook cells on the page"]
    broken = [i["src"] for i in facts["imgs"] if not i["ok"]]
    remote = [s for s in broken if s.startswith(("http://", "https://"))]
    fails += [f"broken image {s!r}" for s in broken if s not in remote or online]
    if exp["chapter"] and exp["colab"] not in facts["badges"]:
        fails.append(f"no Colab badge linking to {exp['colab']} (found {facts['badges'] or 'none'})")
    if not exp["chapter"] and exp["colab"] in facts["badges"]:
        fails.append("a Colab badge on a page that is not a chapter")
    missing = [n for n in exp["signatures"] if n not in facts["sigs"]]
    if missing:
        fails.append(f"show_doc signatures not rendered: {', '.join(missing)}")
    if exp["needs_signature"] and not facts["sigs"]:
        fails.append("no show_doc signature on a library page with a public API")
    return fails, ([] if online else remote)


def check(
    pages: list[str],
    out: Path = OUT,
    proc: Path = PROC,
    online: bool = False,
    shots: dict = SCREENSHOTS,
    exe: str | None = None,
) -> dict:
    "Open every page in Chromium; returns {page: (failures, remote images not loaded, facts)}."
    results = {}
    with Chromium(exe or find_chromium()) as browser:
        for page in pages:
            try:
                facts = browser.open((out / page).resolve().as_uri())
                results[page] = (*problems(facts, expectations(page, proc), online), facts)
                if page in shots:
                    browser.screenshot(out / "screenshots" / shots[page])
            except Exception as e:
                results[page] = ([f"{type(e).__name__}: {e}"], [], {})
    return results


def summarize(results: dict, out: Path = OUT) -> int:
    "Print one line per page and a closing summary; returns the number of failing pages."
    n_bad, remote = 0, 0
    for page, (fails, rem, facts) in results.items():
        n_bad += bool(fails)
        remote += len(rem)
        what = f"{len(facts.get('imgs', []))} images, {len(facts.get('sigs', []))} signatures"
        what += f", {len(facts['badges'])} Colab badges" if facts.get("badges") else ""
        print(f"  {'FAIL' if fails else 'ok  '}  {page:36} {what}")
        for f in fails:
            print(f"          - {f}")
    shots = sorted((out / "screenshots").glob("*.png"))
    print(f"\nscreenshots: {', '.join(str(p.relative_to(ROOT)) for p in shots) or 'none'}")
    if remote:
        print(f"{remote} remote images not loaded (no network here; --online makes them failures)")
    print(f"{len(results)} pages checked, {n_bad} failed")
    return n_bad


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-proc", action="store_true", help="use _proc/ as it is (don't run scripts/proc_docs.py)")
    ap.add_argument("--online", action="store_true", help="remote images must load too")
    args = ap.parse_args(argv)
    if not args.no_proc:
        subprocess.run([sys.executable, str(ROOT / "scripts" / "proc_docs.py")], cwd=ROOT, check=True)
    if not PROC.is_dir():
        sys.exit("no _proc/: run python scripts/proc_docs.py first")
    if not find_chromium():
        sys.exit("no chromium on PATH: apt-get install chromium")
    t0 = time.time()
    pages = render()
    print(f"rendered {len(pages)} pages into {OUT.relative_to(ROOT)}/ in {time.time() - t0:.0f} s")
    return 1 if summarize(check(pages)) else 0


if __name__ == "__main__":
    sys.exit(main())
