"""Stop requests: a first signal in training waits for a boundary, a second stops at once, and a stop
taken on the other workers' word absorbs this process's own late copy of the signal."""

from __future__ import annotations

import signal

import pytest

from fm2onnx import interrupt


def test_a_first_signal_waits_for_the_boundary_and_a_second_stops_at_once():
    with interrupt.stop_at_boundaries():
        interrupt.request_stop(signal.SIGTERM)
        assert interrupt.stop_requested() == signal.SIGTERM
        with pytest.raises(interrupt.Interrupted, match="^stopped at batch 3$") as stopped:
            interrupt.stop_if(interrupt.stop_requested(), lambda: "stopped at batch 3")
        assert stopped.value.exit_code == 143
        with pytest.raises(interrupt.Interrupted, match="interrupted by SIGINT"):
            interrupt.request_stop(signal.SIGINT)
    assert interrupt.stop_requested() is None


def test_a_stop_agreed_before_this_process_got_its_signal_ignores_that_signal_when_it_comes():
    with interrupt.stop_at_boundaries():
        interrupt.take_stop(signal.SIGINT)
        assert interrupt.stop_requested() == signal.SIGINT
        interrupt.request_stop(signal.SIGINT)  # the same stop, arriving late: not a second signal
        with pytest.raises(interrupt.Interrupted, match="interrupted by SIGINT"):
            interrupt.request_stop(signal.SIGINT)  # a real second signal


def test_nothing_requested_nothing_stops():
    with interrupt.stop_at_boundaries():
        interrupt.stop_if(interrupt.stop_requested(), lambda: "never")
