"""Training pairs: self-supervised homographic views of one image, and geotagged positives.

Self-supervised pairs follow GeoWarp's recipe: two random trapezoids with vertical
sides (warping coefficient k: 0 = the full frame, 1 = strongest) cut from the same
image and stretched to the frame, plus independent photometric changes. DHE's REI
loss needs no ground-truth homography (RANSAC inlier counts supervise it), only
overlapping views - so any unlabelled folder trains it.
"""

from __future__ import annotations

import cv2
import numpy as np


def random_trapezoid(rng: np.random.Generator, k: float) -> np.ndarray:
    """(4, 2) corners in [-1, 1]: top-left, top-right, bottom-right, bottom-left; vertical left/right sides."""
    if not 0.0 <= k <= 1.0:
        raise ValueError("k must be in [0, 1]")
    r = lambda: 1.0 - rng.random() * k  # noqa: E731
    left, right = -r(), r()
    return np.array([[left, -r()], [right, -r()], [right, r()], [left, r()]], dtype=np.float64)


def warp_to_frame(img: np.ndarray, quad: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Stretch the region ``quad`` (normalised corners) of ``img`` onto a (w, h) frame."""
    h0, w0 = img.shape[:2]
    src = np.stack([(quad[:, 0] + 1) * 0.5 * w0, (quad[:, 1] + 1) * 0.5 * h0], axis=1).astype(np.float32)
    w, h = size
    dst = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float32)
    return cv2.warpPerspective(
        img, cv2.getPerspectiveTransform(src, dst), (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
    )


def photometric(img: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """Brightness, contrast, gamma, colour cast and sensor noise."""
    x = img.astype(np.float32) / 255.0
    x = np.power(np.clip(x, 0, 1), np.exp(rng.normal(0, 0.25 * strength)))
    x = (x - 0.5) * np.exp(rng.normal(0, 0.2 * strength)) + 0.5 + rng.normal(0, 0.08 * strength)
    x = x * (1 + rng.normal(0, 0.05 * strength, 3))
    x = x + rng.normal(0, 0.02 * strength, x.shape)
    return (np.clip(x, 0, 1) * 255).astype(np.uint8)


def homographic_pair(
    img: np.ndarray, rng: np.random.Generator, k: float, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Two overlapping views of ``img`` (trapezoids with coefficient k), photometrically changed."""
    a = warp_to_frame(img, random_trapezoid(rng, k), size)
    b = warp_to_frame(img, random_trapezoid(rng, k), size)
    return photometric(a, rng), photometric(b, rng)


def geotagged_pairs(
    xy: np.ndarray, desc: np.ndarray, radius_m: float = 25.0, max_feature_dist: float = 1.2
) -> np.ndarray:
    """(P, 2) index pairs i < j within ``radius_m`` whose descriptors are closer than ``max_feature_dist``."""
    d_geo = np.linalg.norm(xy[:, None] - xy[None], axis=2)
    d_feat = np.linalg.norm(desc[:, None] - desc[None], axis=2)
    i, j = np.nonzero(np.triu((d_geo <= radius_m) & (d_feat <= max_feature_dist), k=1))
    return np.stack([i, j], axis=1)


def _edge_y(quad: np.ndarray, a: int, b: int, x: float) -> float:
    """y of the straight edge quad[a] -> quad[b] at abscissa x."""
    (x0, y0), (x1, y1) = quad[a], quad[b]
    return float(y0 + (y1 - y0) * (x - x0) / (x1 - x0))


def trapezoid_intersection(t1: np.ndarray, t2: np.ndarray) -> np.ndarray:
    """Corners (TL, TR, BR, BL) of the overlap of two vertical-sided trapezoids, taken on its left and right sides
    (GeoWarp's targets)."""
    xl, xr = max(t1[0, 0], t2[0, 0]), min(t1[1, 0], t2[1, 0])
    top = lambda x: max(_edge_y(t1, 0, 1, x), _edge_y(t2, 0, 1, x))  # noqa: E731  (image y grows downwards)
    bottom = lambda x: min(_edge_y(t1, 3, 2, x), _edge_y(t2, 3, 2, x))  # noqa: E731
    return np.array([[xl, top(xl)], [xr, top(xr)], [xr, bottom(xr)], [xl, bottom(xl)]], dtype=np.float64)


def to_warped(points: np.ndarray, quad: np.ndarray) -> np.ndarray:
    """Where normalised source ``points`` land in the view made by ``warp_to_frame(img, quad)`` (normalised)."""
    unit = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float32)
    h = cv2.getPerspectiveTransform(quad.astype(np.float32), unit)
    return cv2.perspectiveTransform(points.reshape(-1, 1, 2).astype(np.float64), h.astype(np.float64)).reshape(-1, 2)


def homographic_pair_with_targets(
    img: np.ndarray, rng: np.random.Generator, k: float, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Two views of ``img`` and, in each view's normalised coordinates, the corners of their overlap (GeoWarp's
    self-supervised sample)."""
    t1, t2 = random_trapezoid(rng, k), random_trapezoid(rng, k)
    inter = trapezoid_intersection(t1, t2)
    a, b = warp_to_frame(img, t1, size), warp_to_frame(img, t2, size)
    return photometric(a, rng), photometric(b, rng), to_warped(inter, t1), to_warped(inter, t2)
