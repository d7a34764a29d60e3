"""The JavaScript client (runtime_tests/js) on onnxruntime-node and onnxruntime-web (WebAssembly, under
Node), against fixtures written here from Python's own onnxruntime run.

Cases: the cached and uncached graphs of every model kind, one model with its weights in an
external-data sidecar, raw-feature graphs of Criteo- and Avazu-format checkpoints, and a request
graph. For a raw graph the expected outputs are the *id graph's* on the Python preprocessing of the
same rows, so the JavaScript run shows raw graph == id graph ∘ Python preprocessing in that runtime
too; for a request graph they are the uncached id graph's on the full rows (context, candidate i) its
requests stand for, |Δ| <= REQUEST_ATOL. The
packages come from runtime_tests/js/package-lock.json (``npm ci --ignore-scripts``; .ci/run does
it first, and this test does it when node_modules is missing).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from export import load_model, save_model
from export.ort import session
from export.package import package_models
from export.parity import ATOL, parity_ids
from export.parity import outputs_in_serving_batches as outputs
from export.raw_input import RawContract
from export.raw_rows import probe_rows, python_ids, read_rows
from export.contract import INPUT_NAME, FieldRoles
from export.request_export import export_request
from fm2onnx.checkpoint import load_checkpoint

from .conftest import CASES, VARIABLE_DIMS, case_id
from .raw_checkpoints import raw_models  # noqa: F401  (session fixture)

JS_DIR = Path(__file__).resolve().parent / "js"
JS_TESTS = ["test/node.test.mjs", "test/web.test.mjs"]
ROWS = 48
REQUEST_SIZES = (0, 1, 2, 7)  # candidates per request: the empty request and one that is not a power of two
REQUEST_ATOL = 1e-4
CONTEXT_FIELDS = ["site", "device", "hour"]  # not contiguous: the inputs' columns interleave with the items'


def ensure_packages() -> None:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("node and npm are needed for the JavaScript client tests (Node 20; see README)")
    if all((JS_DIR / "node_modules" / name / "package.json").is_file() for name in ("onnxruntime-node", "onnxruntime-web")):
        return
    # --ignore-scripts: onnxruntime-node's install script downloads extra binaries; its linux-x64 one ships
    done = subprocess.run(["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund"], cwd=JS_DIR,
                          capture_output=True, text=True)
    if done.returncode:
        pytest.fail(f"npm ci in {JS_DIR} failed:\n{done.stderr[-2000:]}")


def _json_number(x: float):
    return x if math.isfinite(x) else str(x).replace("inf", "Infinity").replace("nan", "NaN")


def id_case(name: str, model: Path, ids: np.ndarray, fixtures: Path, field_names) -> dict:
    copied = shutil.copy(model, fixtures / f"{name}.onnx")
    want = outputs(session(copied), {INPUT_NAME: ids})
    return {"name": name, "model": Path(copied).name, "input": "ids", "field_names": list(field_names),
            "rows": ids.tolist(), "expected": {"logit": want["logit"].tolist(),
                                               "probability": want["probability"].tolist()}}


def raw_case(name: str, raw_model: Path, id_model: Path, pre, rows: dict, fixtures: Path) -> dict:
    """Expected: the id graph on the Python preprocessing of the rows."""
    contract = RawContract.of(pre)
    ids = python_ids(pre, rows)
    want = outputs(session(id_model), {INPUT_NAME: ids})
    n = len(ids)
    row_objects = [{c: (_json_number(float(rows[c][r])) if c in contract.numeric_columns else rows[c][r])
                    for c in contract.numeric_columns + contract.categorical_columns} for r in range(n)]
    copied = shutil.copy(raw_model, fixtures / f"{name}.onnx")
    return {"name": name, "model": Path(copied).name, "input": "raw", "field_names": pre.field_names,
            "numeric_columns": list(contract.numeric_columns), "rows": row_objects,
            "expected": {"feature_ids": ids.tolist(), "logit": want["logit"].tolist(),
                         "probability": want["probability"].tolist()}}


def exported_requests(checkpoint: Path, full_rows_model: Path, model: Path) -> tuple[dict, dict]:
    """The request graph of ``checkpoint`` written to ``model``, requests of REQUEST_SIZES candidates
    (the context of one parity row, the item fields of others), and the expected outputs:
    ``full_rows_model`` on each request's full rows (the context repeated beside every candidate),
    all requests concatenated. Shared with test_browser.py."""
    export_request(checkpoint, model, context=CONTEXT_FIELDS, items=None)
    spec = load_checkpoint(checkpoint).spec
    roles = FieldRoles.of_names(spec, CONTEXT_FIELDS, None)
    ids = parity_ids(spec, sum(REQUEST_SIZES) + len(REQUEST_SIZES), seed=9)  # incl. out-of-range ids
    requests, full, start = [], [], len(REQUEST_SIZES)
    for k, size in enumerate(REQUEST_SIZES):
        context, candidates = ids[k, list(roles.context)], ids[start:start + size][:, list(roles.items)]
        requests.append({"context": context.tolist(), "candidates": candidates.tolist()})
        full.append(roles.full_rows(context, candidates))
        start += size
    want = outputs(session(full_rows_model), {INPUT_NAME: np.concatenate(full)})
    case = {"field_names": list(spec.field_names), "context_fields": CONTEXT_FIELDS,
            "item_fields": [spec.field_names[f] for f in roles.items], "requests": requests}
    return case, want


def request_case(name: str, checkpoint: Path, full_rows_model: Path, fixtures: Path) -> dict:
    case, want = exported_requests(checkpoint, full_rows_model, fixtures / f"{name}.onnx")
    return {"name": name, "model": f"{name}.onnx", "input": "ids", "form": "request", **case,
            "tolerance": REQUEST_ATOL, "expected": {"logit": want["logit"].tolist(),
                                                    "probability": want["probability"].tolist()}}


def head(rows: dict, n: int) -> dict:
    return {c: v[:n] for c, v in rows.items()}


def joined(a: dict, b: dict) -> dict:
    return {c: a[c] + b[c] for c in a}


@pytest.fixture(scope="module")
def fixtures(exported, raw_models, tmp_path_factory) -> tuple[Path, int]:
    root = tmp_path_factory.mktemp("js-fixtures")
    cases = []
    for case in CASES:
        ckpt, cached, uncached, _ = exported(case)
        spec = load_checkpoint(ckpt).spec
        ids = parity_ids(spec, ROWS, seed=5)  # incl. unknown, negative and past-the-vocabulary ids
        cases.append(id_case(f"{case_id(case)}-cached", cached, ids, root, spec.field_names))
        cases.append(id_case(f"{case_id(case)}-uncached", uncached, ids, root, spec.field_names))
        if case == CASES[-1]:  # weights in a sidecar, as a Criteo-scale model has them
            graph = load_model(cached)
            save_model(graph, root / "external.onnx", external_data_threshold=0)
            cases.append({**id_case("external-data", root / "external.onnx", ids, root, spec.field_names),
                          "model": "external.onnx", "external_data": "external.onnx.data"})
    ckpt, _, uncached, _ = exported(("fmfm", VARIABLE_DIMS))
    cases.append(request_case("fmfm-variable-request", ckpt, uncached, root))
    package_models([root / "fmfm-variable-request.onnx"], root / "edge")  # the contract read from a .ort file
    cases.append({**cases[-1], "name": "fmfm-variable-request-ort", "model": "edge/fmfm-variable-request.ort"})
    for fmt in ("criteo", "avazu"):
        models = raw_models(fmt)
        pre = models.preprocessor
        rows = joined(head(read_rows(models.data, pre, ROWS), ROWS), probe_rows(pre, ROWS, seed=4))
        for form in ("cached", "uncached"):
            cases.append(raw_case(f"{fmt}-raw-{form}", models.raw[form], models.ids[form], pre, rows, root))
    (root / "manifest.json").write_text(json.dumps({"tolerance": ATOL, "cases": cases}))
    return root, len(cases)


def test_js_client_on_onnxruntime_node_and_web(fixtures):
    root, n_cases = fixtures
    ensure_packages()
    temp = root / "node-temp"  # onnxruntime-node writes a log file per process (mat-debug-PID.log) there
    temp.mkdir(exist_ok=True)
    done = subprocess.run(["node", "--test", *JS_TESTS], cwd=JS_DIR, capture_output=True, text=True,
                          env={**os.environ, "FM2ONNX_JS_FIXTURES": str(root), "TMPDIR": str(temp)}, timeout=600)
    report = done.stdout + done.stderr
    assert done.returncode == 0, f"JavaScript parity failed:\n{report[-6000:]}"
    passed = re.search(r"^# pass (\d+)$", report, re.M)
    assert passed and int(passed.group(1)) == 2 * n_cases, report[-2000:]  # every case, both runtimes
