"""Offline replay of a bag: every frame localized as the node would, scored against the bag's own fixes.

``write_estimates_bag`` copies the input bag and adds what the node would have
published for each frame (``/vpr/fix``, ``/vpr/pose``), to inspect in Foxglove or RViz.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ..errors import VprError
from ..io.bags import (
    NAVSATFIX,
    BagError,
    GeoFrame,
    GeoFrames,
    Skips,
    bag_writer,
    cdr_bytes,
    msg_header,
    msgtype_of,
    open_bag,
    read_odometry,
    ros2_types,
)
from ..io.files import staged
from ..localize.outputs import COVARIANCE_TYPE_KNOWN, MAP_FRAME, fix_fields, fix_frame_id, pose_fields, publishes_pose
from ..localize.temporal import OdomTrack
from .recall import RECALL_NS, localizer_info, sequence_info, summarize

__all__ = ["BagEval", "evaluate_bag", "write_estimates_bag"]


@dataclass
class BagEval:
    report: dict[str, Any]
    estimates: list  # Estimate per scored frame
    true_xy: np.ndarray
    all_estimates: list  # (Frame, Estimate) for every localized frame, scored or not
    skips: Skips


def evaluate_bag(
    localizer,
    bag: str | Path,
    image_topic: str,
    fix_topic: str,
    threshold: float,
    max_fix_age: float = 1.0,
    max_fix_std: float = 10.0,
    progress: bool = True,
    odom_topic: str = "",
) -> BagEval:
    """Replay every image through the localizer as the robot would (in stamp order, with the odometry of
    ``odom_topic`` for a temporal filter); score those with ground truth."""
    src = GeoFrames(bag, image_topic, fix_topic, max_fix_age, max_fix_std, frame=localizer.map.frame)
    odom = None
    if odom_topic:
        odom = OdomTrack(horizon=float("inf"))
        for row in read_odometry(bag, odom_topic):
            odom.add(*row)
    k = max(localizer.top_k, max(RECALL_NS))
    scored, truth, everything = [], [], []
    prev = None
    t0 = time.perf_counter()
    for item in tqdm(src, total=src.num_images, desc="replay", unit="img", disable=not progress):
        f = item.frame if isinstance(item, GeoFrame) else item
        stamp = f.stamp * 1e-9
        motion = odom.motion(prev, stamp) if odom is not None else None
        prev = stamp
        est = localizer.localize(f.image, k=k, stamp=stamp, motion=motion)
        everything.append((f, est))
        if isinstance(item, GeoFrame):
            scored.append(est)
            truth.append((item.east, item.north))
    wall = time.perf_counter() - t0
    if not scored:
        raise BagError(
            f"{bag}: no frame has ground truth (skipped: {src.skips.summary()}); check --fix-topic and --max-fix-age"
        )
    true_xy = np.array(truth)
    report = summarize(scored, true_xy, threshold, localizer.map.xy, localizer.config.min_confidence)
    report |= localizer_info(localizer) | sequence_info(scored, true_xy, threshold, localizer.config.min_confidence)
    report |= {
        "bag": str(bag),
        "image_topic": image_topic,
        "fix_topic": fix_topic,
        "frames_localized": len(everything),
        "frames_skipped": dict(src.skips.counts),
        "throughput_fps": len(everything) / wall if wall > 0 else float("nan"),
    }
    return BagEval(report, scored, true_xy, everything, src.skips)


def write_estimates_bag(
    src: str | Path,
    out: str | Path,
    results: list,
    min_confidence: float = 0.0,
    prefix: str = "/vpr",
    map_frame: str = MAP_FRAME,
    storage: str = "mcap",
    fix_frame: str = "",
    pose_when_lost: bool = False,
) -> int:
    """Copy every message of ``src`` into a new ROS 2 bag at ``out`` and add the estimates as NavSatFix +
    PoseWithCovarianceStamped.

    The numbers, frames and the pose-only-with-a-FIX rule are the node's (``localize.outputs``).
    Written to a temporary folder beside ``out`` and renamed when complete.
    """
    out = Path(out)
    if out.exists():
        raise VprError(f"{out}: exists; remove it or choose another --out-bag")
    ts = ros2_types()
    T = ts.types
    POSE = "geometry_msgs/msg/PoseWithCovarianceStamped"
    n = 0
    with staged(out) as tmp, open_bag(src) as reader, bag_writer(tmp, storage) as w:
        conns = {}
        for c in reader.connections:
            if (c.topic, c.msgtype) not in conns:
                conns[(c.topic, c.msgtype)] = w.add_connection(
                    c.topic, msgtype_of(c), typestore=reader.typestore if reader.is2 else ts
                )
        for c, t, raw in reader.messages():
            w.write(conns[(c.topic, c.msgtype)], t, cdr_bytes(reader, c, raw))
            n += 1
        fix_c = w.add_connection(f"{prefix}/fix", NAVSATFIX, typestore=ts)
        pose_c = w.add_connection(f"{prefix}/pose", POSE, typestore=ts)
        for f, est in results:
            ff, pf = fix_fields(est, min_confidence), pose_fields(est)
            fix = T[NAVSATFIX](
                header=msg_header(T, f.stamp, fix_frame_id(fix_frame, f.frame_id)),
                status=T["sensor_msgs/msg/NavSatStatus"](status=ff.status, service=0),
                latitude=ff.latitude,
                longitude=ff.longitude,
                altitude=ff.altitude,
                position_covariance=np.array(ff.covariance, dtype=np.float64),
                position_covariance_type=COVARIANCE_TYPE_KNOWN,
            )
            position = T["geometry_msgs/msg/Point"](x=pf.position[0], y=pf.position[1], z=pf.position[2])
            pose = T["geometry_msgs/msg/Pose"](
                position=position, orientation=T["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0)
            )
            msg = T[POSE](
                header=msg_header(T, f.stamp, map_frame),
                pose=T["geometry_msgs/msg/PoseWithCovariance"](pose=pose, covariance=np.array(pf.covariance)),
            )
            w.write(fix_c, f.logtime, ts.serialize_cdr(fix, NAVSATFIX))
            n += 1
            if publishes_pose(ff, pose_when_lost):
                w.write(pose_c, f.logtime, ts.serialize_cdr(msg, POSE))
                n += 1
    return n
