"""The request bench's forms in a process of its own (export/bench/request_forms.py ``WorkerForms``).

    python -m export.bench.request_worker '<FormsJob json>' THREADS

Loads every form, then prints one JSON line {"huge_pages_mb": ...}; for each line read,
{"seconds": S, "min_runs": M}, it times a slice of every form and prints {"times": [[split, form, N,
[seconds, ...]], ...]}. It ends when its input does.
"""

from __future__ import annotations

import json
import sys

from .child import huge_pages_mb
from .request_forms import FormsJob, LocalForms


def main(job: FormsJob, threads: int) -> None:
    forms = LocalForms(job, threads)
    print(json.dumps({"huge_pages_mb": huge_pages_mb()}), flush=True)
    for line in sys.stdin:
        ask = json.loads(line)
        times = forms.slice(ask["seconds"], ask["min_runs"])
        print(json.dumps({"times": [[split, form, n, got] for (split, form, n), got in times.items()]}), flush=True)


if __name__ == "__main__":
    fields = json.loads(sys.argv[1])
    main(FormsJob(**fields | {"candidates": tuple(fields["candidates"])}), int(sys.argv[2]))
