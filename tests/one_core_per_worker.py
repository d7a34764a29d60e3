"""Each pytest-xdist worker computes on one core's worth of threads.

The suite runs two workers (pytest -n 2), one per core of a 2-core machine. Left to their defaults,
torch trains on one thread per core and onnxruntime opens every session with a pool of one thread per
core whose threads spin between runs, so each worker's threads take turns with the other's on every
core and spend CPU time waiting and spinning. In a worker, the defaults are one thread; a test about
threads asks for its count explicitly and still gets it.
"""

from __future__ import annotations

from .replace_function import replace_everywhere


def start(config) -> None:
    if not hasattr(config, "workerinput"):  # a run without workers has the machine to itself
        return
    import torch

    import export.ort
    import fm2onnx.train

    torch.set_num_threads(1)
    fm2onnx.train.physical_cores = lambda: 1  # the training threads' default, train's and the CLI's
    original = export.ort.session

    def session(model, threads=None, **options):
        return original(model, 1 if threads is None else threads, **options)

    replace_everywhere(original, session)
