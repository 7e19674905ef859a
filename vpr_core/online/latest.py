"""A newest-frame slot between a camera callback and one worker: latency stays bounded at any frame rate."""

from __future__ import annotations

import threading
import time
from typing import Generic, TypeVar

__all__ = ["LatestFrame"]

T = TypeVar("T")


class LatestFrame(Generic[T]):
    """Holds at most one waiting item; a newer one replaces it and the replaced one counts as dropped.

    ``put`` never blocks (it runs in the middleware's callback); ``take`` waits for an
    item and hands it over with its arrival time. Thread-safe for one producer and one consumer.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._item: tuple[T, float] | None = None
        self._closed = False
        self.received = 0
        self.dropped = 0

    def put(self, item: T, now: float | None = None) -> bool:
        """Offer the newest item; True when it replaced one still waiting (that one is dropped)."""
        with self._lock:
            replaced = self._item is not None
            self.dropped += int(replaced)
            self.received += 1
            self._item = (item, time.monotonic() if now is None else now)
        self._ready.set()
        return replaced

    def take(self, timeout: float | None = None) -> tuple[T, float] | None:
        """The waiting item and its arrival time, or None after ``timeout`` seconds or once closed."""
        if not self._ready.wait(timeout):
            return None
        with self._lock:
            item, self._item = self._item, None
            self._ready.clear()
            if self._closed:
                self._ready.set()  # stay awake: every later take returns at once
        return item

    def clear(self) -> None:
        """Forget a waiting item (not counted as dropped): e.g. when the consumer pauses."""
        with self._lock:
            self._item = None
            if not self._closed:
                self._ready.clear()

    def close(self) -> None:
        """Wake the consumer for good (shutdown)."""
        with self._lock:
            self._closed = True
        self._ready.set()

    @property
    def closed(self) -> bool:
        return self._closed
