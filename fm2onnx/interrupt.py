"""SIGINT and SIGTERM: every command stops with one line and exit status 128 + the signal number.

While :func:`handled_signals` is active (the CLI wraps every command in it), a signal raises
:class:`Interrupted` at once. It is a ``BaseException``, like ``KeyboardInterrupt``, so an
``except Exception`` cannot swallow it, while ``finally`` and ``except BaseException`` clean-ups (staged
files, temporary folders) still run. Unlike ``KeyboardInterrupt`` it passes through typer, which turns
``KeyboardInterrupt`` into a silent exit and would hide it from the CLI's handler.

Training asks for more: inside :func:`stop_at_boundaries` the first signal only records a request,
which the training loop honours at its next batch boundary (:func:`stop_if`), keeping every
epoch it finished; a second signal raises at once.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Callable, Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """A command stopped by a signal; the message says what was kept."""

    def __init__(self, signum: int, message: str | None = None):
        super().__init__(message or f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM


class _State:
    deferring = False
    requested: int | None = None
    # A stop taken on other processes' word (take_stop) before this process's own copy of the signal
    # came: that copy is the same stop, not a second one.
    copy_expected = False


def _on_signal(signum, frame) -> None:
    if _State.copy_expected:
        _State.copy_expected = False
        return
    if _State.deferring and _State.requested is None:
        _State.requested = signum
        return
    raise Interrupted(signum)


@contextlib.contextmanager
def handled_signals() -> Iterator[None]:
    """SIGINT and SIGTERM raise :class:`Interrupted` in this block; the previous handlers come back after.

    Only the main thread may set handlers; elsewhere the block runs with the process's handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, _on_signal) for signum in SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def stop_at_boundaries() -> Iterator[None]:
    """In this block a first signal is a request to stop at the next boundary, not an exception."""
    outer = (_State.deferring, _State.requested)
    _State.deferring, _State.requested = True, None
    try:
        with handled_signals():
            yield
    finally:
        _State.deferring, _State.requested = outer


def request_stop(signum: int = signal.SIGINT) -> None:
    """What a signal does, without one: stop at the next boundary (or at once outside training)."""
    _on_signal(signum, None)


def stop_requested() -> int | None:
    """The signal number of a pending stop request, or None."""
    return _State.requested


def take_stop(signum: int) -> None:
    """Stop for ``signum``, which other processes of the run got (a launcher signals all its workers):
    this process's own copy of it, if it has not come yet, will be ignored when it does."""
    if _State.requested is None:
        _State.requested, _State.copy_expected = signum, True


def stop_if(signum: int | None, message: Callable[[], str]) -> None:
    """At a boundary: stop now for ``signum`` (a stop request, see :func:`stop_requested`), if any,
    ``message()`` saying where and what was kept."""
    if signum is not None:
        raise Interrupted(signum, message())
