"""Training of the re-ranking heads: DHE (stage 1 on a frozen backbone, stage 2 joint) and GeoWarp.

Every trainer runs on one loop with atomic checkpoints, exact resume, a JSONL log and a
loss curve; pairs come from self-supervised homographic views and, where names carry
coordinates, geotagged positives. Initialisation is seeded with local generators.
"""

from .._lazy import lazy_exports

_NAMES = {"train_dhe": ".dhe", "train_geowarp": ".geowarp", "rei_loss": ".rei"}
__all__ = sorted(_NAMES)
__getattr__, __dir__ = lazy_exports(__name__, _NAMES)
