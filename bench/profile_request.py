"""Where a request graph's time goes (not a test): onnxruntime's per-node profile, one thread.

    python bench/profile_request.py MODEL.request.onnx [--candidates 1000] [--runs 300] [--ids zipf]

MODEL is a request graph (``fm2onnx export --context-fields ...``, or the one ``fm2onnx bench --request
... --workdir DIR`` keeps). The runs cycle through the request bench's requests (export/bench/request.py).
Prints:

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
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from export.bench.child import measure  # noqa: E402
from export.bench.request_forms import Request, request_pool, request_runner  # noqa: E402
from export.contract import CANDIDATES_INPUT, CONTEXT_INPUT, FieldRoles, spec_of  # noqa: E402
from export.model_io import load_model  # noqa: E402
from export.ort import session  # noqa: E402
from export.traffic import DISTRIBUTIONS  # noqa: E402
from fm2onnx.errors import Fm2OnnxError  # noqa: E402

PRODUCTS = ("MatMul", "Gemm")


def requests_for(path: Path, candidates: int, distribution: str) -> list[Request]:
    """The request bench's pool of requests for the request graph at ``path``."""
    model = load_model(path)
    spec, roles = spec_of(model, str(path)), FieldRoles.of_props(model.metadata_props, str(path))
    return request_pool(spec, roles, candidates, distribution)


def node_profile(path: Path, requests: list[Request], runs: int) -> list[dict]:
    """Per node: its name, op type, the shapes of one run, and its kernel times over ``runs`` runs (µs)."""
    with tempfile.TemporaryDirectory() as scratch:
        profiled = session(path, 1, profile_prefix=f"{scratch}/profile")
        for i in range(runs):
            r = requests[i % len(requests)]
            profiled.run(None, {CONTEXT_INPUT: r.context, CANDIDATES_INPUT: r.candidates})
        events = json.loads(Path(profiled.end_profiling()).read_text())
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


def matmul_peak_gflops(rows: int = 1000, k: int = 1024, n: int = 1024) -> float:
    weights = onnx.numpy_helper.from_array(np.random.default_rng(0).random((k, n), np.float32), "W")
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("MatMul", ["X", "W"], ["Y"])], "peak",
        [onnx.helper.make_tensor_value_info("X", onnx.TensorProto.FLOAT, [rows, k])],
        [onnx.helper.make_tensor_value_info("Y", onnx.TensorProto.FLOAT, [rows, n])], [weights])
    product = session(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 18)])
                      .SerializeToString(), 1)
    x = [np.random.default_rng(1).random((rows, k), np.float32)]
    seconds = np.median(measure(lambda batch: product.run(None, {"X": batch}), x, 0, 15, warmup=1))
    return 2 * rows * k * n / seconds / 1e9


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
    try:
        requests = requests_for(args.model, args.candidates, args.ids)
    except Fm2OnnxError as error:
        raise SystemExit(f"error: {error}") from None
    wall = measure(request_runner(args.model, 1), requests, 0, args.runs, warmup=len(requests))
    report(node_profile(args.model, requests, args.runs), float(np.median(wall)) * 1e6, matmul_peak_gflops())

if __name__ == "__main__":
    main()
