"""``fm2onnx bench``: serving latency, throughput and memory of torch eager, onnxruntime uncached,
onnxruntime cached and the floor, side by side on one machine (see README "Serving performance")."""
