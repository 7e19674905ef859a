#!/usr/bin/env python3
"""Sequence localization (``temporal: hmm``) against single frames, on the real sets and at scale.

    python bench/bench_sequence.py ../shared/datasets [--json OUT.json] [--plot OUT.png] [--scale 100000]

For each set, a map straight from ``vpr map build`` (corridor and triplets with the default xfeat-vlad, nordland
with the weight-free SeqSLAM-style ``thumbnail`` and with xfeat-vlad), queries in their recorded order (the
original-name field; triplets shuffled with seed 0, the unordered-input check), 1 s apart, ``--rerank none``:
R@1 single frame vs filtered, the frame of the first right STATUS_FIX, the frame from which 10 in a row are right
(locked), and the share of frames the track answered. Kidnap: on nordland, the first 200 queries, then the robot is
carried to query 300 (ahead) or 50 (back); recovery = frames from the jump until the output is right for 5 frames
in a row. Cost: the filter's step alone on a synthetic map of ``--scale`` places (a Manhattan grid of streets, 10 m
spacing, random 2048-d unit descriptors as the default global model's), a robot driving a street at 12 m/s with
weak frames; p50/p95 ms per frame over the first and the last 200 frames (no growth with track length). Ends with
one summary line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vpr_core.eval.recall import evaluate
from vpr_core.io.geoset import in_sequence, load_geoset
from vpr_core.io.images import load_image
from vpr_core.localize.localizer import Localizer
from vpr_core.localize.temporal import HmmFilter
from vpr_core.map.build import build_and_save

# set -> (threshold m, shuffle seed or None, models)
SETS = {
    "corridor": (2.5, None, ["xfeat-vlad"]),
    "triplets": (25.0, 0, ["xfeat-vlad"]),
    "nordland": (25.0, None, ["thumbnail", "xfeat-vlad"]),
}


def run_set(root: Path, name: str, model: str, tmp: Path, device: str) -> tuple[dict, list, object, object]:
    thr, shuffle, _ = SETS[name]
    base = root / name / "images" / "test"
    db = load_geoset(base / "database")
    q = in_sequence(load_geoset(base / "queries", frame=db.frame), shuffle)
    vmap = build_and_save(db, tmp / f"{name}-{model}.vprmap", model=model, device=device, source=str(base))
    row = {"set": name, "model": model, "queries": len(q.paths), "shuffled": shuffle is not None}
    out = {}
    for temporal in ("none", "hmm"):
        rep, est = evaluate(Localizer(vmap, device=device, temporal=temporal), q, thr, progress=False)
        out[temporal] = est
        row[f"r1_{temporal}"] = rep["recall@1"]
        row[f"first_fix_{temporal}"] = rep["first_correct_fix"]
        row[f"lock_{temporal}"] = rep["locked_frame"]
        if temporal == "hmm":
            row["tracked_pct"] = rep["tracked_pct"]
            row["temporal_ms_p50"] = rep["latency_ms"]["temporal"]["p50"]
            row["coverage_2sigma"] = rep["covariance"]["coverage_2sigma"]
    return row, out, q, vmap


def kidnap(vmap, q, thr: float, device: str, jump_at: int = 200, to: int = 300) -> dict:
    """Frames 0..jump_at-1, then the robot is carried to query ``to`` (ahead or back): frames to recover."""
    loc = Localizer(vmap, device=device, temporal="hmm")
    order = list(range(jump_at)) + list(range(to, min(to + 100, len(q.paths))))
    ok = []
    for n, i in enumerate(order):
        e = loc.localize(load_image(q.paths[i]), k=20, stamp=float(n))
        ok.append(bool(np.hypot(e.east - q.east[i], e.north - q.north[i]) <= thr))
    rec = next((n - jump_at for n in range(jump_at, len(ok) - 4) if all(ok[n : n + 5])), -1)
    return {"to": to, "recovery_frames": rec, "r1_after": float(100 * np.mean(ok[jump_at:]))}


def scale_cost(n: int, frames: int = 600, seed: int = 0) -> dict:
    """The filter's step alone on a synthetic city of ``n`` places; p50/p95 ms early and late in the run."""
    rng = np.random.default_rng(seed)
    side = int(np.ceil(np.sqrt(n / 2)))  # n places on ``side`` east-west and ``side`` north-south streets
    streets = np.arange(side) * 100.0  # a street every 100 m, places every 10 m along them
    along = np.arange(0, side * 100.0, 10.0)
    ew = np.stack(np.meshgrid(along, streets), -1).reshape(-1, 2)
    ns = np.stack(np.meshgrid(streets, along), -1).reshape(-1, 2)
    xy = np.unique(np.concatenate([ew, ns]), axis=0)[:n]
    desc = rng.standard_normal((len(xy), 2048), dtype=np.float32)
    desc /= np.linalg.norm(desc, axis=1, keepdims=True)
    f = HmmFilter(xy, desc)
    # drive east along the first street at 12 m/s (places 1.2 spacings apart per frame), weak frames
    y0 = streets[0]
    route = np.nonzero(xy[:, 1] == y0)[0]
    route = route[np.argsort(xy[route, 0])]
    js, pos = [], 0.0
    for _ in range(frames):
        pos = (pos + 12.0) % (len(route) * 10.0 - 20.0)
        js.append(route[int(round(pos / 10.0))])
    qs = 0.15 * desc[js] + rng.standard_normal((frames, 2048), dtype=np.float32) / np.sqrt(2048)
    qs /= np.linalg.norm(qs, axis=1, keepdims=True)
    # the retrieval first, in one batch (not timed: the pipeline's search does it), then the filter alone
    ids = np.argpartition(-(qs @ desc.T), 20, axis=1)[:, :20]
    times = []
    for t in range(frames):
        t0 = time.perf_counter()
        f.step(qs[t], ids[t], float(t))
        times.append((time.perf_counter() - t0) * 1e3)
    early, late = np.array(times[:200]), np.array(times[-200:])
    return {
        "places": len(xy),
        "p50_ms_first200": float(np.percentile(early, 50)),
        "p95_ms_first200": float(np.percentile(early, 95)),
        "p50_ms_last200": float(np.percentile(late, 50)),
        "p95_ms_last200": float(np.percentile(late, 95)),
    }


def plot_track(q, est_single, est_hmm, thr: float, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    truth = np.hypot(q.east, q.north)
    n = np.arange(len(truth))
    fig, ax = plt.subplots(figsize=(10, 4.5))
    ax.plot(n, truth / 1000, "k-", lw=2, label="ground truth")
    s = np.array([np.hypot(e.east, e.north) for e in est_single]) / 1000
    h = np.array([np.hypot(e.east, e.north) for e in est_hmm]) / 1000
    ax.plot(n, s, ".", color="tab:gray", ms=3, label="single frame")
    ok = np.abs(h - truth / 1000) <= thr / 1000
    ax.plot(n[ok], h[ok], ".", color="tab:green", ms=4, label="temporal hmm (correct)")
    ax.plot(n[~ok], h[~ok], "x", color="tab:red", ms=5, label="temporal hmm (wrong)")
    ax.set_xlabel("query frame (winter, 40 m apart)")
    ax.set_ylabel("distance along the line (km)")
    ax.set_title("Nordland: filtered track against ground truth")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("root", type=Path, help="folder holding <set>/images/test/{database,queries}")
    ap.add_argument("--sets", nargs="*", default=list(SETS))
    ap.add_argument("--scale", type=int, default=100_000, help="places of the synthetic map for the cost (0: skip)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--plot", type=Path, help="PNG of the nordland track against ground truth")
    args = ap.parse_args()
    torch.set_num_threads(2)
    rows, extra = [], {}
    print(
        f"{'set':20s} {'model':11s} {'q':>4s} {'R@1 single':>10s} {'R@1 hmm':>8s} {'1st right FIX':>13s} "
        f"{'locked':>9s} {'tracked':>8s}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.sets:
            for model in SETS[name][2]:
                row, est, q, vmap = run_set(args.root, name, model, Path(tmp), args.device)
                rows.append(row)
                label = f"{name}{' (shuffled)' if row['shuffled'] else ''}"
                print(
                    f"{label:20s} {model:11s} {row['queries']:4d} {row['r1_none']:10.1f} {row['r1_hmm']:8.1f} "
                    f"{row['first_fix_none']:6d}/{row['first_fix_hmm']:<6d} "
                    f"{row['lock_none']:4d}/{row['lock_hmm']:<4d} {row['tracked_pct']:7.1f}%",
                    flush=True,
                )
                if name == "nordland" and model == "thumbnail":
                    extra["kidnap"] = [kidnap(vmap, q, SETS[name][0], args.device, 200, to) for to in (300, 50)]
                    for k in extra["kidnap"]:
                        print(
                            f"  kidnap on nordland: at frame 200 carried to query {k['to']}: right again (5 in a row) "
                            f"after {k['recovery_frames']} frames; R@1 of the 100 frames after {k['r1_after']:.1f}",
                            flush=True,
                        )
                    if args.plot:
                        plot_track(q, est["none"], est["hmm"], SETS[name][0], args.plot)
                        print(f"  plot: {args.plot}")
    if args.scale:
        extra["scale"] = scale_cost(args.scale)
        print(f"  filter cost on a {extra['scale']['places']}-place map: {extra['scale']}", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, **extra}, indent=1))
    by = {(r["set"], r["model"]): r for r in rows}
    parts = [f"{s}/{m} {r['r1_none']:.1f}->{r['r1_hmm']:.1f}" for (s, m), r in by.items()]
    cost = extra.get("scale", {})
    print(
        "summary: R@1 single->hmm "
        + ", ".join(parts)
        + (
            "; kidnap recovery " + "/".join(str(k["recovery_frames"]) for k in extra["kidnap"]) + " frames (ahead/back)"
            if "kidnap" in extra
            else ""
        )
        + (f"; {cost['places']} places p50 {cost['p50_ms_last200']:.2f} ms/frame" if cost else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
