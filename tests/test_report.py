"""The report in headless Chromium (Debian package `chromium`, installed by `make sysdeps`): every
image and the 3-D viewer load, nothing is fetched from the network, no link points outside the file.

The browser is driven over the DevTools protocol on a pipe (--remote-debugging-pipe: JSON messages
separated by NUL bytes on file descriptors 3 and 4), so no websocket library is needed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import MMCIF_DIR
from test_infer_writer import fake_confidences, layout_from_gemmi, read_source
from test_workflow_helpers import REPO, make_workdir, snakemake

from model.eval.report import write_target_page
from model.infer.writer import write_target

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
LOCAL_SCHEMES = ("data:", "file:", "about:", "blob:", "chrome:", "chrome-extension:", "devtools:")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium missing: run `make sysdeps`")


class Browser:
    """Headless Chromium driven over the DevTools protocol on a pipe."""

    def __init__(self, tmp: Path):
        cmd_read, self._cmd = os.pipe()
        self._events_fd, events_write = os.pipe()
        # Chromium reads commands on fd 3 and answers on fd 4: the shell moves the pipe ends there
        # (through spare descriptors, in case a pipe end already is 3 or 4).
        close = " ".join(f"{fd}<&-" for fd in (cmd_read, events_write) if fd not in (3, 4))
        redirect = f"exec 10<&{cmd_read} 11>&{events_write}; exec 3<&10 4>&11 10<&- 11>&- {close}"
        args = [
            "--headless", "--no-sandbox", "--remote-debugging-pipe", "--no-first-run",
            "--enable-unsafe-swiftshader", "--use-angle=swiftshader", f"--user-data-dir={tmp}",
            "--window-size=1000,1400", "about:blank",
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            ["bash", "-c", f'{redirect}; exec "$0" "$@"', CHROMIUM, *args],
            pass_fds=(cmd_read, events_write),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(cmd_read)
        os.close(events_write)
        self._buffer = b""
        self._next_id = 0
        self.requests: list[str] = []
        self.failed: list[str] = []
        page = next(t for t in self.call("Target.getTargets")["targetInfos"] if t["type"] == "page")
        attached = self.call("Target.attachToTarget", targetId=page["targetId"], flatten=True)
        self.session = attached["sessionId"]
        for domain in ("Network.enable", "Page.enable", "Runtime.enable"):
            self.call(domain, session=self.session)
        # frames of their own (the report's iframes) report their requests through child sessions
        auto = {"autoAttach": True, "waitForDebuggerOnStart": False, "flatten": True}
        self.call("Target.setAutoAttach", session=self.session, **auto)

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            if time.monotonic() > deadline:
                raise TimeoutError("no answer from Chromium")
            chunk = os.read(self._events_fd, 1 << 16)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def _record(self, message: dict) -> None:
        method, params = message.get("method"), message.get("params", {})
        if method == "Network.requestWillBeSent":
            self.requests.append(params["request"]["url"])
        elif method == "Network.loadingFailed" and not params.get("canceled"):
            self.failed.append(params.get("errorText", "?"))
        elif method == "Target.attachedToTarget":
            child = params["sessionId"]
            self.send("Network.enable", session=child)
            self.send("Runtime.runIfWaitingForDebugger", session=child)

    def send(self, method: str, session: str | None = None, **params) -> int:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._cmd, json.dumps(message).encode() + b"\0")
        return self._next_id

    def call(self, method: str, session: str | None = None, timeout: float = 60.0, **params) -> dict:
        wanted = self.send(method, session, **params)
        deadline = time.monotonic() + timeout
        while True:
            message = self._read_message(deadline)
            if message.get("id") == wanted:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self._record(message)

    def evaluate(self, expression: str, timeout: float = 120.0):
        result = self.call(
            "Runtime.evaluate", session=self.session, timeout=timeout, expression=expression,
            awaitPromise=True, returnByValue=True,
        )  # fmt: skip
        if "exceptionDetails" in result:
            raise RuntimeError(result["exceptionDetails"])
        return result["result"].get("value")

    def open(self, path: Path) -> None:
        self.call("Page.navigate", session=self.session, url=path.resolve().as_uri())
        # wait for the load event, recording requests meanwhile
        loaded = "document.readyState === 'complete' ? r(1) : addEventListener('load', () => r(1))"
        self.evaluate(f"new Promise(r => {loaded})")

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        os.close(self._cmd)
        os.close(self._events_fd)


# Loads every result of a Snakemake report (results: path -> {mime_type, data_uri}) the way its
# viewer does: images as <img>, HTML pages in iframes, whose pages post their status when laid out.
REPORT_CHECK = """
new Promise(resolve => {
  const out = {images: [], broken: [], pages: [], app: document.querySelector('#app').children.length};
  const entries = Object.entries(results);
  const expected = entries.filter(([p, r]) => r.mime_type === 'text/html').length;
  let pending = 0;
  const done = () => { if (pending === 0 && out.pages.length >= expected) resolve(out); };
  addEventListener('message', ev => {
    if (ev.data && ev.data.foldline_report) { out.pages.push(ev.data.foldline_report); done(); }
  });
  for (const [path, r] of entries) {
    if (r.mime_type.startsWith('image/')) {
      pending++;
      const img = new Image();
      img.onload = () => { out.images.push([path, img.naturalWidth]); pending--; done(); };
      img.onerror = () => { out.broken.push(path); pending--; done(); };
      img.src = r.data_uri;
    } else if (r.mime_type === 'text/html') {
      const frame = document.createElement('iframe');
      frame.style.width = '900px'; frame.style.height = '700px';
      frame.src = r.data_uri;
      document.body.appendChild(frame);
    }
  }
  setTimeout(() => resolve(out), 90000);
  done();
})
"""


@pytest.fixture()
def browser(tmp_path):
    b = Browser(tmp_path / "chromium-profile")
    yield b
    b.close()


def _assert_offline(browser: Browser) -> None:
    remote = [u for u in browser.requests if not u.startswith(LOCAL_SCHEMES)]
    assert not remote, f"network requests: {remote[:5]}"
    assert not browser.failed, browser.failed


def test_target_page_loads_images_and_viewer_offline(tmp_path, browser):
    """A page built from real writer output (1k6p with its ligands) opened directly."""
    layout, xyz = layout_from_gemmi(read_source("1k6p"))
    samples = [(1, np.stack([xyz, xyz + 0.5]), fake_confidences(layout, 2, 1))]
    folder = write_target(tmp_path / "predictions", "prot", layout, samples, n_cycle=1, provenance={})
    page = tmp_path / "prot.html"
    write_target_page("prot", folder, REPO / "workflow/report/3Dmol-min.js", page)
    browser.open(page)
    status = browser.evaluate("({viewer: document.body.dataset.viewer, images: document.body.dataset.images,"
                              " external: document.body.dataset.external,"
                              " canvas: document.querySelectorAll('#viewer canvas').length})")  # fmt: skip
    assert status["viewer"] == "ready", status
    assert status["images"] == "2 0" and status["external"] == "0" and status["canvas"] >= 1
    widths = browser.evaluate("Array.from(document.images).map(i => i.naturalWidth)")
    assert len(widths) == 2 and min(widths) > 100
    rows = browser.evaluate("document.querySelectorAll('table tbody tr').length")
    assert rows == 2  # the ranking table: one row per sample
    _assert_offline(browser)


@pytest.mark.slow
def test_workflow_report_with_evaluation_opens_offline(tmp_path, browser):
    """predict -> evaluate -> predict --report report.html on the demo targets (tiny network, random
    weights), then every result of the report is loaded in Chromium."""
    workdir = make_workdir(tmp_path / "wf", {"samples": 2, "steps": 2, "cycles": 1, "checkpoint": "none"})
    refs = tmp_path / "refs"
    refs.mkdir()
    (refs / "trp_cage.cif.gz").symlink_to(MMCIF_DIR / "1l2y.cif.gz")
    (refs / "dickerson_dodecamer.cif.gz").symlink_to(MMCIF_DIR / "1bna.cif.gz")
    snakemake(workdir, "predict", "--cores", "2", timeout=1500)
    snakemake(workdir, "evaluate", "--cores", "2", "--config", f"references={refs}", timeout=900)
    table = (workdir / "results/evaluation.tsv").read_text().splitlines()
    assert len(table) == 1 + 2 * 2 + 1  # two samples of two targets, one error row (no reference)
    snakemake(workdir, "predict", "--cores", "2", timeout=900)  # pages now show the metrics
    page = (workdir / "results/report/trp_cage.html").read_text()
    assert "Against the reference structure" in page and f"{refs}/trp_cage.cif.gz" in page
    snakemake(workdir, "predict", "--cores", "1", "--report", "report.html", timeout=900)
    browser.open(workdir / "report.html")
    out = browser.evaluate(REPORT_CHECK, timeout=150)
    assert out["app"] > 0  # the report's own viewer rendered
    assert not out["broken"] and all(width > 0 for _, width in out["images"])
    assert len(out["pages"]) == 3, out["pages"]
    for status in out["pages"]:
        assert status["viewer"] == "ready" and status["broken"] == 0 and status["external"] == [], status
    _assert_offline(browser)


def test_training_curves_read_the_metrics_the_loop_writes(tmp_path):
    """A metrics.csv with the loop's columns (validation on some steps only) becomes one PNG."""
    from model.eval.report import write_training_png
    from model.train.loop import METRIC_COLUMNS

    rows = [",".join(METRIC_COLUMNS)]
    for step in range(1, 7):
        values = {"step": step, "loss": 10.0 / step, "diffusion": 5.0 / step, "lr": 1e-4 * step, "n_cycle": 1}
        if step % 3 == 0:
            values |= {"val_lddt": 0.1 * step, "val_dockq": 0.05 * step}
        rows.append(",".join(str(values.get(c, "")) for c in METRIC_COLUMNS))
    (tmp_path / "metrics.csv").write_text("\n".join(rows) + "\n")
    write_training_png(tmp_path / "metrics.csv", 1, tmp_path / "stage1.png")
    png = (tmp_path / "stage1.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000


def test_predict_plans_report_pages_but_never_the_evaluation(tmp_path):
    """`predict` builds a page per target; an evaluation already on disk is read, not re-planned
    (planned without `references`, it would overwrite every evaluation with an error)."""
    from test_workflow_helpers import planned_jobs

    work = make_workdir(tmp_path / "wf", {"checkpoint": "none"})
    (work / "results/evaluation").mkdir(parents=True)
    (work / "results/evaluation/trp_cage.json").write_text('{"target_id": "trp_cage", "error": "x"}\n')
    rules = [r for r, _ in planned_jobs(work, "predict")]
    assert rules.count("report_target") == 3 and "evaluate_target" not in rules
    refs = tmp_path / "refs"
    refs.mkdir()
    (refs / "trp_cage.cif.gz").symlink_to(MMCIF_DIR / "1l2y.cif.gz")
    jobs = planned_jobs(work, "evaluate", "--config", f"references={refs}")
    assert sorted(w for r, w in jobs if r == "evaluate_target") == [
        "target=dickerson_dodecamer", "target=trp_cage", "target=trp_cage_atp"
    ]  # fmt: skip
    assert [r for r, _ in jobs].count("evaluation_table") == 1
