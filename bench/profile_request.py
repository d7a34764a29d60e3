"""Where a request graph's time goes (not a test): onnxruntime's per-node profile, one thread.

    python bench/profile_request.py MODEL.request.onnx [--candidates 1000] [--runs 300] [--ids zipf]

MODEL is a request graph (``fm2onnx export --context-fields ...``, or the one ``fm2onnx bench --request
... --workdir DIR`` keeps). Every run scores a different request from ``export/traffic.py``. Prints:

* each op type's share: the sum over its nodes of each node's median kernel time;
* the products (MatMul, Gemm) node by node, with their shapes and the GFLOP/s they ran at;
* this core's MatMul peak in the same process (a [1000, 1024] x [1024, 1024] product), the ceiling
  the products' arithmetic can reach;
* the run's p50 with profiling off, so the kernels' sum can be set against it.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from export.model_io import load_model  # noqa: E402
from export.traffic import DISTRIBUTIONS, request_ids  # noqa: E402
from fm2onnx.errors import Fm2OnnxError  # noqa: E402

PRODUCTS = ("MatMul", "Gemm")
POOL = 40  # requests cycled through, so repeated runs do not read the same rows from cache


def request_pool(model: Path, candidates: int, distribution: str) -> list[dict[str, np.ndarray]]:
    try:
        meta = load_model(model).metadata_props
    except Fm2OnnxError as error:
        raise SystemExit(f"error: {error}") from None
    if meta.get("form") != "request":
        raise SystemExit(f"error: {model}: not a request graph (metadata form={meta.get('form')!r})")
    roles, vocab = json.loads(meta["field_roles"]), json.loads(meta["vocab_sizes"])
    ids = request_ids(vocab, candidates * POOL, distribution)
    context = [f for f, role in enumerate(roles) if role == "context"]
    items = [f for f, role in enumerate(roles) if role == "item"]
    return [{"context_ids": ids[k * candidates:k * candidates + 1, context],
             "candidate_ids": ids[k * candidates:(k + 1) * candidates, items]} for k in range(POOL)]


def open_session(model: Path | bytes, profile_prefix: str | None = None) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
    options.log_severity_level = 3
    if profile_prefix:
        options.enable_profiling, options.profile_file_prefix = True, profile_prefix
    return ort.InferenceSession(model if isinstance(model, bytes) else str(model), options,
                                providers=["CPUExecutionProvider"])


def node_profile(model: Path, requests: list[dict], runs: int) -> list[dict]:
    """Per node: its name, op type, the shapes of one run, and its kernel times over ``runs`` runs (µs)."""
    with tempfile.TemporaryDirectory() as scratch:
        session = open_session(model, f"{scratch}/profile")
        for i in range(runs):
            session.run(None, requests[i % len(requests)])
        events = json.loads(Path(session.end_profiling()).read_text())
    nodes: dict[str, dict] = {}
    for event in events:
        if event.get("cat") != "Node" or not event["name"].endswith("_kernel_time"):
            continue
        args = event["args"]
        node = nodes.setdefault(event["name"].removesuffix("_kernel_time"), {
            "op": args["op_name"], "inputs": args.get("input_type_shape", []),
            "outputs": args.get("output_type_shape", []), "times": []})
        node["times"].append(event["dur"])
    return [{"name": name, **node, "median": float(np.median(node["times"]))} for name, node in nodes.items()]


def product_flops(node: dict) -> int:
    """2·M·K·N of a 2-D product, from its first input [M, K] and its output [M, N]."""
    (m, k), (_, n) = next(iter(node["inputs"][0].values())), next(iter(node["outputs"][0].values()))
    return 2 * m * k * n


def first_shape(values: list[dict]) -> str:
    """The profile's [{dtype: shape}, ...] -> the first shape, as 1000×148."""
    return "×".join(map(str, next(iter(values[0].values()))))


def median_us(run, repeats: int) -> float:
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        run(i)
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e6


def matmul_peak_gflops(rows: int = 1000, k: int = 1024, n: int = 1024) -> float:
    weights = onnx.numpy_helper.from_array(np.random.default_rng(0).random((k, n), np.float32), "W")
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("MatMul", ["X", "W"], ["Y"])], "peak",
        [onnx.helper.make_tensor_value_info("X", onnx.TensorProto.FLOAT, [rows, k])],
        [onnx.helper.make_tensor_value_info("Y", onnx.TensorProto.FLOAT, [rows, n])], [weights])
    session = open_session(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 18)])
                           .SerializeToString())
    x = np.random.default_rng(1).random((rows, k), np.float32)
    session.run(None, {"X": x})
    return 2 * rows * k * n / median_us(lambda _: session.run(None, {"X": x}), 15) / 1e3


def report(nodes: list[dict], wall_p50: float, peak: float) -> None:
    total = sum(node["median"] for node in nodes)
    by_op: dict[str, list[float]] = defaultdict(list)
    for node in nodes:
        by_op[node["op"]].append(node["median"])
    print(f"run p50 with profiling off: {wall_p50:,.0f} µs; "
          f"the {len(nodes)} kernels' medians sum to {total:,.0f} µs\n")
    print("| op type | nodes | µs (sum of node medians) | share |\n|---|---|---|---|")
    for op, times in sorted(by_op.items(), key=lambda item: -sum(item[1])):
        print(f"| {op} | {len(times)} | {sum(times):,.0f} | {sum(times) / total:.0%} |")
    print("\n| product | input | output | µs | GFLOP/s |\n|---|---|---|---|---|")
    products = [node for node in nodes if node["op"] in PRODUCTS]
    for node in sorted(products, key=lambda node: -node["median"]):
        rate = product_flops(node) / node["median"] / 1e3
        print(f"| {node['name']} | {first_shape(node['inputs'])} | {first_shape(node['outputs'])} "
              f"| {node['median']:,.0f} | {rate:.1f} |")
    flops = sum(product_flops(node) for node in products)
    seconds = sum(node["median"] for node in products)
    print(f"\nproducts: {flops / 1e6:.1f} MFLOP in {seconds:,.0f} µs, {flops / seconds / 1e3:.1f} GFLOP/s; "
          f"this core's MatMul peak ([1000, 1024] x [1024, 1024]): {peak:.1f} GFLOP/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--candidates", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--ids", choices=DISTRIBUTIONS, default="zipf")
    args = parser.parse_args()
    requests = request_pool(args.model, args.candidates, args.ids)
    session = open_session(args.model)
    for request in requests:  # warm-up: every request once
        session.run(None, request)
    wall_p50 = median_us(lambda i: session.run(None, requests[i % POOL]), args.runs)
    report(node_profile(args.model, requests, args.runs), wall_p50, matmul_peak_gflops())


if __name__ == "__main__":
    main()
