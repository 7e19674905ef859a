#!/usr/bin/env python3
"""Every global model on the shared sets: recall single-frame and with the HMM filter, descriptor bytes, CPU cost.

    python bench/bench_models.py ../shared/datasets [--models thumbnail xfeat-vlad salad ...]
        [--set salad:weights=dino_salad.ckpt ...] [--threads 2] [--json docs/models.json]

A model spec is ``name`` or ``name:key=value,key=value`` (e.g. ``boq:backbone=dinov2``); ``--set model:key=value``
adds options (weights) to every spec of that model. Per model and set: the map a ``vpr map build --model NAME
--local none`` writes, then ``vpr eval`` single-frame (``--rerank none``) and ``--temporal hmm``: R@1 / R@5 at the
set's radius (corridor 2.5 m, triplets and nordland 25 m), stored descriptor bytes, and ms per image of the global
model alone (batch 1, the per-frame cost, median over the queries). A model with no weights here (the official
architectures: their checkpoints cannot be downloaded on this machine) is timed on 12 query images of each set and
its recall is shown as "no weights" - random weights would only measure noise. Ends with one summary line.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vpr_core.config import parse_sets
from vpr_core.errors import VprError
from vpr_core.eval.recall import evaluate
from vpr_core.io.geoset import load_geoset
from vpr_core.io.images import load_image
from vpr_core.localize.localizer import Localizer
from vpr_core.map.build import build_and_save
from vpr_core.models import build_global_model
from vpr_core.runtime.extractor import Extractor

#: set -> positive radius in metres (../shared/README.md).
SETS = {"corridor": 2.5, "triplets": 25.0, "nordland": 25.0}
DEFAULT_MODELS = ["thumbnail", "xfeat-vlad", "xfeat-gem", "cosplace", "eigenplaces", "mixvpr", "salad", "boq",
                  "boq:backbone=dinov2"]  # fmt: skip
TIMED_UNTRAINED = 12


def parse_spec(spec: str, extra: dict[str, dict]) -> tuple[str, dict]:
    name, _, opts = spec.partition(":")
    conf = parse_sets([o for o in re.split(r",(?![^\[]*\])", opts) if o]) if opts else {}  # commas outside [...]
    return name, {**conf, **extra.get(name, {})}


def per_image_ms(model, paths: list[Path]) -> float:
    """Median ms of the global model on one image (resize + network), after one warm-up."""
    ex = Extractor(model, device="cpu")
    images = [load_image(p) for p in paths]
    ex.describe(ex.to_tensor(images[:1]), local=False)
    ms = []
    for im in images:
        t = time.perf_counter()
        ex.describe(ex.to_tensor([im]), local=False)
        ms.append((time.perf_counter() - t) * 1e3)
    return statistics.median(ms)


def run_set(name: str, conf: dict, base: Path, thr: float, trained: bool) -> dict:
    db = load_geoset(base / "database")
    q = load_geoset(base / "queries", frame=db.frame)
    if not trained:
        model = build_global_model(name, conf)
        # maps store global descriptors as float16 (map/describe.py): 2 bytes per dimension
        return {"ms": per_image_ms(model, q.paths[:TIMED_UNTRAINED]), "bytes": model.dim * 2, "trained": False}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.vprmap"
        t = time.perf_counter()
        vmap = build_and_save(db, path, model=name, model_options=conf, device="cpu", local="none")
        build_s = time.perf_counter() - t
        row = {"trained": True, "build_s": build_s, "bytes": int(vmap.descriptors[0].nbytes)}
        for temporal in ("none", "hmm"):
            loc = Localizer.from_file(path, device="cpu", reranker="none", temporal=temporal)
            rep, est = evaluate(loc, q, thr, progress=False)
            row[temporal] = (rep["recall@1"], rep["recall@5"])
            if temporal == "none":
                row["ms"] = statistics.median(e.timings["preprocess"] + e.timings["global"] for e in est)
    return row


def cell(row: dict, key: str) -> str:
    if not row["trained"]:
        return f"{'no weights':>11s}"
    r1, r5 = row[key]
    return f"{r1:5.1f}/{r5:5.1f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("root", type=Path, help="folder with corridor/, triplets/, nordland/ (VPR layout)")
    ap.add_argument("--models", nargs="+", default=DEFAULT_MODELS)
    ap.add_argument("--set", action="append", default=[], metavar="MODEL:KEY=VALUE", help="option for one model")
    ap.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    extra: dict[str, dict] = {}
    for s in args.set:
        model, _, kv = s.partition(":")
        if not kv:
            sys.exit(f"error: --set {s}: expected MODEL:KEY=VALUE (e.g. salad:weights=dino_salad.ckpt)")
        extra.setdefault(model, {}).update(parse_sets([kv]))
    specs = [(spec, *parse_spec(spec, extra)) for spec in args.models]
    print(f"global models on {', '.join(args.sets)}; CPU, torch threads {torch.get_num_threads()}")
    print(f"{'model':22s} {'set':9s} {'R@1/R@5 single':>15s} {'R@1/R@5 hmm':>12s} {'bytes':>6s} {'ms/img':>7s}")
    results: dict[str, dict] = {}
    for spec, name, conf in specs:
        trained = build_global_model(name, conf).trained
        results[spec] = {}
        for s in args.sets:
            row = run_set(name, conf, args.root / s / "images" / "test", SETS[s], trained)
            results[spec][s] = row
            print(f"{spec:22s} {s:9s} {cell(row, 'none'):>15s} {cell(row, 'hmm'):>12s} {row['bytes']:6d} "
                  f"{row['ms']:7.1f}", flush=True)  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    best = {}
    for s in args.sets:
        ranked = [(r[s]["none"][0], spec) for spec, r in results.items() if r[s]["trained"]]
        best[s] = max(ranked) if ranked else (float("nan"), "-")
    untrained = [spec for spec, r in results.items() if not next(iter(r.values()))["trained"]]
    print(
        "summary: best single-frame R@1 " + ", ".join(f"{s} {v:.1f} ({m})" for s, (v, m) in best.items())
        + (f"; timed without weights: {', '.join(untrained)}" if untrained else "")
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except VprError as e:  # a bad model spec or option: one line, as the CLI says it
        sys.exit(f"error: {e}")
