"""Re-rankers of the global top-K, registered by name (importing this package registers them).

``none`` keeps the global order; ``ransac``, ``dhe`` and ``geowarp`` verify the
candidates geometrically on the dense grid features the map stores; ``lighterglue`` matches
sparse XFeat keypoints (``vpr map build --local sparse``) with a learned matcher; ``dhe+lighterglue`` adds the two
(``--local both``).
"""

from . import dhe, fusion, geowarp, kornia_matchers, lighterglue, ransac  # noqa: F401  (registration)
from .base import RERANKERS, NoRerank, Reranker, RerankResult

__all__ = ["RERANKERS", "NoRerank", "Reranker", "RerankResult", "build_reranker", "needs_sparse"]


def build_reranker(name: str, conf: dict | None = None) -> Reranker:
    return RERANKERS.get(name)(conf)


def needs_sparse(names) -> bool:
    """Whether any of the re-rankers ``names`` reads sparse keypoints, so the map must be built with ``--local
    sparse`` or ``both``; a name that is not a re-ranker (``auto``, which picks from what the map holds) needs none."""
    known = set(RERANKERS.names())
    return any(n in known and RERANKERS.get(n).needs_sparse for n in names)
