"""Raw camera buffers -> RGB for every supported encoding, checked against independent constructions."""

import cv2
import numpy as np
import pytest

from vpr_core.errors import ImageError
from vpr_core.io.camera import decode_compressed, decode_raw

rng = np.random.default_rng(0)
# smooth image so that demosaicing and chroma subsampling are near-lossless
RGB = cv2.GaussianBlur(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8), (9, 9), 3)
H, W = RGB.shape[:2]


def padded(arr2d: np.ndarray, pad: int = 7) -> tuple[bytes, int]:
    """Row-major bytes with ``pad`` junk bytes per row, as drivers with aligned rows send."""
    rows = arr2d.reshape(H, -1)
    out = np.concatenate([rows, np.full((H, pad), 0xAB, np.uint8)], axis=1)
    return out.tobytes(), out.shape[1]


def mosaic(pattern: str) -> np.ndarray:
    """Bayer mosaic from RGB: pattern names the 2x2 top-left block row by row (ROS naming)."""
    idx = {"r": 0, "g": 1, "b": 2}
    out = np.zeros((H, W), np.uint8)
    for k, ch in enumerate(pattern):
        dy, dx = divmod(k, 2)
        out[dy::2, dx::2] = RGB[dy::2, dx::2, idx[ch]]
    return out


@pytest.mark.parametrize(
    "encoding,make,tol",
    [
        ("rgb8", lambda: RGB, 0),
        ("bgr8", lambda: RGB[:, :, ::-1], 0),
        ("rgba8", lambda: np.dstack([RGB, np.full((H, W), 255, np.uint8)]), 0),
        ("bgra8", lambda: np.dstack([RGB[:, :, ::-1], np.full((H, W), 7, np.uint8)]), 0),
        ("bayer_rggb8", lambda: mosaic("rggb"), 2),
        ("bayer_bggr8", lambda: mosaic("bggr"), 2),
        ("bayer_gbrg8", lambda: mosaic("gbrg"), 2),
        ("bayer_grbg8", lambda: mosaic("grbg"), 2),
        (
            "yuv422_yuy2",
            lambda: cv2.cvtColor(RGB, cv2.COLOR_RGB2YUV_YUY2) if hasattr(cv2, "COLOR_RGB2YUV_YUY2") else None,
            3,
        ),
        (
            "yuv422",
            lambda: cv2.cvtColor(RGB, cv2.COLOR_RGB2YUV_UYVY) if hasattr(cv2, "COLOR_RGB2YUV_UYVY") else None,
            3,
        ),
    ],
)
def test_color_encodings(encoding, make, tol):
    arr = make()
    if arr is None:
        pytest.skip("this OpenCV cannot encode 4:2:2 to build the fixture")
    data, step = padded(np.ascontiguousarray(arr))
    out = decode_raw(encoding, H, W, step, data)
    assert out.shape == (H, W, 3) and out.dtype == np.uint8
    err = np.abs(out[2:-2, 2:-2].astype(int) - RGB[2:-2, 2:-2]).mean()
    assert err <= tol, (encoding, err)  # a swapped Bayer/YUV layout gives 7-11


def test_mono_and_16bit():
    gray = RGB[:, :, 1]
    data, step = padded(gray)
    assert np.array_equal(decode_raw("mono8", H, W, step, data)[:, :, 0], gray)
    g16 = gray.astype(np.uint16) * 257
    for big in (False, True):
        raw = g16.astype(">u2" if big else "<u2").view(np.uint8)
        data, step = padded(raw)
        assert np.array_equal(decode_raw("mono16", H, W, step, data, is_bigendian=big)[:, :, 0], gray)


def test_bad_buffers():
    data = RGB.tobytes()
    with pytest.raises(ImageError, match="unsupported encoding '32FC1'"):
        decode_raw("32FC1", H, W, W * 4, data)
    with pytest.raises(ImageError, match="zero-sized"):
        decode_raw("rgb8", 0, W, W * 3, data)
    with pytest.raises(ImageError, match="step 64 < width"):
        decode_raw("rgb8", H, W, W, data)
    with pytest.raises(ImageError, match="truncated data"):
        decode_raw("rgb8", H, W, W * 3, data[:100])


def test_compressed():
    ok, jpg = cv2.imencode(".jpg", RGB[:, :, ::-1])
    out = decode_compressed("jpeg", jpg.tobytes())
    assert np.abs(out.astype(int) - RGB).mean() < 4
    ok, png = cv2.imencode(".png", RGB[:, :, ::-1])
    assert np.array_equal(decode_compressed("png", png.tobytes()), RGB)
    with pytest.raises(ImageError, match="truncated JPEG"):
        decode_compressed("jpeg", jpg.tobytes()[:300])
    with pytest.raises(ImageError, match="cannot decode"):
        decode_compressed("jpeg", b"\x00" * 64)
