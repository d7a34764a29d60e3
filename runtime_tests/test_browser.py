"""The JavaScript client on onnxruntime-web in a real browser: headless Chromium opens
runtime_tests/web/index.html from a local HTTP server, scores FmFM graphs (one with its weights in
a ``model.onnx.data`` sidecar) and the logits are compared with Python's onnxruntime on the same rows;
and a request graph's requests, compared with the id graph on their full rows.

Chromium is Debian's ``chromium`` (.ci/run installs it), driven by puppeteer-core from
runtime_tests/js/package-lock.json through runtime_tests/js/browser.mjs.
"""

from __future__ import annotations

import http.server
import json
import posixpath
import shutil
import subprocess
import threading
import urllib.parse
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from export import load_model, save_model
from export.contract import INPUT_NAME
from export.ort import session
from export.parity import outputs_in_serving_batches, parity_ids, serving_batches
from fm2onnx.checkpoint import load_checkpoint

from .test_js_client import CONTEXT_FIELDS, REQUEST_ATOL, exported_requests

HERE = Path(__file__).resolve().parent
JS_DIR = HERE / "js"
WEB_DIR = HERE / "web"
ROWS = 32
MAX_DELTA = 1e-5
PAGE_TIMEOUT_MS = 15_000


@pytest.fixture(scope="module")
def chromium() -> str:
    """The browser, looked for before any model is exported for it; and its driver's packages."""
    path = shutil.which("chromium")
    if path is None:
        pytest.skip("chromium not installed: apt-get install chromium")
    ensure_driver()
    return path


def ensure_driver() -> None:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("node and npm are needed to drive the browser (Node 20; see README)")
    if (JS_DIR / "node_modules" / "puppeteer-core" / "package.json").is_file():
        return
    # --ignore-scripts: as .ci/run installs them; puppeteer-core downloads no browser either way
    done = subprocess.run(["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund"], cwd=JS_DIR,
                          capture_output=True, text=True)
    if done.returncode:
        pytest.fail(f"npm ci in {JS_DIR} failed:\n{done.stderr[-2000:]}")


class Handler(http.server.SimpleHTTPRequestHandler):
    """Static files from a few mounted directories; the MIME types onnxruntime-web's WASM needs."""

    mounts: dict[str, Path] = {}
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                      ".wasm": "application/wasm", ".mjs": "text/javascript", ".data": "application/octet-stream"}

    def translate_path(self, path: str) -> str:
        # normpath of the absolute URL path drops any "..", so nothing outside a mount is served
        parts = [p for p in posixpath.normpath(urllib.parse.unquote(urllib.parse.urlsplit(path).path)).split("/") if p]
        if not parts or parts[0] not in self.mounts:
            return str(Path("/nonexistent"))
        return str(self.mounts[parts[0]].joinpath(*parts[1:]))

    def log_message(self, *args) -> None:  # keep pytest's output to the test's own line
        pass


@contextmanager
def serving(mounts: dict[str, Path]):
    """http://127.0.0.1:<free port>/<mount>/..., served from a thread for the block's duration."""
    handler = type("MountedHandler", (Handler,), {"mounts": mounts})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def browser_case(name: str, model: Path, ids: np.ndarray, root: Path, external_data: Path | None = None) -> dict:
    """The page's case (rows cut into serving batches, so every batch-size branch runs) and Python's logits."""
    want = outputs_in_serving_batches(session(model), {INPUT_NAME: ids})
    case = {"name": name, "model": model.relative_to(root).as_posix(),
            "batches": [ids[cut].tolist() for cut in serving_batches(len(ids))]}
    if external_data is not None:
        case["externalData"] = external_data.relative_to(root).as_posix()
    return {"page": case, "logit": want["logit"], "probability": want["probability"]}


@pytest.fixture(scope="module")
def browser_cases(exported, tmp_path_factory) -> tuple[Path, list[dict], list[str]]:
    root = tmp_path_factory.mktemp("browser")
    ckpt, cached, uncached, _ = exported(("fmfm", None))
    spec = load_checkpoint(ckpt).spec
    ids = parity_ids(spec, ROWS, seed=11)  # incl. unknown, negative and past-the-vocabulary ids
    (root / "sidecar").mkdir()
    sidecar_files = save_model(load_model(cached), root / "sidecar" / "model.onnx", external_data_threshold=0)
    assert len(sidecar_files) == 2, "the sidecar copy was written without its model.onnx.data"
    cases = [browser_case("fmfm-cached", Path(shutil.copy(cached, root / "cached.onnx")), ids, root),
             browser_case("fmfm-uncached", Path(shutil.copy(uncached, root / "uncached.onnx")), ids, root),
             browser_case("fmfm-cached-sidecar", sidecar_files[0], ids, root, external_data=sidecar_files[1])]
    request, want = exported_requests(ckpt, uncached, root / "request.onnx")
    cases.append({"page": {"name": "fmfm-request", "model": "request.onnx", "requests": request["requests"]},
                  "logit": want["logit"], "probability": want["probability"], "max_delta": REQUEST_ATOL})
    (root / "manifest.json").write_text(json.dumps({"cases": [c["page"] for c in cases]}))
    return root, cases, list(spec.field_names)


def run_page(fixtures: Path, browser: str) -> dict:
    with serving({"web": WEB_DIR, "js": JS_DIR, "fixtures": fixtures}) as origin:
        url = f"{origin}/web/index.html?manifest=/fixtures/manifest.json"
        done = subprocess.run(["node", "browser.mjs", browser, url, str(PAGE_TIMEOUT_MS)], cwd=JS_DIR,
                              capture_output=True, text=True, timeout=PAGE_TIMEOUT_MS / 1000 + 30)
    lines = done.stdout.strip().splitlines()
    assert done.returncode == 0 and lines, (
        f"the browser run failed (exit {done.returncode}):\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    report = json.loads(lines[-1])
    return json.loads(report["result"])


def max_delta(got: list[float], want: np.ndarray, what: str) -> float:
    got = np.asarray(got, np.float64)
    assert got.shape == want.shape, f"{what}: {got.shape[0]} values from the page, {want.shape[0]} expected"
    assert np.all(np.isfinite(got)), f"{what}: non-finite values from the page"
    return float(np.max(np.abs(got - want.astype(np.float64))))


def test_onnxruntime_web_in_chromium_matches_python(chromium, browser_cases, record_property):
    root, cases, field_names = browser_cases
    page = run_page(root, chromium)
    assert [c["name"] for c in page["cases"]] == [c["page"]["name"] for c in cases], page
    deltas, limits, rows = {}, {}, 0
    for got, want in zip(page["cases"], cases):
        assert got["fieldNames"] == field_names, got["name"]
        for output in ("logit", "probability"):
            key = f"{got['name']} {output}"
            deltas[key] = max_delta(got[output], want[output], key)
            limits[key] = want.get("max_delta", MAX_DELTA)  # a request graph against the full rows: its own
        rows += len(got["logit"])
    request = page["cases"][-1]
    assert request["contextFields"] == CONTEXT_FIELDS, request
    assert request["refusal"].startswith(f"context_ids: the context has {len(CONTEXT_FIELDS) - 1} ids"), request
    worst = max(deltas.values())
    failed = {key: d for key, d in deltas.items() if d > limits[key]}
    line = f"browser: {'FAIL' if failed else 'pass'}, {rows} rows compared, max |Δ| {worst:.2e}"
    print(line)
    record_property("browser", line)
    record_property("browser_runtime", f"onnxruntime-web {page['ortVersion']} in {page['userAgent']}")
    assert not failed, f"{line}; max |Δ| per case: {deltas}"

