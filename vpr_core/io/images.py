"""Robust image loading and resizing shared by map building, evaluation and the node.

Everything downstream takes ``uint8`` RGB arrays of shape (H, W, 3). Large inputs
(12 MP phone photos) are downscaled right after decoding so that memory stays
bounded. Encoded images above ``MAX_MEGAPIXELS`` are refused from their header,
before any decoding (a 20000x20000 PNG would otherwise take seconds and gigabytes).
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from ..errors import ImageError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
#: Longest side kept after decoding; anything larger is area-downscaled first.
MAX_SIDE = 2048
#: Encoded images with more pixels than this are refused before decoding; environment VPR_MAX_MEGAPIXELS overrides.
MAX_MEGAPIXELS = 100.0


def max_megapixels() -> float:
    try:
        return float(os.environ.get("VPR_MAX_MEGAPIXELS", MAX_MEGAPIXELS))
    except ValueError:
        return MAX_MEGAPIXELS


cv2.setNumThreads(1)


def _limit_size(img: np.ndarray, max_side: int = MAX_SIDE) -> np.ndarray:
    h, w = img.shape[:2]
    if max(h, w) <= max_side:
        return img
    s = max_side / max(h, w)
    return cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


def to_rgb(img: np.ndarray, source: str = "image") -> np.ndarray:
    """Return a contiguous uint8 RGB copy of a gray, RGB or RGBA array."""
    if img is None or img.size == 0 or img.ndim not in (2, 3):
        raise ImageError(f"{source}: empty or malformed image array (shape {getattr(img, 'shape', None)})")
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype != np.uint8:
        img = np.clip(img, 0, 255).astype(np.uint8)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    elif img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    elif img.shape[2] == 4:
        img = img[:, :, :3]
    elif img.shape[2] != 3:
        raise ImageError(f"{source}: {img.shape[2]} channels; expected 1, 3 or 4")
    return np.ascontiguousarray(_limit_size(img))


def encoded_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG or JPEG header without decoding; None for other formats or no header."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            i += 1
            continue
        marker = data[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7 or marker == 0xFF:
            i += 1 if marker == 0xFF else 2
            continue
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame: precision, height, width
            return int.from_bytes(data[i + 7 : i + 9], "big"), int.from_bytes(data[i + 5 : i + 7], "big")
        if marker == 0xDA:  # start of scan before any frame header
            return None
        i += 2 + length
    return None


def jpeg_complete(data: bytes) -> bool:
    """A JPEG has a scan that ends with an end-of-image marker; bytes after it (phones write some) are fine."""
    sos = data.rfind(b"\xff\xda")  # no scan at all: cut inside the headers
    return sos >= 0 and data.find(b"\xff\xd9", sos) >= 0


def decode_image(data: bytes, source: str = "image", limit_mp: float | None = None) -> np.ndarray:
    """Decode encoded bytes (jpeg/png/...) to RGB uint8, or raise a one-line ImageError."""
    buf = np.frombuffer(data, dtype=np.uint8)
    if buf.size == 0:
        raise ImageError(f"{source}: empty file; re-export or remove it")
    size = encoded_size(bytes(data[:65536]))
    limit = max_megapixels() if limit_mp is None else limit_mp
    if size is not None and size[0] * size[1] > limit * 1e6:
        raise ImageError(
            f"{source}: {size[0]}x{size[1]} is {size[0] * size[1] / 1e6:.0f} megapixels, above the {limit:g} MP limit "
            "(VPR_MAX_MEGAPIXELS); downscale it first"
        )
    # IMREDUCED_* would be faster for huge JPEGs but needs the size first; decode then limit.
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if img is None:
        raise ImageError(
            f"{source}: cannot decode image (corrupt, truncated or unsupported format); re-export or remove it"
        )
    return to_rgb(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), source)


def load_image(path: str | Path) -> np.ndarray:
    """Read an image file as RGB uint8; errors name the file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ImageError(f"{path}: cannot read ({e.strerror or e})") from None
    # OpenCV happily decodes a truncated JPEG with a grey bottom; catch it from the marker.
    if data[:2] == b"\xff\xd8" and not jpeg_complete(data):
        raise ImageError(f"{path}: truncated JPEG (no end-of-image marker after its last scan); re-copy the file")
    return decode_image(data, str(path))


def resize(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize RGB to (width, height) with area filtering when shrinking, bilinear when enlarging."""
    w, h = size
    if img.shape[1] == w and img.shape[0] == h:
        return img
    shrink = img.shape[1] > w or img.shape[0] > h
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def list_images(folder: str | Path) -> list[Path]:
    """Sorted image files directly inside ``folder`` (recursive), or a VprError naming it."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageError(f"{folder}: not a directory; pass the folder that holds the images")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise ImageError(f"{folder}: no images found ({', '.join(IMAGE_SUFFIXES[:3])}, ...); check the path")
    return files
