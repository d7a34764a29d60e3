"""Progress for long work: rows, rows/s and ETA on stderr.

On a terminal the line is redrawn in place every 0.25 s; in logs (CI, pipes) a line is written every
10 s, so output stays readable. ``update`` takes the rows done so far and, where known, the fraction
of the work done (bytes read, rows of a known total), from which the ETA follows.
"""

from __future__ import annotations

import sys
import time
from typing import IO


def format_count(n: float) -> str:
    if n >= 1e6:
        return f"{n / 1e6:.2f}M"
    if n >= 1e4:
        return f"{n / 1e3:.0f}k"
    return f"{n:.0f}"


def format_seconds(s: float) -> str:
    s = max(0, int(round(s)))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class Progress:
    def __init__(self, label: str, enabled: bool = True, stream: IO[str] | None = None):
        self.label = label
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.t0 = time.perf_counter()
        self._last = self.t0
        self._every = 0.25 if self.tty else 10.0
        self._width = 0

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def update(self, rows: int, fraction: float | None = None, **metrics: float) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if now - self._last < self._every:
            return
        self._last = now
        el = now - self.t0
        msg = f"{self.label}: {format_count(rows)} rows, {format_count(rows / el if el > 0 else 0.0)} rows/s"
        if fraction is not None and 0 < fraction <= 1:
            msg += f", {100 * fraction:.0f}%, ETA {format_seconds(el / fraction - el)}"
        msg += "".join(f", {k} {v:.4f}" for k, v in metrics.items())
        self._emit(msg)

    def done(self, rows: int, extra: str = "") -> float:
        """Writes the final line; returns the elapsed seconds."""
        el = self.elapsed()
        if self.enabled:
            rate = rows / el if el > 0 else 0.0
            self._emit(f"{self.label}: {rows:,} rows in {el:.1f}s ({format_count(rate)} rows/s){extra}", final=True)
        return el

    def note(self, msg: str) -> None:
        if self.enabled:
            self._emit(msg, final=True)

    def _emit(self, msg: str, final: bool = False) -> None:
        try:
            if self.tty:
                pad = max(0, self._width - len(msg))
                self.stream.write("\r" + msg + " " * pad + ("\n" if final else ""))
                self._width = 0 if final else len(msg)
            else:
                self.stream.write(msg + "\n")
            self.stream.flush()
        except (OSError, ValueError):  # a closed or broken stream must not stop the work
            pass
