"""Re-rankers of the global top-K, registered by name.

``none`` keeps the global order. Geometric verification methods register here too,
so the CLI, the localizer and the node select them by the same config name.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from ..registry import Registry

RERANKERS: Registry[type[Reranker]] = Registry("re-ranker")


class Reranker:
    name: ClassVar[str] = ""

    def rerank(self, scores: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return (scores, ids) re-ordered best first."""
        raise NotImplementedError


@RERANKERS.register("none")
class NoRerank(Reranker):
    """Keep faiss's order: the global-descriptor similarity is the score."""

    name = "none"

    def rerank(self, scores: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return scores, ids
