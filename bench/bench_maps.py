"""Compact maps against full ones: R@1 per re-ranker and bytes per image, on the shared sets.

For each set (corridor 2.5 m, triplets 25 m): one map with float16 grids and float32 descriptors (the
uncompressed map), then the default compact map (PQ grids, m=8, and float16 descriptors) for each codebook seed
in ``--seeds``: the codebook is what a build learns, so its seed shows how much R@1 moves with it. Each map is
evaluated with ``--rerankers`` at K=10, and the per-frame cost of fetching (decoding) the K grids is timed.

    python bench/bench_maps.py ../shared/datasets --json docs/compact_maps.json

``--both``: the grid code beside sparse keypoints (maps built with ``--local both``, for ``dhe+lighterglue``): one
such map per set with float16 grids, then its grids PQ-coded at ``--pq-ms`` bytes per cell for each seed in
``--seeds``; ``dhe`` and ``dhe+lighterglue`` R@1 at K in ``--ks`` (5, 10) and bytes per image.

    python bench/bench_maps.py ../shared/datasets --both --json docs/compact_maps_both.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vpr_core.eval.recall import evaluate
from vpr_core.io.geoset import load_geoset
from vpr_core.localize.localizer import Localizer
from vpr_core.map.build import build_and_save
from vpr_core.map.codec import PQ_DEFAULTS, LocalGrids, encode_pq, train_pq
from vpr_core.map.format import file_parts, load_map, save_map
from vpr_core.store.parts import GridStore

SETS = {"corridor": 2.5, "triplets": 25.0}


def gather_ms(path: Path, k: int, reps: int = 200) -> float:
    """Per-frame cost of fetching (and, for PQ, decoding) K candidates' grids on the CPU."""
    grids = LocalGrids(load_map(path).grids)
    n = len(grids)
    ids = [np.arange(i, i + k) % n for i in range(reps)]
    for i in ids[:5]:
        grids.gather(i, "cpu")
    t = time.perf_counter()
    for i in ids:
        grids.gather(i, "cpu")
    return (time.perf_counter() - t) / reps * 1e3


def r1(path: Path, queries, thr: float, reranker: str, k: int) -> float:
    loc = Localizer.from_file(path, device="cpu", reranker=reranker, temporal="none", reranker_top_k=k)
    return float(evaluate(loc, queries, thr, progress=False)[0]["recall@1"])


def recode(full: Path, grids: np.ndarray, m: int, seed: int, out: Path) -> Path:
    """``full`` (float16 grids) with its grids PQ-coded at ``m`` bytes per cell by a codebook of ``seed``."""
    cm = load_map(full)
    codec = train_pq(grids, m, PQ_DEFAULTS["train_cells"], seed)
    cm.grids = GridStore(encode_pq(grids, codec), codec)
    save_map(cm, out)
    return out


def both(args) -> None:
    """R@1 of dhe and dhe+lighterglue against the grid code of ``--local both`` maps (bytes per cell)."""
    rows = []
    rerankers = ["dhe", "dhe+lighterglue"]
    with tempfile.TemporaryDirectory() as tmp:
        for name, thr in SETS.items():
            base = args.root / name / "images" / "test"
            db, queries = load_geoset(base / "database"), load_geoset(base / "queries")
            full = Path(tmp) / f"{name}-both-fp16.vprmap"
            build_and_save(db, full, device="cpu", grid_codec="fp16", local="both", source=str(base / "database"))
            grids = np.asarray(load_map(full).grids.data)
            variants = [("fp16", None, full)] + [
                (f"pq{m}", seed, recode(full, grids, m, seed, Path(tmp) / f"{name}-pq{m}-{seed}.vprmap"))
                for m in args.pq_ms
                for seed in args.seeds
            ]
            for kind, seed, path in variants:
                row = {
                    "set": name,
                    "grids": kind,
                    "seed": seed,
                    "bytes_per_image": sum(file_parts(path).values()) / len(db.paths),
                }
                for rr in rerankers:
                    for k in args.ks:
                        row[f"{rr}@{k}"] = r1(path, queries, thr, rr, k)
                rows.append(row)
                tag = "-" if seed is None else seed
                cells = "  ".join(f"{c} {row[c]:5.1f}" for c in row if "@" in c)
                print(
                    f"{name:9} {kind:5} seed {tag:>2} {row['bytes_per_image'] / 1e3:6.1f} KB/img  {cells}", flush=True
                )
    summary = {}
    for name in SETS:
        for kind in dict.fromkeys(r["grids"] for r in rows if r["set"] == name):
            sel = [r for r in rows if r["set"] == name and r["grids"] == kind]
            summary.setdefault(name, {})[kind] = {
                "kb_per_image": sel[0]["bytes_per_image"] / 1e3,
                **{c: {"mean": float(np.mean([r[c] for r in sel])), "min": min(r[c] for r in sel),
                       "max": max(r[c] for r in sel)} for c in sel[0] if "@" in c},
            }  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "summary": summary, "seeds": args.seeds}, indent=2))
    best = {
        n: max(v.items(), key=lambda kv: kv[1][f"dhe+lighterglue@{args.ks[-1]}"]["mean"]) for n, v in summary.items()
    }
    print(
        f"summary: dhe+lighterglue at K={args.ks[-1]}, mean over codebooks: "
        + "; ".join(
            ", ".join(f"{n} {kind} {v[f'dhe+lighterglue@{args.ks[-1]}']['mean']:.1f}" for kind, v in summary[n].items())
            for n in summary
        )
        + " | best: "
        + ", ".join(f"{n} {kind}" for n, (kind, _) in best.items())
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("root", type=Path, help="datasets root (corridor/, triplets/)")
    ap.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2, 3])
    ap.add_argument("--rerankers", nargs="*", default=["none", "ransac", "dhe"])
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--both", action="store_true", help="grid code beside sparse keypoints (dhe, dhe+lighterglue)")
    ap.add_argument("--pq-ms", type=int, nargs="*", default=[8, 32], help="with --both: PQ bytes per grid cell")
    ap.add_argument("--ks", type=int, nargs="*", default=[5, 10], help="with --both: re-ranked candidates")
    args = ap.parse_args()
    if args.both:
        return both(args)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, thr in SETS.items():
            base = args.root / name / "images" / "test"
            db, queries = load_geoset(base / "database"), load_geoset(base / "queries")
            full = Path(tmp) / f"{name}-fp16.vprmap"
            m = build_and_save(db, full, device="cpu", grid_codec="fp16", source=str(base / "database"))
            m.descriptors = np.asarray(m.descriptors, np.float32)
            save_map(m, full)  # the uncompressed map: float32 descriptors, float16 grids
            variants = [("full", None, full)]
            grids = np.asarray(load_map(full).grids.data)
            for seed in args.seeds:
                cm = load_map(full)
                codec = train_pq(grids, PQ_DEFAULTS["m"], PQ_DEFAULTS["train_cells"], seed)
                cm.grids = GridStore(encode_pq(grids, codec), codec)
                cm.descriptors = np.asarray(cm.descriptors, np.float16)
                out = Path(tmp) / f"{name}-pq{seed}.vprmap"
                save_map(cm, out)
                variants.append(("compact", seed, out))
            for kind, seed, path in variants:
                row = {
                    "set": name,
                    "map": kind,
                    "seed": seed,
                    "bytes_per_image": sum(file_parts(path).values()) / len(m),
                }
                for rr in args.rerankers:
                    row[rr] = r1(path, queries, thr, rr, args.k)
                row["grid_gather_ms"] = gather_ms(path, args.k)
                rows.append(row)
                tag = "-" if seed is None else seed
                kb = row["bytes_per_image"] / 1e3
                scores = "  ".join(f"{rr} {row[rr]:5.1f}" for rr in args.rerankers)
                print(
                    f"{name:9} {kind:8} seed {tag:>2} {kb:7.1f} KB/img  {scores}  grids {row['grid_gather_ms']:.2f} ms"
                )
    summary = {}
    for name in SETS:
        full_row = next(r for r in rows if r["set"] == name and r["map"] == "full")
        comp = [r for r in rows if r["set"] == name and r["map"] == "compact"]
        summary[name] = {
            rr: {"full": full_row[rr], "compact_mean": float(np.mean([r[rr] for r in comp])),
                 "compact_min": min(r[rr] for r in comp), "compact_max": max(r[rr] for r in comp)}
            for rr in args.rerankers
        }  # fmt: skip
        summary[name]["kb_per_image"] = {
            "full": full_row["bytes_per_image"] / 1e3,
            "compact": comp[0]["bytes_per_image"] / 1e3,
        }
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "summary": summary, "k": args.k}, indent=2))
    worst = min(summary[s][rr]["compact_mean"] - summary[s][rr]["full"] for s in SETS for rr in args.rerankers)
    print(
        "summary: compact "
        + ", ".join(f"{s} {summary[s]['kb_per_image']['compact']:.1f} KB/img" for s in SETS)
        + f"; worst mean R@1 change vs full {worst:+.1f} points over {', '.join(args.rerankers)}; K={args.k} grids "
        + ", ".join(
            f"{r['map']} {r['grid_gather_ms']:.2f} ms"
            for r in rows
            if r["set"] == "corridor" and r["seed"] in (None, 0)
        )
        + " per frame (corridor)"
    )


if __name__ == "__main__":
    main()
