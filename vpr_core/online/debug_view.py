"""The debug picture of a frame: the camera image beside its best map match, with confidence and support."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..errors import ImageError
from ..io.images import load_image, resize
from ..localize.localizer import Estimate

__all__ = ["DebugView"]

GREEN, ORANGE, CYAN = (0, 220, 0), (230, 60, 0), (255, 255, 0)


class DebugView:
    """Indexes the map's images once (name -> file) and draws frame | best match, ``height`` pixels tall."""

    def __init__(self, names: list[str], folder: str | Path | None, height: int = 240) -> None:
        self.height = height
        path = Path(folder) if folder else None
        wanted = set(names)
        self.images = (
            {p.name: p for p in path.rglob("*") if p.name in wanted} if path is not None and path.is_dir() else {}
        )

    def _fit(self, img: np.ndarray) -> np.ndarray:
        return resize(img, (max(1, round(img.shape[1] * self.height / img.shape[0])), self.height))

    def render(self, rgb: np.ndarray, est: Estimate, min_confidence: float, reranker: str) -> np.ndarray:
        q = self._fit(rgb)
        best = est.matches[0]
        ref = None
        if best.name in self.images:
            try:
                ref = self._fit(load_image(self.images[best.name]))
            except ImageError:
                ref = None
        if ref is None:  # map image not available: a grey panel keeps the layout
            ref = np.full((self.height, q.shape[1], 3), 64, np.uint8)
        view = np.ascontiguousarray(np.hstack([q, ref]))
        font = cv2.FONT_HERSHEY_SIMPLEX
        color = GREEN if est.confidence >= min_confidence else ORANGE
        cv2.putText(view, f"conf {est.confidence:.2f}", (6, 20), font, 0.6, color, 2)
        cv2.putText(view, f"#{best.index} score {best.score:.3f}", (q.shape[1] + 6, 20), font, 0.6, CYAN, 2)
        if best.inliers is not None:
            cv2.putText(view, f"{reranker}: {best.inliers} inliers", (q.shape[1] + 6, 42), font, 0.6, CYAN, 2)
        return view
