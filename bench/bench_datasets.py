#!/usr/bin/env python3
"""Recall on the real VPR sets in ../shared/datasets (or any folder in the VPR convention).

    python bench/bench_datasets.py ../shared/datasets [--model xfeat-vlad] [--set key=value ...]

Each set is evaluated at its own positive radius (corridor 2.5 m, triplets 25 m; see
shared/README.md). Prints one row per set and ends with a one-line summary.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vpr_core.config import parse_sets
from vpr_core.eval.recall import evaluate
from vpr_core.io.geoset import load_geoset
from vpr_core.localize.localizer import Localizer
from vpr_core.map.build import build_and_save

SETS = {"corridor": 2.5, "triplets": 25.0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("root", type=Path, help="folder holding <set>/images/test/{database,queries}")
    ap.add_argument("--model", default="xfeat-vlad")
    ap.add_argument("--set", action="append", metavar="KEY=VALUE", help="model option")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--sets", nargs="*", default=list(SETS))
    args = ap.parse_args()
    torch.set_num_threads(2)
    conf = parse_sets(args.set)
    rows = []
    print(f"model {args.model} {conf or ''} on {args.device}, torch threads {torch.get_num_threads()}")
    print(
        f"{'set':10s} {'db':>5s} {'q':>5s} {'thr m':>6s} {'R@1':>6s} {'R@5':>6s} {'R@10':>6s} {'R@20':>6s} "
        f"{'med m':>6s} {'build s':>8s} {'ms/q p50':>9s} {'p95':>6s}"
    )
    for name in args.sets:
        base = args.root / name / "images" / "test"
        db = load_geoset(base / "database")
        q = load_geoset(base / "queries", frame=db.frame)
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            vmap = build_and_save(db, Path(tmp) / "m.vprmap", model=args.model, model_options=conf, device=args.device)
            build_s = time.perf_counter() - t
        rep, _ = evaluate(Localizer(vmap, device=args.device), q, SETS.get(name, 25.0), progress=False)
        lat = rep["latency_ms"]["total"]
        rows.append((name, rep))
        print(
            f"{name:10s} {len(db.paths):5d} {len(q.paths):5d} {rep['threshold_m']:6.1f} {rep['recall@1']:6.1f} "
            f"{rep['recall@5']:6.1f} "
            f"{rep['recall@10']:6.1f} {rep['recall@20']:6.1f} {rep['median_error_m']:6.2f} {build_s:8.1f} "
            f"{lat['p50']:9.1f} {lat['p95']:6.1f}"
        )
    print(
        "summary: "
        + ", ".join(f"{n} R@1 {r['recall@1']:.1f} (R@5 {r['recall@5']:.1f})" for n, r in rows)
        + f" [{args.model}]"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
