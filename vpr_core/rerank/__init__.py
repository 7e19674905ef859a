"""Re-rankers of the global top-K, registered by name (importing this package registers them).

``none`` keeps the global order; ``ransac``, ``dhe`` and ``geowarp`` verify the
candidates geometrically on the dense grid features the map stores; ``lighterglue`` matches
sparse XFeat keypoints (``vpr map build --local sparse``) with a learned matcher; ``dhe+lighterglue`` adds the two
(``--local both``).
"""

from . import dhe, fusion, geowarp, kornia_matchers, lighterglue, ransac  # noqa: F401  (registration)
from .base import RERANKERS, NoRerank, Reranker, RerankResult

__all__ = ["RERANKERS", "NoRerank", "Reranker", "RerankResult", "build_reranker", "map_local_for"]


def build_reranker(name: str, conf: dict | None = None) -> Reranker:
    return RERANKERS.get(name)(conf)


def map_local_for(names) -> str:
    """The ``vpr map build --local`` kind a map needs to serve the re-rankers ``names``: ``both`` when one reads
    sparse keypoints (the grids serve the rest and ``auto``), else ``grid``; a name that is not a re-ranker
    (``auto``, which picks from what the map holds) needs the grids."""
    known = set(RERANKERS.names())
    return "both" if any(n in known and "sparse" in RERANKERS.get(n).needs for n in names) else "grid"
