#!/usr/bin/env python3
"""Is the published covariance honest? Coverage of the 95 % ellipse and NEES on the real sets, per re-ranker.

    python bench/bench_covariance.py ../shared/datasets [--rerankers none dhe] [--sets corridor triplets nordland]

Maps are built with the defaults of ``vpr map build`` (uncalibrated; as ``--local both`` when a learned matcher is
among ``--rerankers``); each query is localized as the
node would, and over the fixes the node would publish as STATUS_FIX (confidence >= 0.5) the script
reports the share whose true position lies inside their 95 % ellipse (goal 90-98 %; 95 % is
consistent) and the mean NEES (2 is consistent in 2-D). One row per set and re-ranker, then one
summary line.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vpr_core.eval.recall import evaluate
from vpr_core.io.geoset import load_geoset
from vpr_core.localize.localizer import Localizer
from vpr_core.map.build import build_and_save
from vpr_core.rerank import map_local_for

SETS = {"corridor": 2.5, "triplets": 25.0, "nordland": 25.0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("root", type=Path, help="folder holding <set>/images/test/{database,queries}")
    ap.add_argument("--rerankers", nargs="*", default=["none", "dhe"])
    ap.add_argument("--sets", nargs="*", default=list(SETS))
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(2)
    print(
        f"{'set':10s} {'rerank':15s} {'q':>4s} {'R@1':>6s} {'FIX n':>6s} {'coverage 2s':>12s} {'NEES':>6s} "
        f"{'in goal':>8s}"
    )
    verdicts = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.sets:
            base = args.root / name / "images" / "test"
            db = load_geoset(base / "database")
            q = load_geoset(base / "queries", frame=db.frame)
            local = map_local_for(args.rerankers)  # learned matchers: a --local both map
            vmap = build_and_save(
                db, Path(tmp) / f"{name}.vprmap", device=args.device, source=str(base / "database"), local=local
            )
            for rr in args.rerankers:
                rep, _ = evaluate(
                    Localizer(vmap, device=args.device, reranker=rr), q, SETS.get(name, 25.0), progress=False
                )
                c = rep["covariance"]
                lo = 90.0
                hi = 100.0 if name == "triplets" else 98.0
                ok = (
                    "n < 20"
                    if c["n"] < 20 and name != "triplets"
                    else ("yes" if lo <= c["coverage_2sigma"] <= hi else "NO")
                )
                verdicts.append(ok != "NO")
                print(
                    f"{name:10s} {rr:15s} {len(q.paths):4d} {rep['recall@1']:6.1f} {c['n']:6d} "
                    f"{c['coverage_2sigma']:11.1f}% {c['nees']:6.2f} {ok:>8s}",
                    flush=True,
                )
    print(
        f"covariance honesty: {sum(verdicts)} of {len(verdicts)} set/re-ranker rows in the goal band "
        "(90-98 %, triplets >= 90 %)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
