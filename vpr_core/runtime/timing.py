"""Wall-clock timing that waits for the GPU: what benchmarks and the GPU check measure with."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

__all__ = ["timed_ms"]


def timed_ms(fn: Callable[[], object], repeat: int) -> list[float]:
    """Milliseconds of ``repeat`` calls after one warm-up call, each fenced by a CUDA synchronisation."""
    fn()
    out = []
    for _ in range(repeat):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        out.append((time.perf_counter() - t) * 1e3)
    return out
