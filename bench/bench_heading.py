#!/usr/bin/env python3
"""Heading from matches: the camera's yaw from the leading map image's heading and the relative rotation.

    python bench/bench_heading.py ../shared/datasets [--json OUT.json] [--fov 90]

street: the rendered street (``vpr_core.demo``, seed 3: 60 map frames 2 m apart facing east, 60 queries 1 m to the
side, darker, occluded, each turned by a known yaw, N(0, 4 deg)); headings stored from the file names' heading
field, field of view 90 deg (the renderer's). corridor: the shared set; map headings from the direction of travel
(``travel``), true query heading the corridor's direction; its camera's field of view is not published, ``--fov``
(default 90) is assumed. Per set: frames with a heading (>= 30 essential-matrix inliers), median and p90 absolute
yaw error, the share within 5 deg, and the share of errors inside 2 measured sigmas; the localizer runs with
``reranker: ransac`` (the grids the heading matches come with it). Ends with one summary line.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vpr_core.demo import generate
from vpr_core.io.geoset import in_sequence, load_geoset
from vpr_core.io.images import load_image
from vpr_core.localize.heading import wrap
from vpr_core.localize.localizer import Localizer
from vpr_core.map.build import build_and_save


def measure(vmap, images: list, truth: np.ndarray, fov: float) -> dict:
    loc = Localizer(vmap, device="cpu", reranker="ransac", camera_fov=fov)
    err, z, ms = [], [], []
    for img, yaw in zip(images, truth):
        e = loc.localize(img)
        ms.append(e.timings.get("heading", 0.0))
        if math.isfinite(e.yaw):
            d = abs(wrap(e.yaw - yaw))
            err.append(math.degrees(d))
            z.append(d / math.sqrt(e.yaw_var))
    err_a = np.array(err)
    return {
        "frames": len(images),
        "with_heading": len(err),
        "median_deg": float(np.median(err_a)) if len(err) else None,
        "p90_deg": float(np.percentile(err_a, 90)) if len(err) else None,
        "within_5deg_pct": float(100 * np.mean(err_a <= 5.0)) if len(err) else None,
        "inside_2sigma_pct": float(100 * np.mean(np.array(z) <= 2.0)) if len(err) else None,
        "heading_ms_p50": float(np.median(ms)),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("datasets", type=Path, nargs="?", help="folder holding corridor/images/test (optional)")
    ap.add_argument("--fov", type=float, default=90.0, help="corridor camera's horizontal field of view, deg")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "street"
        db, q, _ = generate(root, seed=3, n_map=60, n_query=60)
        vmap = build_and_save(load_geoset(root / "database"), Path(tmp) / "street.vprmap", device="cpu",
                              source=str(root / "database"))  # fmt: skip
        rows.append({"set": "street", "map_headings": vmap.headings.source} | measure(vmap, q.images, q.yaw, 90.0))
        base = args.datasets / "corridor" / "images" / "test" if args.datasets else None
        if base is not None and base.is_dir():
            geo = load_geoset(base / "database")
            cmap = build_and_save(geo, Path(tmp) / "corridor.vprmap", device="cpu", source=str(base))
            qs = in_sequence(load_geoset(base / "queries", frame=geo.frame))
            truth = np.full(len(qs.paths), math.atan2(qs.north[-1] - qs.north[0], qs.east[-1] - qs.east[0]))
            images = [load_image(p) for p in qs.paths]
            rows.append(
                {"set": "corridor", "map_headings": cmap.headings.source} | measure(cmap, images, truth, args.fov)
            )
    cols = ["set", "map_headings", "frames", "with_heading", "median_deg", "p90_deg", "within_5deg_pct",
            "inside_2sigma_pct", "heading_ms_p50"]  # fmt: skip
    print(" | ".join(cols))
    for r in rows:
        print(" | ".join(f"{r[c]:.1f}" if isinstance(r[c], float) else str(r[c]) for c in cols))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    summary = ", ".join(
        f"{r['set']} median yaw error {r['median_deg']:.1f} deg over {r['with_heading']}/{r['frames']} frames"
        if r["median_deg"] is not None
        else f"{r['set']} no heading"
        for r in rows
    )
    print(f"summary: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
