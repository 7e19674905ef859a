"""``vpr play BAG``: publish a recorded run over DDS with the pip rclpy, as ``ros2 bag play`` would.

Messages go out as recorded (their serialized bytes, no re-encoding) at the recorded
pace scaled by ``--rate``, and ``/clock`` follows the bag's time, so a node started
with ``use_sim_time:=true`` runs as on the robot. Publishers are reliable (large
images over best-effort are mostly lost with Fast DDS defaults); ``--wait`` holds the
start until a subscriber is matched on every image topic so no frame is played to nobody.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from collections.abc import Callable
from pathlib import Path

import rclpy
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock

from vpr_core.cli.common import positive_float
from vpr_core.errors import VprError
from vpr_core.io.bags import IMAGE_TYPES, cdr_bytes, msgtype_of, open_bag


def message_class(msgtype: str):
    """``pkg/msg/Name`` -> the rclpy message class, or None when its package is not installed."""
    pkg, _, name = msgtype.split("/")
    try:
        return getattr(importlib.import_module(f"{pkg}.msg"), name)
    except (ImportError, AttributeError):
        return None


def play(  # noqa: C901 (one pass over a bag with every playback option)
    bag: str | Path,
    topics: list[str] | None = None,
    rate: float = 1.0,
    clock: bool = True,
    clock_hz: float = 100.0,
    wait: float = 0.0,
    depth: int = 10,
    quiet: bool = False,
    on_publish: Callable[[str, int], None] | None = None,
) -> int:
    """Publish ``bag``; returns the number of messages published. ``on_publish(topic, bag_time_ns)`` runs right after
    each publish."""
    if rate <= 0:
        raise VprError(f"--rate must be > 0, got {rate}")
    rclpy.init()
    node = rclpy.create_node("vpr_player")
    log = node.get_logger()
    qos = QoSProfile(
        depth=depth,
        history=HistoryPolicy.KEEP_LAST,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.VOLATILE,
    )
    sent = 0
    try:
        with open_bag(bag) as reader:
            have = sorted({c.topic for c in reader.connections})
            unknown = sorted(set(topics or []) - set(have))
            if unknown:
                raise VprError(f"{bag}: no topic {', '.join(unknown)}; topics in this bag: {', '.join(have)}")
            conns, pubs = [], {}
            for c in reader.connections:
                if topics and c.topic not in topics:
                    continue
                cls = message_class(msgtype_of(c))
                if cls is None:
                    log.warn(f"{c.topic}: message type {msgtype_of(c)} is not installed here; not played")
                    continue
                conns.append(c)
                if c.topic not in pubs:
                    pubs[c.topic] = node.create_publisher(cls, c.topic, qos)
            if not conns:
                raise VprError(f"{bag}: nothing to play (topics: {', '.join(have)})")
            clock_pub = (
                node.create_publisher(Clock, "/clock", QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))
                if clock
                else None
            )
            if wait > 0:
                image_pubs = [pubs[c.topic] for c in conns if msgtype_of(c) in IMAGE_TYPES] or list(pubs.values())
                t_end = time.monotonic() + wait
                while any(p.get_subscription_count() == 0 for p in image_pubs):
                    if time.monotonic() > t_end:
                        raise VprError(
                            "no subscriber matched on "
                            f"{', '.join(p.topic_name for p in image_pubs if p.get_subscription_count() == 0)} within "
                            f"{wait:g} s"
                        )
                    time.sleep(0.02)
            if not quiet:
                log.info(f"playing {bag}: {', '.join(sorted(pubs))} at rate {rate:g}{' with /clock' if clock else ''}")

            def tick(bag_ns: int) -> None:
                if clock_pub is not None:
                    m = Clock()
                    m.clock.sec, m.clock.nanosec = divmod(int(bag_ns), 1_000_000_000)
                    clock_pub.publish(m)

            wall0 = bag0 = None
            for c, t, raw in reader.messages(connections=conns):
                if wall0 is None:
                    wall0, bag0 = time.monotonic(), t
                due = wall0 + (t - bag0) / 1e9 / rate
                while (now := time.monotonic()) < due:  # keep /clock moving between messages
                    tick(bag0 + int((now - wall0) * rate * 1e9))
                    time.sleep(min(1.0 / clock_hz, due - now))
                tick(t)
                pubs[c.topic].publish(cdr_bytes(reader, c, raw))
                sent += 1
                if on_publish is not None:
                    on_publish(c.topic, t)
            time.sleep(0.2)  # let reliable writers hand the last samples over
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    if not quiet:
        print(f"played {sent} messages from {bag}")
    return sent


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bag", metavar="BAG", help="ROS 2 bag (folder, .mcap or .db3) or ROS 1 .bag")
    p.add_argument(
        "--topics", nargs="+", metavar="T", help="play only these topics (default: all whose types are installed)"
    )
    p.add_argument("--rate", type=positive_float, default=1.0, help="playback speed factor (default 1)")
    p.add_argument("--no-clock", action="store_true", help="do not publish /clock")
    p.add_argument("--clock-hz", type=positive_float, default=100.0, help="/clock rate between messages (default 100)")
    p.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="S",
        help="wait up to S seconds for a subscriber on each image topic before playing",
    )
    p.add_argument("-q", "--quiet", action="store_true")


def run(args: argparse.Namespace) -> int:
    play(args.bag, args.topics, args.rate, not args.no_clock, args.clock_hz, args.wait, quiet=args.quiet)
    return 0


def register(sub) -> None:
    """Entry point of the ``vpr`` CLI (group ``vpr.commands``): adds ``vpr play``."""
    p = sub.add_parser(
        "play", help="publish a bag's messages (and /clock) over DDS", description=__doc__.split("\n\n")[0]
    )
    add_arguments(p)
    p.set_defaults(func=run)


def main(argv: list[str] | None = None) -> int:
    """``ros2 run vpr_ros player BAG`` / ``python -m vpr_ros.player BAG``."""
    from vpr_core.cli import main as vpr_main

    return vpr_main(["play", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
