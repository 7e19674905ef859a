"""ROS bags without ROS: map building from mapping runs, offline evaluation by replay.

Reads ROS 2 (sqlite3, mcap) and ROS 1 bags with ``rosbags`` (pure Python). Each image
is paired with the NavSatFix linearly interpolated (in UTM) at the image's header
stamp; an image is skipped, and the reason counted, when a neighbouring fix is
NO_FIX, NaN, too uncertain, or farther in time than ``max_fix_age``. Bad input never
ends in a traceback: unreadable bags, unknown topics or types are one-line errors;
bad frames, stamps going backwards and a truncated tail are counted skips.
"""

from __future__ import annotations

import functools
import logging
import math
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from .dataset import GeoImage, make_geoset, vpr_name
from .errors import ImageError, VprError
from .geodesy import UtmZone, to_utm, zone_of
from .rawimage import decode_compressed, decode_raw

log = logging.getLogger(__name__)

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
NAVSATFIX = "sensor_msgs/msg/NavSatFix"
IMAGE_TYPES = (IMAGE, COMPRESSED)
_ROS1_NAMES = {"sensor_msgs/Image": IMAGE, "sensor_msgs/CompressedImage": COMPRESSED, "sensor_msgs/NavSatFix": NAVSATFIX}


class BagError(VprError):
    """A bag that cannot be used as asked: unreadable, missing topic, wrong type, no fixes."""


def msgtype_of(conn) -> str:
    """A connection's ROS 2 type name (ROS 1 bags may use the short form)."""
    return _ROS1_NAMES.get(conn.msgtype, conn.msgtype)


@functools.cache
def ros2_types():
    """The ROS 2 (Jazzy) message definitions: what bags are written with and DDS peers expect."""
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_JAZZY)


def cdr_bytes(reader, conn, raw: bytes | memoryview) -> bytes:
    """A message as ROS 2 CDR bytes - what DDS publishers and ROS 2 bags carry.

    ROS 1 payloads are decoded and re-encoded with the ROS 2 definitions (e.g. Header loses ``seq``).
    """
    if reader.is2:
        return bytes(raw)
    return bytes(ros2_types().serialize_cdr(reader.deserialize(raw, conn.msgtype), msgtype_of(conn)))


def _header(T, stamp_ns: int, frame_id: str):
    t = T["builtin_interfaces/msg/Time"](sec=int(stamp_ns // 1_000_000_000), nanosec=int(stamp_ns % 1_000_000_000))
    return T["std_msgs/msg/Header"](stamp=t, frame_id=frame_id)


@contextmanager
def staged(out: Path) -> Iterator[Path]:
    """A not-yet-existing path beside ``out`` to build a folder at; renamed to ``out`` only when the block completes."""
    out.parent.mkdir(parents=True, exist_ok=True)
    parent = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        yield parent / "staged"
        (parent / "staged").rename(out)
    finally:
        shutil.rmtree(parent, ignore_errors=True)


def _writer(path: Path, storage: str):
    from rosbags.rosbag2 import StoragePlugin, Writer

    if storage not in ("mcap", "sqlite3"):
        raise VprError(f"bag storage '{storage}' unknown; choose mcap or sqlite3")
    return Writer(path, version=9, storage_plugin=StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3)


@contextmanager
def open_bag(path: str | Path):
    """An opened ``rosbags`` AnyReader, or a one-line BagError naming the file."""
    from rosbags.highlevel import AnyReader

    p = Path(path)
    if not p.exists():
        raise BagError(f"{p}: bag not found; pass a ROS 2 bag folder, a .mcap/.db3 file or a ROS 1 .bag")
    target = p
    if p.is_file() and p.suffix in (".mcap", ".db3") and (p.parent / "metadata.yaml").exists():
        target = p.parent  # a ROS 2 storage file inside its bag folder: open the bag
    try:
        reader = AnyReader([target])
        reader.open()
    except Exception as e:  # rosbags raises several unrelated types for damaged files
        raise BagError(f"{p}: cannot read bag ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'no detail'}); "
                       "is the recording complete? (a cut .mcap: 'mcap recover'; a missing metadata.yaml: 'ros2 bag reindex')") from None  # fmt: skip
    try:
        yield reader
    finally:
        reader.close()


def topic_connections(reader, bag: str | Path, topic: str, allowed: tuple[str, ...], option: str) -> list:
    conns = [c for c in reader.connections if c.topic == topic]
    if not conns:
        have = ", ".join(sorted({f"{c.topic} ({msgtype_of(c)})" for c in reader.connections})) or "none"
        raise BagError(f"{bag}: no topic '{topic}'; topics in this bag: {have}; pass {option}")
    bad = sorted({msgtype_of(c) for c in conns} - set(allowed))
    if bad:
        raise BagError(f"{bag}: topic '{topic}' carries {', '.join(bad)}, expected {' or '.join(allowed)}; pass {option} with such a topic")
    return conns


def _stamp_ns(msg: Any, logtime: int) -> int:
    st = getattr(getattr(msg, "header", None), "stamp", None)
    if st is None:
        return logtime
    ns = int(st.sec) * 1_000_000_000 + int(getattr(st, "nanosec", getattr(st, "nsec", 0)))
    return ns if ns > 0 else logtime


@dataclass
class Frame:
    stamp: int  # header stamp, ns
    logtime: int  # bag receive time, ns
    image: np.ndarray  # RGB uint8, as load_image would give for the same bytes
    encoded: bytes | None  # the original jpeg/png payload of a CompressedImage
    fmt: str


@dataclass
class Skips:
    counts: Counter = field(default_factory=Counter)

    def add(self, reason: str) -> None:
        self.counts[reason] += 1

    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        return ", ".join(f"{n} {r}" for r, n in self.counts.most_common()) or "none"


def _messages(reader, conns, skips: Skips, bag: str | Path) -> Iterator[tuple[Any, int, Any]]:
    """(connection, logtime, message); undecodable messages and a truncated tail are counted skips."""
    it = reader.messages(connections=conns)
    while True:
        try:
            conn, t, raw = next(it)
        except StopIteration:
            return
        except Exception as e:  # a recording cut short: keep what was read
            skips.add("bag unreadable from here on (truncated?)")
            log.warning("%s: stopped reading: %s: %s", bag, type(e).__name__, e)
            return
        try:
            yield conn, t, reader.deserialize(raw, conn.msgtype)
        except Exception:
            skips.add("undecodable message")


def iter_images(reader, conns, skips: Skips, bag: str | Path) -> Iterator[Frame]:
    last = -1
    for conn, t, msg in _messages(reader, conns, skips, bag):
        st = _stamp_ns(msg, t)
        if st <= last:
            skips.add("image stamp not increasing")
            continue
        try:
            if msgtype_of(conn) == COMPRESSED:
                data = bytes(msg.data)
                img, enc, fmt = decode_compressed(msg.format, data, source=conn.topic), data, str(msg.format)
            else:
                img, enc, fmt = decode_raw(msg.encoding, msg.height, msg.width, msg.step, msg.data, bool(msg.is_bigendian), source=conn.topic), None, str(msg.encoding)
        except ImageError as e:
            skips.add("bad image")
            log.info("%s", e)
            continue
        last = st
        yield Frame(st, t, img, enc, fmt)  # the decoders return contiguous RGB, size-limited as load_image


@dataclass
class FixTrack:
    """All fixes of a topic, by stamp; ``reason`` is '' for usable fixes."""

    t: np.ndarray  # ns, sorted
    lat: np.ndarray
    lon: np.ndarray
    alt: np.ndarray
    reason: list[str]
    backwards: int = 0  # fixes whose stamp was older than the previous one (sorted in)

    def usable(self) -> np.ndarray:
        return np.array([not r for r in self.reason], dtype=bool)


def read_fixes(reader, conns, bag: str | Path, max_fix_std: float, skips: Skips) -> FixTrack:
    rows: list[tuple[int, float, float, float, str]] = []
    for _, t, msg in _messages(reader, conns, skips, bag):
        lat, lon, alt = float(msg.latitude), float(msg.longitude), float(msg.altitude)
        reason = ""
        if int(msg.status.status) < 0:
            reason = "NO_FIX"
        elif not (math.isfinite(lat) and math.isfinite(lon)) or abs(lat) > 90 or abs(lon) > 180:
            reason = "NaN/invalid fix"
        elif int(msg.position_covariance_type) != 0:
            cov = np.asarray(msg.position_covariance, dtype=np.float64)
            std = math.sqrt(max(cov[0], cov[4])) if np.isfinite(cov[[0, 4]]).all() else math.inf
            if std > max_fix_std:
                reason = "fix covariance too large"
        rows.append((_stamp_ns(msg, t), lat, lon, alt, reason))
    if not rows:
        raise BagError(f"{bag}: no NavSatFix messages on {conns[0].topic}; record the GNSS topic in the mapping run or pass --fix-topic")
    stamps = np.array([r[0] for r in rows], dtype=np.int64)
    backwards = int((np.diff(stamps) < 0).sum())
    order = np.argsort(stamps, kind="stable")
    rows = [rows[i] for i in order]
    return FixTrack(
        np.array([r[0] for r in rows], dtype=np.int64), np.array([r[1] for r in rows]), np.array([r[2] for r in rows]),
        np.array([r[3] for r in rows]), [r[4] for r in rows], backwards,
    )  # fmt: skip


def interpolate(track: FixTrack, east: np.ndarray, north: np.ndarray, t: int, max_age_ns: int) -> tuple[float, float, float] | str:
    """(east, north, alt) at stamp ``t`` from the two neighbouring fixes, or the reason it cannot be had."""
    i = int(np.searchsorted(track.t, t, side="left"))
    if i < len(track.t) and track.t[i] == t:
        lo = hi = i
    else:
        lo, hi = i - 1, i
    if lo < 0 or hi >= len(track.t):
        return "outside the fix coverage"
    for j in (lo, hi):
        if track.reason[j]:
            return track.reason[j]
    if t - track.t[lo] > max_age_ns or track.t[hi] - t > max_age_ns:
        return "fix older than max-fix-age"
    if lo == hi:
        return float(east[lo]), float(north[lo]), float(track.alt[lo])
    w = (t - track.t[lo]) / (track.t[hi] - track.t[lo])
    lerp = lambda a: float(a[lo] + w * (a[hi] - a[lo]))  # noqa: E731
    return lerp(east), lerp(north), lerp(track.alt)


@dataclass
class GeoFrame:
    frame: Frame
    east: float
    north: float
    alt: float


class GeoFrames:
    """Images of a bag paired with interpolated fixes; ``skips`` counts what was left out and why."""

    def __init__(self, bag: str | Path, image_topic: str, fix_topic: str, max_fix_age: float = 1.0, max_fix_std: float = 10.0, zone: UtmZone | None = None) -> None:
        self.bag, self.image_topic, self.fix_topic = Path(bag), image_topic, fix_topic
        self.max_age_ns = int(max_fix_age * 1e9)
        self.skips = Skips()
        self.frames_read = 0
        with open_bag(bag) as reader:
            image_conns = topic_connections(reader, bag, image_topic, IMAGE_TYPES, "--image-topic")
            fix_conns = topic_connections(reader, bag, fix_topic, (NAVSATFIX,), "--fix-topic")
            self.num_images = sum(c.msgcount for c in image_conns)
            self.track = read_fixes(reader, fix_conns, bag, max_fix_std, self.skips)
        ok = self.track.usable()
        if not ok.any():
            raise BagError(f"{bag}: none of the {len(ok)} fixes on {fix_topic} is usable ({Skips(Counter(self.track.reason)).summary()}); check the GNSS")
        first = int(np.argmax(ok))
        self.zone = zone or zone_of(float(self.track.lat[first]), float(self.track.lon[first]))
        lat = np.where(ok, self.track.lat, self.track.lat[first])
        lon = np.where(ok, self.track.lon, self.track.lon[first])
        self.east, self.north = to_utm(lat, lon, self.zone)

    def __iter__(self) -> Iterator[GeoFrame | Frame]:
        """Every decodable image: a GeoFrame when it has ground truth, else the bare Frame (reason counted)."""
        with open_bag(self.bag) as reader:  # connections belong to their reader: look them up again
            conns = topic_connections(reader, self.bag, self.image_topic, IMAGE_TYPES, "--image-topic")
            for f in iter_images(reader, conns, self.skips, self.bag):
                self.frames_read += 1
                pos = interpolate(self.track, self.east, self.north, f.stamp, self.max_age_ns)
                if isinstance(pos, str):
                    self.skips.add(pos)
                    yield f
                else:
                    yield GeoFrame(f, *pos)


# ---- map building ---------------------------------------------------------------


def _image_file(gf: GeoFrame, zone: UtmZone, lat: float, lon: float, index: int) -> tuple[str, bytes]:
    """VPR-convention name and bytes: a CompressedImage's payload as recorded, raw images as lossless PNG."""
    import cv2

    f = gf.frame
    ext = ".jpg" if f.encoded is not None and "png" not in f.fmt.lower() else ".png"
    name = vpr_name(gf.east, gf.north, zone, lat, lon, f"{f.stamp}", ext)
    if f.encoded is not None:
        return name, f.encoded
    ok, buf = cv2.imencode(".png", cv2.cvtColor(f.image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise VprError(f"cannot encode frame {index} as PNG")
    return name, buf.tobytes()


def extract_map_images(bag: str | Path, image_topic: str, fix_topic: str, out_dir: str | Path, min_spacing: float = 0.0,
                       max_fix_age: float = 1.0, max_fix_std: float = 10.0, progress: bool = True) -> tuple[list[GeoImage], UtmZone, Skips, int]:  # fmt: skip
    """Write the kept frames to ``out_dir`` (VPR names; written to a temporary folder, then renamed) -> geotags."""
    from .geodesy import from_utm

    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise VprError(f"{out_dir}: image folder exists and is not empty; remove it or pass --images-out elsewhere")
    src = GeoFrames(bag, image_topic, fix_topic, max_fix_age, max_fix_std)
    images: list[GeoImage] = []
    last_xy: tuple[float, float] | None = None
    if out_dir.exists():
        out_dir.rmdir()  # empty (checked above): replaced by the staged folder
    with staged(out_dir) as tmp:
        tmp.mkdir()
        for gf in tqdm(src, total=src.num_images, desc="bag frames", unit="img", disable=not progress):
            if not isinstance(gf, GeoFrame):
                continue
            if last_xy is not None and math.hypot(gf.east - last_xy[0], gf.north - last_xy[1]) < min_spacing:
                src.skips.add("closer than min-spacing")
                continue
            lat, lon = (float(v[0]) for v in from_utm(np.array([gf.east]), np.array([gf.north]), src.zone))
            name, data = _image_file(gf, src.zone, lat, lon, len(images))
            (tmp / name).write_bytes(data)
            images.append(GeoImage(out_dir / name, lat, lon, gf.alt, math.nan, (gf.east, gf.north, src.zone.number, src.zone.letter)))
            last_xy = (gf.east, gf.north)
        if not images:
            raise BagError(f"{bag}: no image could be paired with a usable fix (skipped: {src.skips.summary()}); check --fix-topic, --max-fix-age")
    return images, src.zone, src.skips, src.num_images


def build_map_from_bag(bag: str | Path, image_topic: str, fix_topic: str, out: str | Path, images_out: str | Path | None = None, min_spacing: float = 0.0,
                       max_fix_age: float = 1.0, max_fix_std: float = 10.0, progress: bool = True, **build_kw: Any):  # fmt: skip
    """Kept frames go to ``images_out`` (default ``MAP.images/``) - the map's image source for debug views and ``map adapt``."""
    from .mapdb import save_map
    from .mapping import build_map

    out = Path(out)
    images_out = Path(images_out) if images_out else out.with_name(out.name + ".images")
    images, zone, skips, seen = extract_map_images(bag, image_topic, fix_topic, images_out, min_spacing, max_fix_age, max_fix_std, progress)
    m = build_map(make_geoset(images, zone), source=str(images_out), **build_kw)
    m.info["bag"] = {"path": str(bag), "image_topic": image_topic, "fix_topic": fix_topic, "frames": seen, "kept": len(images), "skipped": dict(skips.counts)}
    save_map(m, out)
    return m, skips, seen


# ---- offline evaluation -----------------------------------------------------------


@dataclass
class BagEval:
    report: dict[str, Any]
    estimates: list  # Estimate per scored frame
    true_xy: np.ndarray
    all_estimates: list  # (Frame, Estimate) for every localized frame, scored or not
    skips: Skips


def evaluate_bag(localizer, bag: str | Path, image_topic: str, fix_topic: str, threshold: float, max_fix_age: float = 1.0,
                 max_fix_std: float = 10.0, progress: bool = True) -> BagEval:  # fmt: skip
    """Replay every image through the localizer as the robot would; score those with ground truth."""
    from .evaluation import RECALL_NS, localizer_info, summarize

    src = GeoFrames(bag, image_topic, fix_topic, max_fix_age, max_fix_std, zone=localizer.map.zone)
    k = max(localizer.top_k, max(RECALL_NS))
    scored, truth, everything = [], [], []
    t0 = time.perf_counter()
    for item in tqdm(src, total=src.num_images, desc="replay", unit="img", disable=not progress):
        f = item.frame if isinstance(item, GeoFrame) else item
        est = localizer.localize(f.image, k=k)
        everything.append((f, est))
        if isinstance(item, GeoFrame):
            scored.append(est)
            truth.append((item.east, item.north))
    wall = time.perf_counter() - t0
    if not scored:
        raise BagError(f"{bag}: no frame has ground truth (skipped: {src.skips.summary()}); check --fix-topic and --max-fix-age")
    true_xy = np.array(truth)
    report = summarize(scored, true_xy, threshold, localizer.map.xy) | localizer_info(localizer)
    report |= {
        "bag": str(bag),
        "image_topic": image_topic,
        "fix_topic": fix_topic,
        "frames_localized": len(everything),
        "frames_skipped": dict(src.skips.counts),
        "throughput_fps": len(everything) / wall if wall > 0 else float("nan"),
    }
    return BagEval(report, scored, true_xy, everything, src.skips)


def write_estimates_bag(src: str | Path, out: str | Path, results: list, min_confidence: float = 0.0, prefix: str = "/vpr", map_frame: str = "map",
                        storage: str = "mcap") -> int:  # fmt: skip
    """Copy every message of ``src`` into a new ROS 2 bag at ``out`` and add the estimates as NavSatFix + PoseWithCovarianceStamped.

    Written to a temporary folder beside ``out`` and renamed when complete.
    """
    from .outputs import COVARIANCE_TYPE_KNOWN, fix_fields, pose_fields

    out = Path(out)
    if out.exists():
        raise VprError(f"{out}: exists; remove it or choose another --out-bag")
    ts = ros2_types()
    T = ts.types
    POSE = "geometry_msgs/msg/PoseWithCovarianceStamped"
    n = 0
    with staged(out) as tmp, open_bag(src) as reader, _writer(tmp, storage) as w:
        conns = {}
        for c in reader.connections:
            if (c.topic, c.msgtype) not in conns:
                conns[(c.topic, c.msgtype)] = w.add_connection(c.topic, msgtype_of(c), typestore=reader.typestore if reader.is2 else ts)
        for c, t, raw in reader.messages():
            w.write(conns[(c.topic, c.msgtype)], t, cdr_bytes(reader, c, raw))
            n += 1
        fix_c = w.add_connection(f"{prefix}/fix", NAVSATFIX, typestore=ts)
        pose_c = w.add_connection(f"{prefix}/pose", POSE, typestore=ts)
        for f, est in results:
            ff, pf = fix_fields(est, min_confidence), pose_fields(est)
            fix = T[NAVSATFIX](
                header=_header(T, f.stamp, "vpr"), status=T["sensor_msgs/msg/NavSatStatus"](status=ff.status, service=0),
                latitude=ff.latitude, longitude=ff.longitude, altitude=ff.altitude,
                position_covariance=np.array(ff.covariance, dtype=np.float64), position_covariance_type=COVARIANCE_TYPE_KNOWN,
            )  # fmt: skip
            position = T["geometry_msgs/msg/Point"](x=pf.position[0], y=pf.position[1], z=pf.position[2])
            pose = T["geometry_msgs/msg/Pose"](position=position, orientation=T["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0))
            msg = T[POSE](header=_header(T, f.stamp, map_frame), pose=T["geometry_msgs/msg/PoseWithCovariance"](pose=pose, covariance=np.array(pf.covariance)))
            w.write(fix_c, f.logtime, ts.serialize_cdr(fix, NAVSATFIX))
            w.write(pose_c, f.logtime, ts.serialize_cdr(msg, POSE))
            n += 2
    return n


# ---- writing runs -----------------------------------------------------------------


@dataclass
class FixSample:
    stamp: int  # ns
    lat: float
    lon: float
    alt: float = 0.0
    status: int = 0  # NavSatStatus: -1 NO_FIX, 0 FIX
    std: float = 0.5  # metres, horizontal; written as a diagonal KNOWN covariance


def write_run_bag(out: str | Path, images: list[tuple], fixes: list[FixSample], image_topic: str = "/camera/image",
                  fix_topic: str = "/gps/fix", storage: str = "mcap", frame_id: str = "camera") -> Path:  # fmt: skip
    """A recorded run as a ROS 2 bag: ``(stamp_ns, jpeg/png bytes)`` become CompressedImage, ``(stamp_ns, RGB array)`` rgb8 Image.

    Messages are logged at their stamps (or at an image's optional third element, its receive time). Written to a temporary folder, then renamed.
    """
    out = Path(out)
    if out.exists():
        raise VprError(f"{out}: exists; remove it first")
    ts = ros2_types()
    T = ts.types
    compressed = bool(images) and isinstance(images[0][1], bytes | bytearray)
    with staged(out) as tmp, _writer(tmp, storage) as w:
        ic = w.add_connection(image_topic, COMPRESSED if compressed else IMAGE, typestore=ts)
        fc = w.add_connection(fix_topic, NAVSATFIX, typestore=ts)
        msgs: list[tuple[int, Any, bytes]] = []
        for item in images:
            stamp, data = item[0], item[1]
            logtime = item[2] if len(item) > 2 else stamp  # a third element: a receive time other than the stamp
            if compressed:
                fmt = "png" if bytes(data[:4]) == b"\x89PNG" else "jpeg"
                m = T[COMPRESSED](header=_header(T, stamp, frame_id), format=fmt, data=np.frombuffer(bytes(data), dtype=np.uint8))
                msgs.append((logtime, ic, ts.serialize_cdr(m, COMPRESSED)))
            else:
                h, wd = data.shape[:2]
                m = T[IMAGE](header=_header(T, stamp, frame_id), height=h, width=wd, encoding="rgb8", is_bigendian=0, step=wd * 3,
                             data=np.ascontiguousarray(data, dtype=np.uint8).reshape(-1))  # fmt: skip
                msgs.append((logtime, ic, ts.serialize_cdr(m, IMAGE)))
        for f in fixes:
            cov = np.diag([f.std**2, f.std**2, (2 * f.std) ** 2]).reshape(-1).astype(np.float64)
            m = T[NAVSATFIX](header=_header(T, f.stamp, "gps"), status=T["sensor_msgs/msg/NavSatStatus"](status=f.status, service=1),
                             latitude=f.lat, longitude=f.lon, altitude=f.alt, position_covariance=cov, position_covariance_type=2)  # fmt: skip
            msgs.append((f.stamp, fc, ts.serialize_cdr(m, NAVSATFIX)))
        for stamp, c, data in sorted(msgs, key=lambda x: x[0]):
            w.write(c, max(stamp, 1), data)
    return out
