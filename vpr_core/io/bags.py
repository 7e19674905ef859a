"""ROS bags without ROS: reading images paired with interpolated fixes, writing recorded runs.

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
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ImageError, VprError
from ..geodesy import LocalFrame
from .camera import decode_compressed, decode_image_msg
from .files import staged

log = logging.getLogger(__name__)

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
NAVSATFIX = "sensor_msgs/msg/NavSatFix"
ODOMETRY = "nav_msgs/msg/Odometry"
IMU = "sensor_msgs/msg/Imu"
IMAGE_TYPES = (IMAGE, COMPRESSED)
_ROS1_NAMES = {
    "sensor_msgs/Image": IMAGE,
    "sensor_msgs/CompressedImage": COMPRESSED,
    "sensor_msgs/NavSatFix": NAVSATFIX,
    "sensor_msgs/Imu": IMU,
}


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


def msg_header(T, stamp_ns: int, frame_id: str):
    t = T["builtin_interfaces/msg/Time"](sec=int(stamp_ns // 1_000_000_000), nanosec=int(stamp_ns % 1_000_000_000))
    return T["std_msgs/msg/Header"](stamp=t, frame_id=frame_id)


#: ROS 2 storage formats a bag is written in.
STORAGES = ("mcap", "sqlite3")


def bag_writer(path: Path, storage: str):
    from rosbags.rosbag2 import StoragePlugin, Writer

    if storage not in STORAGES:
        raise VprError(f"bag storage '{storage}' unknown; choose one of {', '.join(STORAGES)}")
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
        raise BagError(
            f"{p}: cannot read bag ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'no detail'}); "
            "is the recording complete? (a cut .mcap: 'mcap recover'; a missing metadata.yaml: 'ros2 bag reindex')"
        ) from None
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
        raise BagError(
            f"{bag}: topic '{topic}' carries {', '.join(bad)}, expected {' or '.join(allowed)}; pass {option} with "
            "such a topic"
        )
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
    frame_id: str = ""  # the camera frame of the message header


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
                img, enc, fmt = decode_image_msg(msg, conn.topic), None, str(msg.encoding)
        except ImageError as e:
            skips.add("bad image")
            log.info("%s", e)
            continue
        last = st
        frame_id = str(getattr(getattr(msg, "header", None), "frame_id", "") or "")
        yield Frame(st, t, img, enc, fmt, frame_id)  # the decoders return contiguous RGB, size-limited as load_image


def read_odometry(bag: str | Path, topic: str) -> np.ndarray:
    """(stamp s, x, y, yaw) of every nav_msgs/Odometry on ``topic``, by stamp; for the temporal filter's motion."""
    skips = Skips()
    rows = []
    with open_bag(bag) as reader:
        conns = topic_connections(reader, bag, topic, (ODOMETRY,), "--odom-topic")
        for _, t, msg in _messages(reader, conns, skips, bag):
            p, q = msg.pose.pose.position, msg.pose.pose.orientation
            yaw = math.atan2(2.0 * (q.w * q.z + q.x * q.y), 1.0 - 2.0 * (q.y * q.y + q.z * q.z))
            rows.append((_stamp_ns(msg, t) * 1e-9, float(p.x), float(p.y), yaw))
    if not rows:
        raise BagError(f"{bag}: topic '{topic}' has no readable odometry; pass --odom-topic with a nav_msgs/Odometry")
    out = np.array(rows, dtype=np.float64)
    return out[np.argsort(out[:, 0], kind="stable")]


def read_headings(reader, conns, bag: str | Path, skips: Skips) -> tuple[np.ndarray, np.ndarray]:
    """(stamps ns, ENU yaw rad) of the sensor_msgs/Imu orientations on ``conns``, by stamp: an IMU's orientation is
    ENU when it has a magnetometer (REP-145); messages marking it unknown (orientation_covariance[0] == -1) are
    left out."""
    t, yaw = [], []
    for _, tl, msg in _messages(reader, conns, skips, bag):
        if float(msg.orientation_covariance[0]) == -1.0:
            continue
        q = msg.orientation
        t.append(_stamp_ns(msg, tl))
        yaw.append(math.atan2(2.0 * (q.w * q.z + q.x * q.y), 1.0 - 2.0 * (q.y * q.y + q.z * q.z)))
    if not t:
        raise BagError(f"{bag}: no IMU orientation on {conns[0].topic}; pass --heading-topic with a sensor_msgs/Imu")
    order = np.argsort(np.array(t, dtype=np.int64), kind="stable")
    return np.array(t, dtype=np.int64)[order], np.array(yaw, dtype=np.float64)[order]


def heading_at(track: tuple[np.ndarray, np.ndarray], t: int, max_age_ns: int) -> float:
    """The nearest heading to stamp ``t`` (NaN when none is within ``max_age_ns``)."""
    ts, yaw = track
    i = int(np.searchsorted(ts, t))
    best = min((j for j in (i - 1, i) if 0 <= j < len(ts)), key=lambda j: abs(int(ts[j]) - t), default=None)
    return float(yaw[best]) if best is not None and abs(int(ts[best]) - t) <= max_age_ns else math.nan


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
        if not (math.isfinite(alt) and abs(alt) <= 1e5):  # Inf, NaN or beyond 100 km: altitude unknown
            alt = math.nan
        reason = ""
        if int(msg.status.status) < 0:
            reason = "NO_FIX"
        elif not (math.isfinite(lat) and math.isfinite(lon)) or abs(lat) > 90 or abs(lon) > 180:
            reason = "NaN/invalid fix"
        elif int(msg.position_covariance_type) != 0:
            cov = np.asarray(msg.position_covariance, dtype=np.float64)[[0, 4]]
            if (cov < 0).any():  # how some drivers say "unknown", as type 0 does: the fix is not gated by it
                pass
            elif not np.isfinite(cov).all() or math.sqrt(max(cov)) > max_fix_std:
                reason = "fix covariance too large"
        rows.append((_stamp_ns(msg, t), lat, lon, alt, reason))
    if not rows:
        raise BagError(
            f"{bag}: no NavSatFix messages on {conns[0].topic}; record the GNSS topic in the mapping run or pass "
            "--fix-topic"
        )
    stamps = np.array([r[0] for r in rows], dtype=np.int64)
    backwards = int((np.diff(stamps) < 0).sum())
    order = np.argsort(stamps, kind="stable")
    rows = [rows[i] for i in order]
    return FixTrack(
        np.array([r[0] for r in rows], dtype=np.int64),
        np.array([r[1] for r in rows]),
        np.array([r[2] for r in rows]),
        np.array([r[3] for r in rows]),
        [r[4] for r in rows],
        backwards,
    )


def interpolate(
    track: FixTrack, east: np.ndarray, north: np.ndarray, t: int, max_age_ns: int
) -> tuple[float, float, float] | str:
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
    yaw: float = math.nan  # ENU heading from the heading topic, radians; NaN without one


class GeoFrames:
    """Images of a bag paired with interpolated fixes; ``skips`` counts what was left out and why."""

    def __init__(
        self,
        bag: str | Path,
        image_topic: str,
        fix_topic: str,
        max_fix_age: float = 1.0,
        max_fix_std: float = 10.0,
        frame: LocalFrame | None = None,
        heading_topic: str = "",
    ) -> None:
        self.bag, self.image_topic, self.fix_topic = Path(bag), image_topic, fix_topic
        self.max_age_ns = int(max_fix_age * 1e9)
        self.skips = Skips()
        self.frames_read = 0
        self.headings: tuple[np.ndarray, np.ndarray] | None = None
        with open_bag(bag) as reader:
            image_conns = topic_connections(reader, bag, image_topic, IMAGE_TYPES, "--image-topic")
            fix_conns = topic_connections(reader, bag, fix_topic, (NAVSATFIX,), "--fix-topic")
            self.num_images = sum(c.msgcount for c in image_conns)
            self.track = read_fixes(reader, fix_conns, bag, max_fix_std, self.skips)
            if heading_topic:
                imu_conns = topic_connections(reader, bag, heading_topic, (IMU,), "--heading-topic")
                self.headings = read_headings(reader, imu_conns, bag, self.skips)
        ok = self.track.usable()
        if not ok.any():
            raise BagError(
                f"{bag}: none of the {len(ok)} fixes on {fix_topic} is usable "
                f"({Skips(Counter(self.track.reason)).summary()}); check the GNSS"
            )
        first = int(np.argmax(ok))
        # ENU of the map being evaluated, else at the first usable fix: fixes are interpolated in metres there
        self.frame = frame or LocalFrame.at(self.track.lat[first], self.track.lon[first], self.track.alt[first])
        lat = np.where(ok, self.track.lat, self.track.lat[first])
        lon = np.where(ok, self.track.lon, self.track.lon[first])
        self.east, self.north, _ = self.frame.enu(lat, lon)

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
                    yaw = heading_at(self.headings, f.stamp, self.max_age_ns) if self.headings else math.nan
                    yield GeoFrame(f, *pos, yaw)


# ---- writing runs -----------------------------------------------------------------


@dataclass
class FixSample:
    stamp: int  # ns
    lat: float
    lon: float
    alt: float = 0.0
    status: int = 0  # NavSatStatus: -1 NO_FIX, 0 FIX
    std: float = 0.5  # metres, horizontal; written as a diagonal KNOWN covariance
    variance: float | None = None  # written on the whole diagonal instead, as given (some drivers write -1)


def write_run_bag(
    out: str | Path,
    images: list[tuple],
    fixes: list[FixSample],
    image_topic: str = "/camera/image",
    fix_topic: str = "/gps/fix",
    storage: str = "mcap",
    frame_id: str = "camera",
    headings: list[tuple[int, float]] | None = None,
    heading_topic: str = "/imu/data",
) -> Path:
    """A recorded run as a ROS 2 bag: ``(stamp_ns, jpeg/png bytes)`` become CompressedImage, ``(stamp_ns, RGB
    array)`` rgb8 Image; ``headings`` ``(stamp_ns, ENU yaw rad)`` become sensor_msgs/Imu orientations.

    Messages are logged at their stamps (or at an image's optional third element, its receive time).
    Written to a temporary folder, then renamed.
    """
    out = Path(out)
    if out.exists():
        raise VprError(f"{out}: exists; remove it first")
    ts = ros2_types()
    T = ts.types
    compressed = bool(images) and isinstance(images[0][1], bytes | bytearray)
    with staged(out) as tmp, bag_writer(tmp, storage) as w:
        ic = w.add_connection(image_topic, COMPRESSED if compressed else IMAGE, typestore=ts)
        fc = w.add_connection(fix_topic, NAVSATFIX, typestore=ts)
        msgs: list[tuple[int, Any, bytes]] = []
        for item in images:
            stamp, data = item[0], item[1]
            logtime = item[2] if len(item) > 2 else stamp  # a third element: a receive time other than the stamp
            if compressed:
                fmt = "png" if bytes(data[:4]) == b"\x89PNG" else "jpeg"
                m = T[COMPRESSED](
                    header=msg_header(T, stamp, frame_id), format=fmt, data=np.frombuffer(bytes(data), dtype=np.uint8)
                )
                msgs.append((logtime, ic, ts.serialize_cdr(m, COMPRESSED)))
            else:
                h, wd = data.shape[:2]
                m = T[IMAGE](
                    header=msg_header(T, stamp, frame_id),
                    height=h,
                    width=wd,
                    encoding="rgb8",
                    is_bigendian=0,
                    step=wd * 3,
                    data=np.ascontiguousarray(data, dtype=np.uint8).reshape(-1),
                )
                msgs.append((logtime, ic, ts.serialize_cdr(m, IMAGE)))
        for f in fixes:
            diag = [f.std**2, f.std**2, (2 * f.std) ** 2] if f.variance is None else [f.variance] * 3
            cov = np.diag(diag).reshape(-1).astype(np.float64)
            m = T[NAVSATFIX](
                header=msg_header(T, f.stamp, "gps"),
                status=T["sensor_msgs/msg/NavSatStatus"](status=f.status, service=1),
                latitude=f.lat,
                longitude=f.lon,
                altitude=f.alt,
                position_covariance=cov,
                position_covariance_type=2,
            )
            msgs.append((f.stamp, fc, ts.serialize_cdr(m, NAVSATFIX)))
        if headings:
            hc = w.add_connection(heading_topic, IMU, typestore=ts)
            vec = T["geometry_msgs/msg/Vector3"]
            for stamp, yaw in headings:
                m = T[IMU](
                    header=msg_header(T, stamp, "imu"),
                    orientation=T["geometry_msgs/msg/Quaternion"](
                        x=0.0, y=0.0, z=math.sin(yaw / 2), w=math.cos(yaw / 2)
                    ),
                    orientation_covariance=np.diag([1e-3, 1e-3, 1e-2]).reshape(-1),
                    angular_velocity=vec(x=0.0, y=0.0, z=0.0),
                    angular_velocity_covariance=np.zeros(9),
                    linear_acceleration=vec(x=0.0, y=0.0, z=9.81),
                    linear_acceleration_covariance=np.zeros(9),
                )
                msgs.append((stamp, hc, ts.serialize_cdr(m, IMU)))
        for stamp, c, data in sorted(msgs, key=lambda x: x[0]):
            w.write(c, max(stamp, 1), data)
    return out
