"""Health of a live localizer: counters, rates, per-stage latency, a verdict, and throttled problem reports.

``Health`` collects what the diagnostics of a node show: frames received, answered,
dropped while busy, rejected as bad input, failed; fixes below the confidence threshold;
input/output rates over a window; p50/p95 of every pipeline stage. ``verdict`` turns them
into OK/WARN/ERROR with one line of text. ``ProblemLog`` decides when a problem is worth
a log line (each distinct problem at most every few seconds): the caller logs it, at the
severity fixed for that kind of problem.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from collections.abc import Iterable

import numpy as np

__all__ = ["ERROR", "OK", "WARN", "Health", "ProblemLog"]

#: Levels, numerically equal to diagnostic_msgs/DiagnosticStatus.
OK, WARN, ERROR = 0, 1, 2


class ProblemLog:
    """Throttle per distinct problem (numbers ignored): a bad camera must not flood the log."""

    def __init__(self, every_s: float = 5.0) -> None:
        self.every_s = every_s
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def should_log(self, message: str, now: float | None = None) -> bool:
        key = re.sub(r"[0-9]+", "#", message)
        now = time.monotonic() if now is None else now
        with self._lock:
            if now - self._last.get(key, -1e18) < self.every_s:
                return False
            self._last[key] = now
            return True


class Health:
    """Figures of a running localizer, updated from the worker and read by the diagnostics timer."""

    def __init__(self, window_s: float = 5.0, history: int = 500) -> None:
        self.window_s = window_s
        self.received = 0
        self.processed = 0
        self.dropped = 0  # newer frame arrived while one was waiting
        self.bad_input = 0
        self.failed = 0
        self.no_fix = 0
        self.qos_incompatible = 0
        self.paused = False
        self.config_error = ""  # why the last configure failed
        self.last_error = ""
        self._rx: deque[float] = deque(maxlen=2000)
        self._tx: deque[float] = deque(maxlen=2000)
        self._stages: deque[dict[str, float]] = deque(maxlen=history)
        self._lock = threading.Lock()

    # ---- updates ------------------------------------------------------------------
    def frame_received(self, now: float, replaced: bool = False) -> None:
        with self._lock:
            self.received += 1
            self.dropped += int(replaced)
            self._rx.append(now)

    def frame_answered(self, now: float, stages: dict[str, float], fix: bool) -> None:
        with self._lock:
            self.processed += 1
            self.no_fix += int(not fix)
            self._tx.append(now)
            self._stages.append(dict(stages))

    def frame_bad(self, message: str) -> None:
        with self._lock:
            self.bad_input += 1
            self.last_error = message

    def frame_failed(self, message: str) -> None:
        with self._lock:
            self.failed += 1
            self.last_error = message

    def qos_mismatch(self, message: str) -> None:
        with self._lock:
            self.qos_incompatible += 1
            self.last_error = message

    # ---- figures ------------------------------------------------------------------
    def rate(self, times: Iterable[float], now: float) -> float:
        return sum(1 for t in times if now - t <= self.window_s) / self.window_s

    def latency(self) -> dict[str, tuple[float, float]]:
        """Stage -> (p50, p95) in ms over the recent frames."""
        with self._lock:
            stages = list(self._stages)
        out: dict[str, tuple[float, float]] = {}
        for key in stages[-1] if stages else ():
            vals = [s[key] for s in stages if key in s]
            out[key] = (float(np.percentile(vals, 50)), float(np.percentile(vals, 95)))
        return out

    def values(self, now: float, state: str = "active") -> dict[str, str]:
        """Counters, rates and latency as the key/values of a diagnostic status."""
        with self._lock:
            rx, tx = list(self._rx), list(self._tx)
        kv = {
            "input_rate_hz": f"{self.rate(rx, now):.2f}",
            "output_rate_hz": f"{self.rate(tx, now):.2f}",
            "frames_received": str(self.received),
            "frames_processed": str(self.processed),
            "frames_dropped_busy": str(self.dropped),
            "frames_bad_input": str(self.bad_input),
            "frames_failed": str(self.failed),
            "fixes_below_min_confidence": str(self.no_fix),
            "qos_incompatible_events": str(self.qos_incompatible),
            "paused": str(self.paused).lower(),
            "lifecycle_state": state,
            "last_error": self.last_error,
        }
        for stage, (p50, p95) in self.latency().items():
            kv[f"latency_{stage}_ms_p50"] = f"{p50:.1f}"
            kv[f"latency_{stage}_ms_p95"] = f"{p95:.1f}"
        return kv

    def verdict(self, now: float, source: str, state: str = "active") -> tuple[int, str]:
        """(level, message): ERROR when no frame can arrive, WARN when none does or some fail, else OK."""
        with self._lock:
            rx = list(self._rx)
        if state != "active":
            if state == "unconfigured" and self.config_error:
                return ERROR, f"unconfigured: {self.config_error}"
            return WARN, f"{state}: not localizing"
        if self.qos_incompatible:
            return ERROR, "incompatible image QoS: no frames arrive"
        if self.paused:
            return OK, "paused (~/enable false): nothing is published"
        if self.received == 0 or self.rate(rx, now) == 0:
            return WARN, f"no frames on {source}"
        if self.bad_input or self.failed:
            return WARN, f"{self.bad_input} bad frames, {self.failed} failures"
        return OK, "localizing"
