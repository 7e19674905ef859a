"""Every bad input is one clear line and a non-zero exit; nothing valid is refused; nothing is lost on a kill.

docs/reliability.md's table lists these cases and what the user sees. CLI cases run the real ``vpr``
command; the node's per-frame cases are in test_node.py.
"""

from __future__ import annotations

import json
import math
import os
import re
import resource
import shlex
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import NET_RTOL, VPR, assert_one_line_error, assert_vectors_close
from conftest import vpr as run_vpr


def vpr(*args, limit_file_bytes: int | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """``vpr ARGS`` under a file-size limit (a full disk, as the kernel reports it), success or not."""

    def limit() -> None:
        if limit_file_bytes is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_file_bytes, limit_file_bytes))

    return run_vpr(*args, ok=False, timeout=timeout, preexec_fn=limit)


@pytest.fixture(scope="module")
def blocker(tmp_path_factory) -> Path:
    """A plain file standing where a parent folder is expected."""
    f = tmp_path_factory.mktemp("blk") / "a_file"
    f.write_text("not a folder")
    return f


CLI_CASES = {
    # case: (argv built from the fixtures, words the one line must contain)
    "map build --out under a file": (
        lambda s, m, b: ["map", "build", "--images", s / "database", "--out", b / "m.vprmap"],
        ["cannot write", "a parent of it is a file"],
    ),
    "map build --out is a directory": (
        lambda s, m, b: ["map", "build", "--images", s / "database", "--out", s],
        ["is a directory"],
    ),
    "eval --json under a file": (
        lambda s, m, b: ["eval", "--map", m, "--queries", s / "queries", "--json", b / "r.json", "-q"],
        ["r.json", "cannot write"],
    ),
    "eval --plot under a file": (
        lambda s, m, b: ["eval", "--map", m, "--queries", s / "queries", "--plot", b / "p.png", "-q"],
        ["p.png", "cannot write"],
    ),
    "train --out under a file": (
        lambda s, m, b: [
            "train",
            "dhe",
            "--images",
            s / "database",
            "--out",
            b / "h.pt",
            "--iterations",
            "2",
            "--batch-size",
            "2",
        ],
        ["h.pt", "cannot write"],
    ),
    "--set clusters=0": (
        lambda s, m, b: [
            "map",
            "build",
            "--images",
            s / "database",
            "--out",
            b.parent / "c0.vprmap",
            "--set",
            "clusters=0",
        ],
        ["clusters=0", "out of range"],
    ),
    "--set clusters beyond the data": (
        lambda s, m, b: [
            "map",
            "build",
            "--images",
            s / "database",
            "--out",
            b.parent / "c1.vprmap",
            "--set",
            "clusters=50000",
        ],
        ["clusters=50000", "local features", "lower --set clusters"],
    ),
    "--set input_size=abc": (
        lambda s, m, b: [
            "map",
            "build",
            "--images",
            s / "database",
            "--out",
            b.parent / "c2.vprmap",
            "--set",
            "input_size=abc",
        ],
        ["input_size", "[width, height]"],
    ),
    "map adapt --batch-size 0": (
        lambda s, m, b: ["map", "adapt", m, "--batch-size", "0"],
        ["--batch-size", "positive integer"],
    ),
    "train --iterations 0": (
        lambda s, m, b: ["train", "dhe", "--images", s / "database", "--out", b.parent / "h.pt", "--iterations", "0"],
        ["--iterations", "positive integer"],
    ),
    "eval --threshold -5": (
        lambda s, m, b: ["eval", "--map", m, "--queries", s / "queries", "--threshold", "-5"],
        ["--threshold", "positive number"],
    ),
    "eval --threshold nan": (
        lambda s, m, b: ["eval", "--map", m, "--queries", s / "queries", "--threshold", "nan"],
        ["--threshold"],
    ),
    "eval --threshold inf": (
        lambda s, m, b: ["eval", "--map", m, "--queries", s / "queries", "--threshold", "inf"],
        ["--threshold"],
    ),
    "eval --rerank-k -5": (
        lambda s, m, b: ["eval", "--map", m, "--queries", s / "queries", "--rerank-k", "-5"],
        ["--rerank-k", "out of range"],
    ),
}


@pytest.fixture(scope="module")
def run_bag(street, tmp_path_factory) -> Path:
    """Four frames of the street and their fixes as a ROS 2 bag."""
    from vpr_core.io.bags import FixSample, write_run_bag
    from vpr_core.io.geoset import load_geoset

    q = load_geoset(street / "queries")
    t0 = 1_700_000_000 * 10**9
    images = [(t0 + i * 10**9, p.read_bytes()) for i, p in enumerate(q.paths[:4])]
    fixes = [FixSample(t0 + i * 10**9, float(q.lat[i]), float(q.lon[i])) for i in range(4)]
    return write_run_bag(tmp_path_factory.mktemp("bag") / "run", images, fixes)


def test_out_bag_under_a_file(street_map, run_bag, blocker):
    r = vpr("eval", "--map", street_map, "--bag", run_bag, "--image-topic", "/camera/image", "--fix-topic", "/gps/fix",
            "--out-bag", blocker / "out", "-q")  # fmt: skip
    assert_one_line_error(r, "out", "cannot write", "a parent of it is a file")


@pytest.mark.parametrize("case", list(CLI_CASES))
def test_cli_refuses_with_one_line(case, street, street_map, blocker, tmp_path):
    argv, needles = CLI_CASES[case]
    assert_one_line_error(vpr(*argv(street, street_map, blocker)), *needles)
    assert not list(tmp_path.glob("**/*.tmp")) and not list(blocker.parent.glob(".*tmp"))


def test_disk_full_is_one_line_and_leaves_nothing(street, tmp_path):
    """A write that fails midway (here: the file-size limit, as a full disk does) leaves no file, temp or final."""
    out = tmp_path / "m.vprmap"
    r = vpr("map", "build", "--images", street / "database", "--out", out, "--device", "cpu", limit_file_bytes=200_000)
    assert_one_line_error(r, "m.vprmap", "cannot write")
    assert not out.exists() and not list(tmp_path.iterdir())


@pytest.mark.skipif(
    os.geteuid() == 0, reason="root writes into read-only folders; the errno mapping is covered by the other cases"
)
def test_read_only_folder(street, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    assert_one_line_error(
        vpr("map", "build", "--images", street / "database", "--out", ro / "m.vprmap"), "not writable"
    )


def test_broken_pipe_is_quiet():
    r = subprocess.run(
        f"{shlex.join(VPR)} models | head -c 10", shell=True, capture_output=True, text=True, timeout=120
    )
    assert "Traceback" not in r.stderr and "BrokenPipe" not in r.stderr, r.stderr


def test_damaged_checkpoint_sets_are_refused(street, tmp_path):
    from vpr_core.errors import VprError
    from vpr_core.train.dhe import train_dhe

    out = tmp_path / "h.pt"
    conf = {"iterations": 2, "batch_size": 2, "save_every": 1}
    train_dhe(street / "database", out, conf, device="cpu")
    meta = json.loads(out.with_name("h.pt.json").read_text())
    assert set(meta["files"]) == {"main", "optim"} and all(len(f["sha256"]) == 64 for f in meta["files"].values())
    optim = out.with_name("h.pt.optim")
    good = optim.read_bytes()
    optim.write_bytes(good[: len(good) // 2])  # a kill mid-write of an older torch.save, or a damaged disk
    with pytest.raises(VprError, match=r"does not match its h\.pt\.json .*start over"):
        train_dhe(street / "database", out, {**conf, "iterations": 3}, resume=True, device="cpu")
    optim.write_bytes(good)
    assert train_dhe(street / "database", out, {**conf, "iterations": 3}, resume=True, device="cpu") == out
    r = vpr(
        "train", "dhe", "--images", street / "database", "--out", tmp_path / "none.pt", "--resume", "--iterations", "3"
    )
    assert_one_line_error(r, "nothing to resume")


def test_leftovers_of_a_kill_are_removed(street, street_map, tmp_path):
    """Temporaries of a dead writer (pid gone) are deleted by the next write of the same target; a map-images
    folder whose map never appeared is replaced, not in the way; one a finished map owns is never deleted."""
    from vpr_core.io.bags import FixSample, write_run_bag
    from vpr_core.io.files import atomic_write
    from vpr_core.io.geoset import load_geoset
    from vpr_core.map.build import build_map_from_bag, extract_map_images
    from vpr_core.map.format import load_map

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    target = tmp_path / "route.vprmap"
    stale = [tmp_path / f".route.vprmap.{dead.pid}.x1.tmp", tmp_path / f".route.vprmap.{dead.pid}.x2.adapt"]
    stale[0].write_bytes(b"half a map")
    stale[1].mkdir()
    mine = tmp_path / f".route.vprmap.{os.getpid()}.live.tmp"  # a writer still running: kept
    mine.write_bytes(b"in progress")
    atomic_write(target, lambda t: t.write_bytes(b"map"))
    assert target.read_bytes() == b"map" and not any(p.exists() for p in stale) and mine.exists()

    geo = load_geoset(street / "database")
    t0 = 1_700_000_000 * 10**9
    images = [(t0 + i * 10**9, p.read_bytes()) for i, p in enumerate(geo.paths[:6])]
    fixes = [FixSample(t0 + i * 10**9, float(geo.lat[i]), float(geo.lon[i])) for i in range(6)]
    bag = write_run_bag(tmp_path / "run", images, fixes)
    out = tmp_path / "bagmap.vprmap"
    # what a build killed after extracting the frames, while describing them, leaves: the folder, no map
    extract_map_images(bag, "/camera/image", "/gps/fix", Path(f"{out}.images"), progress=False, map_path=out)
    m, _, _ = build_map_from_bag(bag, "/camera/image", "/gps/fix", out, progress=False, device="cpu")
    assert out.exists() and len(m) == 6 and m.info["images_id"]

    # a complete map's folder is its data, wherever the map went: moving the map and building again under the
    # old name must not delete the moved map's only copy of its frames
    moved = tmp_path / "moved.vprmap"
    out.rename(moved)
    r = vpr("map", "build", "--bag", bag, "--image-topic", "/camera/image", "--fix-topic", "/gps/fix", "--out", out)
    assert_one_line_error(r, f"{out}.images", "--images-out")
    assert sorted(p.name for p in Path(f"{out}.images").glob("*.jpg")) == sorted(Path(p).name for p in m.names)
    assert load_map(moved).info["images_id"] == m.info["images_id"]


def test_crafted_engine_file_cannot_run_code(tmp_path):
    """A cached TensorRT/export file is checked before torch.export.load, which would unpickle freely."""
    import io
    import zipfile

    import torch

    from vpr_core.errors import VprError
    from vpr_core.runtime.compile import load_exported

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    ok = torch.export.export(torch.nn.Linear(3, 2), (torch.rand(1, 3),))
    good = tmp_path / "good.ep"
    torch.export.save(ok, str(good))
    assert load_exported(good).module()(torch.rand(1, 3)).shape == (1, 2)
    bad = tmp_path / "bad.ep"
    buf = io.BytesIO()
    torch.save({"w": Payload()}, buf)
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("model_weights_config.json"):
                conf = json.loads(data)
                for entry in conf["config"].values():
                    entry["use_pickle"] = True
                data = json.dumps(conf).encode()
            elif "/data/weights/weight_" in info.filename:
                data = buf.getvalue()
            dst.writestr(info, data)
    with pytest.raises(VprError, match="pickled object"):
        load_exported(bad)
    legacy = tmp_path / "legacy.ep"  # the older layout: serialized_*.pt members
    with zipfile.ZipFile(legacy, "w") as z:
        z.writestr("legacy/serialized_state_dict.pt", buf.getvalue())
    with pytest.raises(VprError, match="not plain tensor data"):
        load_exported(legacy)
    assert not marker.exists()


def test_large_images(tmp_path):
    """A 20000x20000 PNG is refused from its header at once; a 12 MP photo and a JPEG with a trailer load."""
    from vpr_core.errors import ImageError
    from vpr_core.io.images import load_image

    png = bytearray(cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    png[16:24] = struct.pack(">II", 20000, 20000)
    png[29:33] = struct.pack(">I", zlib.crc32(bytes(png[12:29])))
    (tmp_path / "huge.png").write_bytes(bytes(png))
    t = time.perf_counter()
    with pytest.raises(ImageError, match="400 megapixels, above the 100 MP limit"):
        load_image(tmp_path / "huge.png")
    assert time.perf_counter() - t < 0.5
    photo = np.random.default_rng(0).integers(0, 255, (3000, 4000, 3), dtype=np.uint8)
    jpg = cv2.imencode(".jpg", photo)[1].tobytes()
    (tmp_path / "phone.jpg").write_bytes(jpg + b"\x00EXIF trailer after EOI" * 4)
    assert load_image(tmp_path / "phone.jpg").shape == (1536, 2048, 3)
    (tmp_path / "cut.jpg").write_bytes(jpg[: len(jpg) // 2])
    with pytest.raises(ImageError, match="truncated JPEG"):
        load_image(tmp_path / "cut.jpg")


@pytest.mark.parametrize("ext", [".jpg", ".png", ".tif", ".webp", ".bmp", ".ppm", ".pgm"])
def test_every_format_is_size_checked_before_decoding(ext):
    """Each format decoded has its header read for the pixel limit (a 15000x15000 WebP is 8.6 KB); the size read
    is the true one, and a format whose size cannot be read (GIF, HDR, JPEG 2000, ...) is refused."""
    from vpr_core.errors import ImageError
    from vpr_core.io.images import decode_image, encoded_size

    img = np.random.default_rng(0).integers(0, 255, (200, 300, 3), dtype=np.uint8)
    data = cv2.imencode(ext, img[:, :, 0] if ext == ".pgm" else img)[1].tobytes()
    assert encoded_size(data) == (300, 200)
    assert decode_image(data, "cam").shape == (200, 300, 3)
    with pytest.raises(ImageError, match=r"^cam: 300x200 is 0 megapixels, above the 0.05 MP limit"):
        decode_image(data, "cam", limit_mp=0.05)
    if ext == ".jpg":  # a phone's EXIF, ICC and MPF segments can put the frame header past 64 KiB: still read
        app = b"\xff\xe1" + (40000).to_bytes(2, "big") + b"\x00" * 39998
        assert decode_image(data[:2] + app * 2 + data[2:], "cam").shape == (200, 300, 3)


def test_formats_without_a_readable_size_are_refused():
    from vpr_core.errors import ImageError
    from vpr_core.io.images import decode_image

    gif = b"GIF89a" + struct.pack("<HH", 20000, 20000) + b"\x00" * 32
    for data, needle in (
        (gif, "cannot decode image: its first bytes are none of"),
        (b"#?RADIANCE\n" + b"\x00" * 64, "cannot decode image: its first bytes are none of"),
        (b"II*\x00" + struct.pack("<I", 10**6), "TIFF header cannot be read"),  # its directory is past the end
        (b"RIFF\x00\x00\x00\x00WEBPVP8X" + b"\x00" * 4, "WebP header cannot be read"),
    ):
        with pytest.raises(ImageError, match=needle):
            decode_image(data, "x")


def test_map_integrity_is_checked_on_load(street_map, tmp_path):
    from vpr_core.errors import MapError
    from vpr_core.localize.localizer import Localizer
    from vpr_core.map.format import load_map, save_map

    m = load_map(street_map)
    m.lat = m.lat.copy()
    m.lat[3] = np.nan
    save_map(m, tmp_path / "nan.vprmap")
    with pytest.raises(MapError, match="'geo.lat' holds NaN"):
        load_map(tmp_path / "nan.vprmap")
    m = load_map(street_map)
    m.lon = m.lon + 400.0
    save_map(m, tmp_path / "range.vprmap")
    with pytest.raises(MapError, match="out-of-range"):
        load_map(tmp_path / "range.vprmap")
    m = load_map(street_map)
    m.grids.data = np.ascontiguousarray(m.grids.data[:, ::2, ::2])  # a grid the model does not produce
    save_map(m, tmp_path / "grid.vprmap")
    with pytest.raises(MapError, match="local features hold a 20x15 grid"):
        Localizer.from_file(tmp_path / "grid.vprmap", device="cpu", reranker="ransac")
    r = vpr("eval", "--map", tmp_path / "nan.vprmap", "--queries", tmp_path)
    assert_one_line_error(r, "nan.vprmap", "rebuild")


def crafted(src: Path, dst: Path, meta=None, arrays=None, resum: bool = True) -> Path:
    """A copy of a map with its JSON metadata and/or arrays edited, as a buggy writer would (checksums of what it
    wrote) or, without ``resum``, as damage would (the old checksums)."""
    from safetensors import safe_open
    from safetensors.numpy import save_file

    from vpr_core.map.format import checksum

    with safe_open(str(src), "numpy") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        md = json.loads(f.metadata()["vpr_map"])
    if meta:
        meta(md)
    if arrays:
        arrays(tensors)
        if resum:
            md["checksums"] = {k: checksum(v) for k, v in tensors.items()}
    save_file(tensors, str(dst), metadata={"vpr_map": json.dumps(md)})
    return dst


def test_map_content_is_validated_on_load(street_map, tmp_path):
    """Metadata of the wrong type, non-finite or negative tables and flipped bits: one MapError naming the field,
    never a traceback, a NaN output or a silent NO_FIX; ``vpr map verify`` gives a one-line verdict."""
    from vpr_core.errors import MapError
    from vpr_core.localize.localizer import Localizer
    from vpr_core.map.format import load_map

    def setter(key, value):
        return lambda md: md.__setitem__(key, value)

    def array(name, fn):
        return lambda t: t.__setitem__(name, fn(t[name]))

    name = "calibration.ransac.covariance_scale"
    for i, (meta, arrays, needle) in enumerate([
        (setter("info", [1, 2]), None, "field 'info' is not an object"),
        (setter("info", "text"), None, "field 'info' is not an object"),
        (setter("origin", [True, False, True]), None, "field 'origin' must be [lat, lon, h]"),
        (setter("names", [1] * 24), None, "field 'names' holds entries that are not file names"),
        (None, array("geo.alt", lambda a: np.full_like(a, np.inf)), "geo.alt"),
        (None, array("model.vlad.centers", lambda a: np.where(np.arange(a.size).reshape(a.shape) == 5, np.nan, a)),
         "'model.vlad.centers' holds NaN"),
        (None, array("grid.codebook", lambda a: a * np.nan), "'grid.codebook' holds NaN"),
        (None, lambda t: t.__setitem__(name, np.array([np.nan])), "ransac.covariance_scale must be one positive"),
        (None, lambda t: t.__setitem__(name, np.array([-1.0])), "ransac.covariance_scale must be one positive"),
        (None, lambda t: t.__setitem__(name, np.zeros((0,))), "ransac.covariance_scale must be one positive"),
        (None, lambda t: t.__setitem__("calibration.ransac.coef", np.array([np.nan] * 4)), "finite coefficients"),
        (None, array("descriptors", lambda a: -a), "'descriptors' does not match its checksum"),
    ]):  # fmt: skip
        bad = crafted(street_map, tmp_path / f"bad{i}.vprmap", meta, arrays, resum="checksum" not in needle)
        with pytest.raises(MapError, match=re.escape(needle)):
            load_map(bad)
    # info null: an empty provenance, loads; a calibration of the wrong length is refused by the localizer
    assert load_map(crafted(street_map, tmp_path / "null.vprmap", setter("info", None))).info == {}
    short = crafted(street_map, tmp_path / "short.vprmap", None, lambda t: t.__setitem__("calibration.ransac.coef",
                                                                                          np.ones(3)))  # fmt: skip
    with pytest.raises(MapError, match=r"calibration.ransac has shape \(3,\), not \(4,\)"):
        Localizer.from_file(short, device="cpu", reranker="ransac")

    # bit flips in the data: refused on load (small arrays) and by verify (every array)
    flipped = tmp_path / "flipped.vprmap"
    data = bytearray(street_map.read_bytes())
    start = 8 + int.from_bytes(data[:8], "little")
    for pos in np.random.default_rng(0).integers(start, len(data), 50):
        data[pos] ^= 0x10
    flipped.write_bytes(bytes(data))
    assert_one_line_error(vpr("map", "verify", flipped), "flipped.vprmap", "does not match its checksum")
    r = vpr("map", "verify", street_map)
    assert r.returncode == 0 and r.stdout.startswith(f"{street_map}: OK: ") and "checksums" in r.stdout, r.stderr
    assert_one_line_error(vpr("map", "verify", tmp_path / "bad0.vprmap"), "'info' is not an object")


REPRO = """
import json, sys, torch, faiss
n = int(sys.argv[1]); torch.set_num_threads(n); faiss.omp_set_num_threads(n)
from vpr_core.io.geoset import load_geoset
from vpr_core.io.images import load_image
from vpr_core.localize.localizer import Localizer
from vpr_core.map.build import build_map
db = load_geoset(sys.argv[2] + "/database")
m = build_map(db, device="cpu")
loc = Localizer(m, device="cpu")
q = load_geoset(sys.argv[2] + "/queries", frame=db.frame)
est = [loc.localize(load_image(p)) for p in q.paths]
topk = [[x.index for x in e.matches] for e in est]
fixes = [[e.lat, e.lon, e.confidence, *e.covariance.reshape(-1).tolist()] for e in est]
codes = m.grids.data.tolist() if m.grids is not None else None
out = {"vocab": m.model_state["vlad.centers"].tolist(), "desc": m.descriptors.tolist(), "topk": topk,
       "fixes": fixes, "codes": codes}
print(json.dumps(out))
"""


def test_map_builds_do_not_depend_on_the_thread_count(street):
    """The determinism table (docs/reliability.md): on one machine, any thread count gives the same vocabulary and
    top-K, and the same thread count gives bit-identical arrays and estimates."""
    runs = []
    for n in (1, 2, 2):
        r = subprocess.run(
            [sys.executable, "-c", REPRO, str(n), str(street)], capture_output=True, text=True, timeout=600
        )
        assert r.returncode == 0, r.stderr[-2000:]
        runs.append(json.loads(r.stdout.strip().splitlines()[-1]))
    assert runs[0]["vocab"] == runs[1]["vocab"]  # bit for bit: features and k-means single-threaded
    # threaded float noise only: the same directions (docs/reliability.md: what is bit-identical, what within bounds)
    assert_vectors_close(runs[0]["desc"], runs[1]["desc"], NET_RTOL)
    assert runs[0]["topk"] == runs[1]["topk"]  # which never changes retrieval
    assert runs[1] == runs[2]  # the same thread count: every array and estimate bit for bit


def test_numbers_and_options_are_checked_where_they_enter(street, street_map, tmp_path):
    """Seeds, temporal and re-ranker options, sizes, rates: one check per kind of value in the config layer, so
    each surface refuses the same values in one line (no traceback, no NaN in a report, no option ignored)."""
    from vpr_core.errors import VprError
    from vpr_core.localize.temporal import HmmFilter
    from vpr_core.models import build_global_model
    from vpr_core.rerank import build_reranker

    xy, desc = np.zeros((3, 2)), np.eye(3, dtype=np.float32)
    for conf, needle in (
        ({"hypotheses": "abc"}, "hypotheses='abc' is not an integer"),
        ({"hypotheses": -5}, "hypotheses=-5 must be 1 or more"),
        ({"beta": float("nan")}, "beta=nan is not a number"),
        ({"max_speed": float("nan")}, "max_speed=nan is not a number"),
        ({"sample": 0}, "sample=0 must be 1 or more"),
    ):
        with pytest.raises(VprError, match=re.escape(needle)):
            HmmFilter(xy, desc, conf)
    for name, conf, needle in (
        ("ransac", {"frame": "ab"}, "frame='ab' must be [width, height]"),
        ("ransac", {"frame": [0, 0]}, "frame=[0, 0] must be [width, height]"),
        ("ransac", {"backend": "evil"}, "backend='evil' is not one of opencv, poselib"),
        ("dhe", {"head_grid": [1, 2, 3]}, "head_grid=[1, 2, 3] must be [width, height]"),
    ):
        with pytest.raises(VprError, match=re.escape(needle)):
            build_reranker(name, conf)
    with pytest.raises(VprError, match=re.escape("input_size=[40000, 40000] must be [width, height]")):
        build_global_model("xfeat-vlad", {"input_size": [40000, 40000]})
    for seed in (-1, 2**64):  # the vocabulary's k-means seed
        with pytest.raises(VprError, match=re.escape(f"seed={seed} is out of range; give a value in [0, 4294967295]")):
            build_global_model("xfeat-vlad", {"seed": seed})

    e = ["eval", "--map", street_map, "--queries", street / "queries"]
    for argv, needles in (
        ([*e, "--shuffle", "-1"], ["--shuffle", "an integer in [0, 4294967295]"]),
        ([*e, "--temporal", "hmm", "--temporal-set", "beta=NaN"], ["beta=nan", "not a number"]),
        ([*e, "--rerank", "ransac", "--rerank-set", "backend=evil"], ["backend='evil'"]),
        (["train", "dhe", "--images", street / "database", "--out", tmp_path / "h.pt", "--seed", "-5"], ["--seed"]),
        (["map", "adapt", street_map, "--seed", str(2**64)], ["--seed", "4294967295"]),
        (["export", "--map", street_map, "--format", "onnx", "--out", tmp_path / "x.onnx", "--input-size", "-5", "10"],
         ["--input-size", "an integer in [32, 8192]"]),
        (["map", "build", "--images", street / "database", "--out", tmp_path / "m.vprmap", "--min-spacing", "nan"],
         ["--min-spacing"]),
        (["play", tmp_path / "bag", "--clock-hz", "0"], ["--clock-hz", "positive number"]),
        (["play", tmp_path / "bag", "--rate", "nan"], ["--rate", "positive number"]),
    ):  # fmt: skip
        assert_one_line_error(vpr(*argv), *needles)
    assert not list(tmp_path.iterdir())


def test_realistic_and_garbage_inputs_are_named_or_handled(street, street_map, tmp_path):
    """Fixes with Inf altitude or a -1 covariance (some GPS drivers), impossible UTM in a name, a CSV with a column
    twice, one file name in two subfolders, a report over the map, NaN statistics in a JSON report."""
    import shutil

    from vpr_core.errors import VprError
    from vpr_core.eval.report import write_json
    from vpr_core.io.bags import FixSample, GeoFrame, GeoFrames, write_run_bag
    from vpr_core.io.geoset import load_geoset, parse_vpr_name, read_csv
    from vpr_core.map.build import build_map

    geo = load_geoset(street / "database")
    t0 = 1_700_000_000 * 10**9
    images = [(t0 + i * 10**9, p.read_bytes()) for i, p in enumerate(geo.paths[:3])]
    fixes = [FixSample(t0 + i * 10**9, float(geo.lat[i]), float(geo.lon[i]), alt=math.inf, variance=-1.0)
             for i in range(3)]  # fmt: skip
    frames = [f for f in GeoFrames(write_run_bag(tmp_path / "run", images, fixes), "/camera/image", "/gps/fix")
              if isinstance(f, GeoFrame)]  # fmt: skip
    assert len(frames) == 3 and all(math.isnan(f.alt) for f in frames)  # kept; the altitude unknown, not Inf

    for name in ("@691607.03@5334780.17@0@U@48.1@11.5@x@@@@@@@@.jpg", "@1e9@1e9@32@U@48.1@11.5@x@@@@@@@@.jpg"):
        with pytest.raises(VprError, match="invalid UTM"):
            parse_vpr_name(Path(name))
    csv = tmp_path / "db.csv"
    csv.write_text("image,lat,lon,lat\na.jpg,1,2,3\n")
    with pytest.raises(VprError, match="column.s. lat appear more than once"):
        read_csv(csv)
    two = tmp_path / "two"
    for sub in ("a", "b"):
        (two / sub).mkdir(parents=True)
        shutil.copy(geo.paths[0], two / sub)
    with pytest.raises(VprError, match="share a file name"):
        build_map(load_geoset(two), device="cpu")

    before = street_map.read_bytes()
    r = vpr("eval", "--map", street_map, "--queries", street / "queries", "--json", street_map)
    assert_one_line_error(r, "--json", "is the input given to --map")
    assert street_map.read_bytes() == before
    write_json({"covariance": {"coverage_2sigma": math.nan, "nees": math.inf}}, tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text()) == {"covariance": {"coverage_2sigma": None, "nees": None}}


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every folder; the walk's error path is the same code")
def test_an_unreadable_subfolder_is_named(street, tmp_path):
    import shutil

    from vpr_core.errors import VprError
    from vpr_core.io.images import list_images

    (tmp_path / "db" / "locked").mkdir(parents=True)
    shutil.copy(next((street / "database").iterdir()), tmp_path / "db")
    (tmp_path / "db" / "locked").chmod(0)
    try:
        with pytest.raises(VprError, match="locked: cannot read this folder"):
            list_images(tmp_path / "db")
    finally:
        (tmp_path / "db" / "locked").chmod(0o755)
