"""Re-rankers of the global top-K, registered by name (importing this package registers them).

``none`` keeps the global order; ``ransac``, ``dhe`` and ``geowarp`` verify the
candidates geometrically on the dense grid features the map stores; ``lighterglue`` matches
sparse XFeat keypoints (``vpr map build --local sparse``) with a learned matcher; ``dhe+lighterglue`` adds the two
(``--local both``).
"""

from . import dhe, fusion, geowarp, kornia_matchers, lighterglue, ransac  # noqa: F401  (registration)
from .base import RERANKERS, NoRerank, Reranker, RerankResult

__all__ = ["RERANKERS", "NoRerank", "Reranker", "RerankResult", "build_reranker"]


def build_reranker(name: str, conf: dict | None = None) -> Reranker:
    return RERANKERS.get(name)(conf)
