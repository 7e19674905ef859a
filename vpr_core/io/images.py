"""Robust image loading and resizing shared by map building, evaluation and the node.

Everything downstream takes ``uint8`` RGB arrays of shape (H, W, 3). Large inputs
(12 MP phone photos) are downscaled right after decoding so that memory stays
bounded. Encoded images above ``MAX_MEGAPIXELS`` are refused from their header,
before any decoding (a 20000x20000 PNG would otherwise take seconds and gigabytes).
Every format decoded has its header read (``IMAGE_FORMATS``); any other is refused.
"""

from __future__ import annotations

import os
from collections.abc import Callable
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


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
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


def _tiff_size(data: bytes) -> tuple[int, int] | None:
    """ImageWidth (256) and ImageLength (257) of the first IFD, the image OpenCV decodes."""
    order = "little" if data[:2] == b"II" else "big"
    u16 = lambda o: int.from_bytes(data[o : o + 2], order)  # noqa: E731
    u32 = lambda o: int.from_bytes(data[o : o + 4], order)  # noqa: E731
    if u16(2) != 42 or len(data) < 8:  # BigTIFF (43) and others: not checked, so refused
        return None
    ifd = u32(4)
    if ifd + 2 > len(data):
        return None
    size: dict[int, int] = {}
    for k in range(u16(ifd)):
        e = ifd + 2 + 12 * k
        if e + 12 > len(data):
            break
        tag, typ = u16(e), u16(e + 2)
        if tag in (256, 257):
            size[tag] = u16(e + 8) if typ == 3 else u32(e + 8)  # SHORT or LONG, stored in the value field
    return (size[256], size[257]) if len(size) == 2 else None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8X" and len(data) >= 30:  # extended: canvas size minus one, 24 bits each
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:  # lossless: 14 bits each, minus one
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":  # lossy key frame
        return int.from_bytes(data[26:28], "little") & 0x3FFF, int.from_bytes(data[28:30], "little") & 0x3FFF
    return None


def _pnm_size(data: bytes) -> tuple[int, int] | None:
    """Width and height of a P1-P6 header (whitespace and comments between the fields)."""
    fields: list[int] = []
    i, n = 2, min(len(data), 4096)
    while len(fields) < 2 and i < n:
        c = data[i : i + 1]
        if c == b"#":
            while i < n and data[i : i + 1] not in (b"\n", b"\r"):
                i += 1
        elif c.isdigit():
            j = i
            while j < n and data[j : j + 1].isdigit():
                j += 1
            fields.append(int(data[i:j]))
            i = j
            continue
        elif not c.isspace():
            return None
        i += 1
    return (fields[0], fields[1]) if len(fields) == 2 else None


def _bmp_size(data: bytes) -> tuple[int, int] | None:
    if len(data) < 26:
        return None
    if int.from_bytes(data[14:18], "little") == 12:  # OS/2 core header: 16-bit sizes
        return int.from_bytes(data[18:20], "little"), int.from_bytes(data[20:22], "little")
    w = int.from_bytes(data[18:22], "little", signed=True)
    h = int.from_bytes(data[22:26], "little", signed=True)  # negative: rows stored top-down
    return abs(w), abs(h)


#: The encoded formats decoded, by their leading bytes, each with its header reader (width, height). Every
#: other format OpenCV would decode (GIF, AVIF, JPEG 2000, HDR, PFM, Sun raster, ...) is refused: its size
#: cannot be checked before decoding, so it could be a decompression bomb.
IMAGE_FORMATS: dict[str, tuple[tuple[bytes, ...], Callable[[bytes], tuple[int, int] | None]]] = {
    "JPEG": ((b"\xff\xd8",), _jpeg_size),
    "PNG": ((b"\x89PNG\r\n\x1a\n",), lambda d: (int.from_bytes(d[16:20], "big"), int.from_bytes(d[20:24], "big"))),
    "TIFF": ((b"II*\x00", b"MM\x00*"), _tiff_size),
    "WebP": ((b"RIFF",), lambda d: _webp_size(d) if d[8:12] == b"WEBP" else None),
    "BMP": ((b"BM",), _bmp_size),
    "PNM": (tuple(b"P%d" % k for k in range(1, 7)), _pnm_size),
}


def image_format(data: bytes) -> str | None:
    """The format name of ``IMAGE_FORMATS`` whose signature starts ``data``, else None."""
    for name, (signatures, _) in IMAGE_FORMATS.items():
        if data.startswith(signatures):
            return name
    return None


def encoded_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the header of a format in ``IMAGE_FORMATS`` without decoding; None for other formats
    or a header that cannot be read."""
    fmt = image_format(data)
    if fmt is None or len(data) < 24:
        return None
    return IMAGE_FORMATS[fmt][1](data)


def jpeg_complete(data: bytes) -> bool:
    """A JPEG has a scan that ends with an end-of-image marker; bytes after it (phones write some) are fine."""
    sos = data.rfind(b"\xff\xda")  # no scan at all: cut inside the headers
    return sos >= 0 and data.find(b"\xff\xd9", sos) >= 0


def decode_image(data: bytes, source: str = "image", limit_mp: float | None = None) -> np.ndarray:
    """Decode encoded bytes (jpeg/png/...) to RGB uint8, or raise a one-line ImageError."""
    buf = np.frombuffer(data, dtype=np.uint8)
    if buf.size == 0:
        raise ImageError(f"{source}: empty file; re-export or remove it")
    blob = data if isinstance(data, bytes) else bytes(data)
    fmt = image_format(blob)
    if fmt is None:
        raise ImageError(
            f"{source}: cannot decode image: its first bytes are none of {', '.join(IMAGE_FORMATS)} (corrupt, or a "
            "format whose size cannot be checked before decoding); re-export it as JPEG or PNG"
        )
    size = encoded_size(blob)  # whole: a JPEG's frame header may follow 64 KiB of EXIF, a TIFF's directory its data
    if size is None:
        raise ImageError(f"{source}: {fmt} header cannot be read (corrupt or truncated); re-export or remove it")
    limit = max_megapixels() if limit_mp is None else limit_mp
    if size[0] * size[1] > limit * 1e6:
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

    def unreadable(e: OSError) -> None:  # never skip a subfolder without a word
        raise ImageError(f"{e.filename}: cannot read this folder ({e.strerror}); fix its permissions or move it out")

    files = sorted(
        Path(d) / f
        for d, _, names in os.walk(folder, onerror=unreadable, followlinks=True)
        for f in names
        if Path(f).suffix.lower() in IMAGE_SUFFIXES and (Path(d) / f).is_file()
    )
    if not files:
        raise ImageError(f"{folder}: no images found ({', '.join(IMAGE_SUFFIXES[:3])}, ...); check the path")
    return files
