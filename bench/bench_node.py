#!/usr/bin/env python3
"""The node over real DDS on this machine: publish->fix latency, flood behaviour, memory.

    python bench/bench_node.py [--frames 100] [--flood 200] [--flood-hz 125] [--size 640x480] [--reranker auto]
    python bench/bench_node.py --accuracy ../shared/datasets/corridor --threshold 2.5 [--size 640x480]

With --accuracy SET (a VPR-convention set: SET/images/test/{database,queries}) the node localizes every query,
upscaled to --size, one at a time over DDS, and R@1 (fix within --threshold of the truth) is reported instead.

Uses the synthetic street (rendered, then upscaled to --size so messages have a
camera-like size). Prints a table and a one-line summary.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vpr_core.demo import generate
from vpr_core.io.geoset import in_sequence, load_geoset
from vpr_core.map.build import build_and_save
from vpr_core.rerank import map_local_for
from vpr_ros.harness import NodeProcess, Peer, new_domain


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--flood", type=int, default=200)
    ap.add_argument("--flood-hz", type=float, default=125.0)
    ap.add_argument("--size", default="640x480")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--reranker", default="auto", help="the node's re-ranker (default: the node's default, auto)")
    ap.add_argument("--accuracy", type=Path, metavar="SET", help="report the node's R@1 on this labelled set instead")
    ap.add_argument("--threshold", type=float, default=25.0, help="with --accuracy: positive radius, metres")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    if args.accuracy:
        return accuracy(args, w, h)
    tmp = Path(tempfile.mkdtemp(prefix="vpr_bench_node_"))
    db_run, q_run, _ = generate(tmp, seed=11, n_map=60, n_query=30)
    map_path = tmp / "m.vprmap"
    build_and_save(
        load_geoset(db_run.folder),
        map_path,
        device=args.device,
        local=map_local_for([args.reranker]),
    )
    frames = [cv2.resize(im, (w, h)) for im in q_run.images]
    node, peer = start(args, tmp, map_path)
    try:
        lat = []
        for i in range(args.frames):
            t = time.monotonic()
            peer.pub.publish(peer.raw(frames[i % len(frames)], i))
            if not peer.wait_for(lambda i=i: len(peer.fixes) > i, 30):
                raise SystemExit(f"no fix for frame {i}")
            lat.append((peer.fixes[i][0] - t) * 1e3)
        n0 = len(peer.fixes)
        time.sleep(1.2)
        rss0 = node.rss_kib()
        base = 10_000
        sent = {}
        t0 = time.monotonic()
        for j in range(args.flood):
            sent[base + j] = time.monotonic()
            peer.pub.publish(peer.raw(frames[j % len(frames)], base + j))
            time.sleep(max(0.0, t0 + (j + 1) / args.flood_hz - time.monotonic()))
        pub_hz = args.flood / (time.monotonic() - t0)
        last = 1000 + base + args.flood - 1
        peer.wait_for(lambda: peer.fixes[-1][1].header.stamp.sec == last, 30)
        time.sleep(1.5)
        rss1 = node.rss_kib()
        flood_fixes = peer.fixes[n0:]
        flood_lat = [(t - sent[f.header.stamp.sec - 1000]) * 1e3 for t, f in flood_fixes]
        d = peer.last_diag()
        answered = len(flood_fixes)
    finally:
        peer.close()
        node.stop()
    p50, p95 = np.percentile(lat, 50), np.percentile(lat, 95)
    print(f"frames {w}x{h} rgb8 over Fast DDS (reliable), device {args.device}")
    print(f"{'measure':42s} {'value':>12s}")
    print(f"{'publish->fix latency p50 (one at a time)':42s} {p50:10.1f} ms")
    print(f"{'publish->fix latency p95':42s} {p95:10.1f} ms")
    print(
        f"{'node stage latency total p50/p95':42s} {d.get('latency_total_ms_p50')}/{d.get('latency_total_ms_p95')} ms"
    )
    print(f"{'flood: published':42s} {args.flood:8d} @ {pub_hz:.0f} Hz")
    print(f"{'flood: answered':42s} {answered:12d}")
    print(f"{'flood: dropped (not answered)':42s} {100 * (1 - answered / args.flood):10.1f} %")
    print(f"{'flood: node-counted drops (busy)':42s} {d.get('frames_dropped_busy'):>12s}")
    print(
        f"{'flood: publish->fix latency p50/p95/max':42s} "
        f"{np.percentile(flood_lat, 50):.0f}/{np.percentile(flood_lat, 95):.0f}/{max(flood_lat):.0f} ms"
    )
    print(f"{'node RSS before/after flood':42s} {rss0 / 1024:.0f}/{rss1 / 1024:.0f} MiB")
    print(
        f"summary: latency p50 {p50:.0f} ms p95 {p95:.0f} ms; flood {args.flood}@{pub_hz:.0f} Hz -> {answered} "
        "answered "
        f"({100 * (1 - answered / args.flood):.0f}% dropped), max latency {max(flood_lat):.0f} ms; RSS "
        f"{rss0 / 1024:.0f} -> {rss1 / 1024:.0f} MiB"
    )
    return 0


def start(args: argparse.Namespace, tmp: Path, map_path: Path) -> tuple[NodeProcess, Peer]:
    """The node on ``map_path`` (its log in ``tmp``) and a connected peer on a private domain."""
    domain = new_domain()
    node = NodeProcess(
        domain, tmp / "node.log", map_path=map_path, image_topic="/cam", device=args.device, reranker=args.reranker
    )
    node.wait_ready()
    peer = Peer(domain, topic="/cam")
    peer.wait_matched()
    return node, peer


def accuracy(args: argparse.Namespace, w: int, h: int) -> int:
    """R@1 of the node's fixes on a labelled set, every query upscaled to w x h and sent over DDS."""
    from vpr_core.io.images import load_image
    from vpr_core.map.format import load_map

    tmp = Path(tempfile.mkdtemp(prefix="vpr_bench_node_"))
    base = args.accuracy / "images" / "test"
    map_path = tmp / "m.vprmap"
    build_and_save(
        load_geoset(base / "database"),
        map_path,
        device=args.device,
        local=map_local_for([args.reranker]),
    )
    vmap = load_map(map_path)
    q = in_sequence(load_geoset(base / "queries", frame=vmap.frame))  # as recorded: the temporal filter sees order
    node, peer = start(args, tmp, map_path)
    hits, lat = [], []
    try:
        for i, path in enumerate(q.paths):
            t = time.monotonic()
            peer.pub.publish(peer.raw(cv2.resize(load_image(path), (w, h), interpolation=cv2.INTER_LINEAR), i))
            if not peer.wait_for(lambda i=i: len(peer.fixes) > i, 30):
                raise SystemExit(f"no fix for query {i}")
            fix = peer.fixes[i][1]
            lat.append((peer.fixes[i][0] - t) * 1e3)
            e, n, _ = vmap.frame.enu(fix.latitude, fix.longitude)
            hits.append(float(np.hypot(e[0] - q.east[i], n[0] - q.north[i])) <= args.threshold)
        peer.wait_for(lambda: "reranker_auto" in peer.last_diag(), 5)
        choice = peer.last_diag().get("reranker_auto", args.reranker)
    finally:
        peer.close()
        node.stop()
    r1 = 100.0 * float(np.mean(hits))
    p50, p95 = np.percentile(lat, 50), np.percentile(lat, 95)
    print(f"node on {args.accuracy.name} ({len(hits)} queries at {w}x{h}): R@1 {r1:.1f} at {args.threshold:g} m; "
          f"publish->fix p50 {p50:.0f} ms p95 {p95:.0f} ms; {choice}")  # fmt: skip
    print(f"summary: node R@1 {r1:.1f} on {args.accuracy.name}, latency p50 {np.percentile(lat, 50):.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
