"""fm2onnx: FM-family CTR models from PyTorch to ONNX, with the FmFM cached-inference rewrite."""

__version__ = "0.1.0"
