"""A progress line with rows/s and ETA on stderr: redrawn in place on a terminal, every few seconds in logs."""

from __future__ import annotations

import sys
import time


def format_duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class RowProgress:
    def __init__(self, label: str, total_rows: int | None, *, enabled: bool = True, stream=None):
        self.label, self.total = label, total_rows
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.interval = 0.25 if self.tty else 10.0
        self.rows = 0
        self.start = self.last_draw = time.perf_counter()

    def update(self, rows: int, **extra) -> None:
        self.rows += rows
        now = time.perf_counter()
        if self.enabled and now - self.last_draw >= self.interval:
            self.last_draw = now
            self._draw(now, extra)

    def rate(self) -> float:
        return self.rows / max(time.perf_counter() - self.start, 1e-9)

    def close(self, **extra) -> float:
        """Draws the final line; returns rows/s."""
        now = time.perf_counter()
        if self.enabled:
            self._draw(now, extra)
            if self.tty:
                self.stream.write("\n")
        return self.rate()

    def _draw(self, now: float, extra: dict) -> None:
        elapsed = now - self.start
        rate = self.rows / max(elapsed, 1e-9)
        parts = [self.label]
        if self.total:
            pct = 100.0 * self.rows / self.total
            eta = (self.total - self.rows) / rate if rate > 0 else 0.0
            parts.append(f"{self.rows:,}/{self.total:,} rows ({pct:5.1f}%)")
            parts.append(f"{rate:,.0f} rows/s")
            parts.append(f"ETA {format_duration(eta)}")
        else:
            parts.append(f"{self.rows:,} rows")
            parts.append(f"{rate:,.0f} rows/s")
        parts += [f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in extra.items()]
        line = "  ".join(parts)
        if self.tty:
            self.stream.write("\r" + line.ljust(100))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
