"""A small circuit breaker for calls to another service.

Written here rather than taken from a library: the maintained Python breakers are either
synchronous (pybreaker) or add their own state stores; this one is a few lines over a clock and
is shared by the worker's analytics client and the gateway's health checks.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class CircuitOpen(Exception):
    """The service failed too often lately; calls are refused until the reset time passes."""

    def __init__(self, service: str, retry_in_s: float) -> None:
        super().__init__(f"circuit to {service} is open; next probe in {retry_in_s:.1f}s")
        self.service = service
        self.retry_in_s = retry_in_s


class CircuitBreaker:
    """Closed → open after `failures` consecutive failures → one probe after `reset_s`.

    A successful probe closes the circuit; a failed one opens it for another `reset_s`.
    """

    def __init__(
        self,
        service: str,
        *,
        failures: int,
        reset_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.service = service
        self._threshold = failures
        self._reset_s = reset_s
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return "closed"
        return "half-open" if self._clock() - self._opened_at >= self._reset_s else "open"

    def before_call(self) -> None:
        """Raise CircuitOpen unless a call may go out now."""
        if self._opened_at is None:
            return
        waited = self._clock() - self._opened_at
        if waited < self._reset_s or self._probing:
            raise CircuitOpen(self.service, max(0.0, self._reset_s - waited))
        self._probing = True  # half-open: let exactly one probe through

    def succeeded(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._probing = False

    def failed(self) -> None:
        self._failures += 1
        self._probing = False
        if self._opened_at is not None or self._failures >= self._threshold:
            self._opened_at = self._clock()
