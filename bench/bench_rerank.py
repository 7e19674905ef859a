#!/usr/bin/env python3
"""Re-rankers on the real sets and their cost, measured in one run on the same candidates.

    python bench/bench_rerank.py ../shared/datasets [--device cpu|cuda] [--k 32]

1. Recall@1 per re-ranker (each at its default K) on corridor (2.5 m) and triplets (25 m).
   DHE runs with --dhe-weights, else the head shipped for XFeat maps; ``dhe-adapted`` first
   runs ``vpr map adapt`` on each map's own database images (--adapt-iterations; never the
   queries). GeoWarp runs with --geowarp-weights; without weights a head is UNTRAINED and
   labelled so.
2. Per-query re-rank latency at K candidates (same query, same candidates) per method,
   and the DHE/RANSAC ratio; RANSAC with poselib and with OpenCV.
3. Where candidates' features come from (``--storage``: this part alone): the dense grids and the sparse
   keypoints stored in the map (bytes per image) vs recomputed from the K candidate images at query time (ms per
   query, beside lighterglue's matching of the same K pairs).

    python bench/bench_rerank.py ../shared/datasets --sweep [--json OUT.json] [--plot-prefix docs/rerank]

``--sweep`` reproduces the two figures of the re-ranking study instead: for none, ransac, dhe, geowarp (with
--geowarp-weights; else untrained and starred) and lighterglue, on corridor, triplets and nordland (maps with
``--local both``), each query's global top-100 (capped at the map size; ``--sweep-max-k`` per method) is scored
once and sliced for K in {1, 5, 10, 20, 50, 100}: R@1 per K; re-rank ms/query timed directly at K=10 and K=100
(the largest scored K) on ``--timing-queries`` queries. Writes JSON and two PNGs (R@1 vs re-rank time at K=10;
R@1 vs K) and ends with one summary line. Methods: the study's, ``lighterglue`` (ranked with the retrieval prior,
the default) and ``lighterglue-inliers`` (the inlier count alone), and the ``dhe+lighterglue`` combination.

    python bench/bench_rerank.py ../shared/datasets --ablation [--sets corridor triplets] [--json OUT.json]

``--ablation`` measures LighterGlue's choices on each query's same global top-10 (``--ablation-k``): keypoint
budget (512, 1024) x working size (480, 640 px on the longest side), then more query keypoints against the map's 512
(1024, 2048) and int8 map descriptors, each x score (homography inliers, fundamental-matrix inliers, homography
inliers with the retrieval prior); the prior's weight on the default configuration; on corridor also the inlier
count against the offset along the map (database->database and query->database), which shows why inliers alone
confuse neighbouring frames there.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vpr_core.eval.recall import evaluate
from vpr_core.io.geoset import load_geoset
from vpr_core.io.images import load_image
from vpr_core.localize.localizer import Localizer
from vpr_core.map.adapt import adapt_map
from vpr_core.map.build import build_map
from vpr_core.map.codec import GRID_CODECS, LocalGrids
from vpr_core.map.format import save_map
from vpr_core.rerank import build_reranker
from vpr_core.rerank.dhe import DHEHead
from vpr_core.runtime.extractor import Extractor

SETS = {"corridor": 2.5, "triplets": 25.0}
SWEEP_SETS = {"corridor": 2.5, "triplets": 25.0, "nordland": 25.0}


def timed(fn, repeat: int = 5) -> tuple[float, float]:
    fn()
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t) * 1e3)
    return float(np.median(ts)), float(np.percentile(ts, 95))


def storage_cost(args, vmap, q, loc) -> dict:
    """Where the candidates' features come from, measured on the same query and global top-K in one run: the
    dense grids (ransac, dhe, geowarp) and the sparse keypoints (lighterglue) stored in the map, against an
    extraction pass over the K candidate images at query time (read from disk and extracted, as a node without
    them in the map would have to)."""
    from vpr_core.rerank.sparse import SparseExtractor, extract_sparse

    k = args.storage_k
    root = args.root / "corridor" / "images" / "test"
    db = load_geoset(root / "database")
    query = load_image(q.paths[0])
    top = loc.localize(query, k=k).matches[:k]
    ids = np.array([m.index for m in top])
    paths = [db.paths[i] for i in ids]
    out = {"k": k}
    grids = vmap.info["local_features"]
    per_img = grids["bytes_per_image"]
    rex = Extractor(loc.model, args.device)
    out["dense_kib"] = per_img / 1024
    out["dense_recompute_ms"] = timed(lambda: rex.describe_local(rex.to_tensor([load_image(p) for p in paths])), 3)[0]
    print(
        f"  dense grids, stored ({grids['codec']}): {per_img / 1024:.1f} KiB per map image "
        f"({per_img * 10000 / 2**30:.2f} GiB per 10k images), lookup ~0 ms; "
        f"recomputed: {out['dense_recompute_ms']:.0f} ms per query for K={k}"
    )
    vmap.sparse = extract_sparse([load_image(p) for p in db.paths], {}, args.device)
    rr = Localizer(vmap, device=args.device, reranker="lighterglue").reranker
    ex = SparseExtractor(rr.store.top_k, rr.store.max_side, args.device)
    n_kp = rr.store.top_k
    out["sparse_kib"] = (vmap.sparse.keypoints[0].nbytes + vmap.sparse.descriptors[0].nbytes) / 1024
    out["match_ms"] = timed(lambda: rr.rerank_image(query, ids))[0]
    out["sparse_recompute_ms"] = timed(lambda: [ex(load_image(p)) for p in paths])[0]
    print(
        f"  sparse keypoints ({n_kp} at {rr.store.max_side} px), stored: {out['sparse_kib']:.1f} KiB per map image; "
        f"lighterglue's matching and verification of the K={k} pairs: {out['match_ms']:.0f} ms; recomputing the "
        f"candidates' keypoints: {out['sparse_recompute_ms']:.0f} ms more per query "
        f"({out['sparse_recompute_ms'] / out['match_ms']:.2f}x the matching)"
    )
    return out


SWEEP_KS = (1, 5, 10, 20, 50, 100)
#: label -> (re-ranker, options): the study's methods, LighterGlue also without the retrieval prior, and the
#: DHE + LighterGlue combination.
SWEEP_METHODS = {
    "none": ("none", {}),
    "ransac": ("ransac", {}),
    "dhe": ("dhe", {}),
    "geowarp": ("geowarp", {}),
    "lighterglue": ("lighterglue", {}),
    "lighterglue-inliers": ("lighterglue", {"prior": 0.0}),
    "dhe+lighterglue": ("dhe+lighterglue", {}),
}


def sweep(args) -> int:
    """R@1 against K and against re-rank time, one run, every method on the same candidates."""
    max_k = {m: 100 for m in SWEEP_METHODS} | {m: 20 for m in SWEEP_METHODS if "lighterglue" in m}
    for item in args.sweep_max_k or []:
        m, v = item.split("=")
        max_k[m] = int(v)
    opts = {"geowarp": {"weights": args.geowarp_weights} if args.geowarp_weights else {}}
    out: dict = {"sets": {}, "max_k": max_k}
    print(f"{'set':9s} {'method':19s} " + " ".join(f"{'R@1 K=' + str(k):>9s}" for k in SWEEP_KS) + "  ms@10  ms@max")
    sets = {n: SWEEP_SETS[n] for n in (args.sets or SWEEP_SETS)}
    for name, thr in sets.items():
        root = args.root / name / "images" / "test"
        db = load_geoset(root / "database")
        q = load_geoset(root / "queries", frame=db.frame)
        vmap = build_map(
            db, device=args.device, source=str(root / "database"), local="both", grid_codec=args.grid_codec
        )
        sel = np.arange(len(q.paths))
        if args.max_queries and len(sel) > args.max_queries:
            sel = np.linspace(0, len(sel) - 1, args.max_queries).astype(int)
        base = Localizer(vmap, device=args.device)
        imgs = [load_image(q.paths[i]) for i in sel]
        kmax_set = min(100, len(vmap))
        tops = [base.localize(im, k=kmax_set).matches[:kmax_set] for im in imgs]
        true = np.stack([q.east[sel], q.north[sel]], 1)
        res = out["sets"][name] = {"queries": len(sel), "map": len(vmap), "methods": {}}
        for m in args.methods or SWEEP_METHODS:
            name_m, variant = SWEEP_METHODS[m]
            loc = Localizer(vmap, device=args.device, reranker=name_m, reranker_options={**opts.get(m, {}), **variant})
            rr = loc.reranker
            km = min(max_k[m], kmax_set)
            ks = [k for k in SWEEP_KS if k <= km] + ([km] if km not in SWEEP_KS else [])
            hits = {k: [] for k in ks}

            def scored(im, top, k, rr=rr, loc=loc):
                """The re-ranker's result on the first k candidates of ``top``, as the localizer calls it."""
                ids = np.array([x.index for x in top[:k]])
                gl = torch.tensor([x.score for x in top[:k]], dtype=torch.float64)
                qloc = cands = None
                if rr.needs_local:
                    qloc = loc.runner(loc.extractor.to_tensor([im]), local=True)[1][0]
                    cands = loc.local.gather(ids, rr.device)
                return ids, gl, rr.rerank(im, qloc, ids, cands, gl)

            for im, top, t in zip(imgs, tops, true):
                if m == "none":
                    ids = np.array([x.index for x in top[:km]])
                    gl = np.array([x.score for x in top[:km]])
                    rres = None
                else:
                    ids, gl_t, rres = scored(im, top, km)
                    gl = gl_t.numpy()
                for k in ks:  # the best of the first k by re-rank score (fused over those k), ties by the global order
                    sc = gl[:k] if rres is None else rr.fuse(rres.head(k), torch.from_numpy(gl[:k])).scores.numpy()
                    best = ids[np.lexsort((-gl[:k], -sc))[0]]
                    hits[k].append(np.linalg.norm(vmap.xy[best] - t) <= thr)
            ms = {}
            for k in sorted({min(10, km), km}):
                sub = list(zip(imgs, tops))[: args.timing_queries]
                t0 = time.perf_counter()
                for im, top in sub:
                    if m != "none":
                        scored(im, top, k)
                ms[k] = (time.perf_counter() - t0) / len(sub) * 1e3
            r1 = {k: float(100 * np.mean(v)) for k, v in hits.items()}
            res["methods"][m] = {
                "r1": {str(k): v for k, v in r1.items()},
                "ms": {str(k): v for k, v in ms.items()},
                "trained": bool(rr.trained),
                "max_k": km,
            }
            star = "" if rr.trained else "*"
            cells = " ".join(f"{r1[k]:8.1f}{star or ' '}" if k in r1 else f"{'-':>9s}" for k in SWEEP_KS)
            print(f"{name:9s} {m:19s} {cells}  {ms.get(min(10, km), 0):5.0f}  {ms[km]:6.0f}", flush=True)
    return report(out, args)


def report(out: dict, args) -> int:
    """Write the sweep's JSON and its two plots (R@1 vs re-rank time at K=10; R@1 vs K); one summary line.
    ``--merge`` re-makes them from several runs' JSONs (e.g. one set per run)."""
    import json

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    colors = {
        "none": "k",
        "ransac": "tab:blue",
        "dhe": "tab:orange",
        "geowarp": "tab:purple",
        "lighterglue": "tab:green",
        "lighterglue-inliers": "tab:olive",
        "dhe+lighterglue": "tab:red",
    }
    n = len(out["sets"])
    fig, axes = plt.subplots(1, n, figsize=(5 * n, 4), squeeze=False)
    for ax, (name, r) in zip(axes[0], out["sets"].items()):
        for m, v in r["methods"].items():
            k10 = str(min(10, v["max_k"]))
            if m != "none" and v["ms"].get(k10) is None:  # a time not measured cleanly is left out, not guessed
                continue
            x, y = max(v["ms"].get(k10) or 0.0, 0.1), v["r1"][k10]
            ax.scatter(x, y, color=colors[m], s=40)
            ax.annotate(m + ("" if v["trained"] else "*"), (x, y), fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel("re-rank ms/query at K=10 (2 CPU cores)")
        ax.set_ylabel("R@1")
        ax.set_title(name)
    fig.tight_layout()
    fig.savefig(f"{args.plot_prefix}_time.png", dpi=110)
    fig, axes = plt.subplots(1, n, figsize=(5 * n, 4), squeeze=False)
    for ax, (name, r) in zip(axes[0], out["sets"].items()):
        for m, v in r["methods"].items():
            ks = sorted(v["r1"], key=int)
            ax.plot([int(k) for k in ks], [v["r1"][k] for k in ks], "o-", color=colors[m], label=m)
        ax.set_xscale("log")
        ax.set_xlabel("K (candidates re-ranked)")
        ax.set_ylabel("R@1")
        ax.set_title(name)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(f"{args.plot_prefix}_k.png", dpi=110)
    best = {n: max(r["methods"].items(), key=lambda kv: max(kv[1]["r1"].values())) for n, r in out["sets"].items()}
    print(
        "summary: best R@1 "
        + ", ".join(f"{n} {m} {max(v['r1'].values()):.1f}" for n, (m, v) in best.items())
        + "; K=10 ms/query "
        + ", ".join(f"{m} {v['ms'].get('10') or 0:.0f}" for m, v in next(iter(out["sets"].values()))["methods"].items())
        + f"; plots {args.plot_prefix}_time.png {args.plot_prefix}_k.png"
    )
    return 0


#: (map keypoints, query keypoints, longest side in px, descriptor storage): the budget and size grid, then the
#: query-side budget alone (the frame is extracted per query, the map's stay at 512) and int8 descriptors (half the
#: bytes: round(127 x) of the unit descriptors, what an int8 map would store)
ABLATION_CONFIGS = (
    (512, 512, 640, "fp16"),
    (1024, 1024, 640, "fp16"),
    (512, 512, 480, "fp16"),
    (1024, 1024, 480, "fp16"),
    (512, 1024, 640, "fp16"),
    (512, 2048, 640, "fp16"),
    (512, 512, 640, "int8"),
)
DEFAULT_CONFIG = ABLATION_CONFIGS[0]  # what the map build and the re-ranker default to
ABLATION_SCORES = {  # label -> (geometric model, pixel threshold, retrieval prior)
    "homography 8 px": ("homography", 8.0, 0.0),
    "fundamental 2 px": ("fundamental", 2.0, 0.0),
    "homography 8 px + prior": ("homography", 8.0, 0.3),
}
PRIOR_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0)  # the retrieval prior's weight, on the default configuration
OFFSETS = range(-4, 5)


def ablation(args) -> int:
    """LighterGlue's choices on the same global top-K: keypoint budget x working size x score (R@1 at K), and on an
    ordered set the inliers against the map offset (database->database and query->database) to show what the
    inlier count can and cannot separate."""
    import dataclasses
    import json

    from vpr_core.rerank.lighterglue import verify, with_prior
    from vpr_core.rerank.sparse import extract_sparse

    k = args.ablation_k
    out: dict = {"k": k, "sets": {}}
    head = " ".join(f"{s:>24s}" for s in ABLATION_SCORES)
    print(f"{'set':9s} {'map/query kp':>12s} {'side':>5s} {'desc':>5s} {head}  ms/query")
    for name in args.sets or ("corridor", "triplets"):
        thr = SWEEP_SETS[name]
        root = args.root / name / "images" / "test"
        db = load_geoset(root / "database")
        q = load_geoset(root / "queries", frame=db.frame)
        vmap = build_map(db, device=args.device, source=str(root / "database"), local="none")
        sel = np.arange(len(q.paths))
        if args.max_queries and len(sel) > args.max_queries:
            sel = np.linspace(0, len(sel) - 1, args.max_queries).astype(int)
        imgs = [load_image(q.paths[i]) for i in sel]
        base = Localizer(vmap, device=args.device)
        tops = [base.localize(im, k=k).matches[:k] for im in imgs]
        true = np.stack([q.east[sel], q.north[sel]], 1)
        db_imgs = [load_image(p) for p in db.paths]
        rows = out["sets"][name] = {}
        for n_kp, q_kp, side, codec in ABLATION_CONFIGS:
            if vmap.sparse is None or (n_kp, side) != (vmap.sparse.top_k, vmap.sparse.max_side):
                extracted = extract_sparse(db_imgs, {"top_k": n_kp, "max_side": side}, args.device)
            fp16 = extracted.descriptors
            vmap.sparse = dataclasses.replace(
                extracted,
                descriptors=(np.round(fp16.astype(np.float32) * 127) / 127).astype(np.float16)
                if codec == "int8"
                else fp16,
            )
            opts = {"prior": 0, "keypoints": q_kp}
            rr = Localizer(vmap, device=args.device, reranker="lighterglue", reranker_options=opts).reranker
            hits = {s: [] for s in ABLATION_SCORES}
            weighed = {w: [] for w in PRIOR_WEIGHTS}  # homography 8 px inliers + w x prior (default config only)
            spent = 0.0  # matching plus the first score's verification: one re-ranker's cost
            for im, top, t in zip(imgs, tops, true):
                ids = np.array([x.index for x in top])
                gl = torch.tensor([x.score for x in top], dtype=torch.float64)
                t0 = time.perf_counter()
                pairs = rr.matches(im, ids)
                for j, (label, (model, px, prior)) in enumerate(ABLATION_SCORES.items()):
                    inl = torch.tensor([verify(a, b, model, px) for a, b in pairs])
                    spent += time.perf_counter() - t0 if j == 0 else 0.0
                    sc = with_prior(inl, gl, prior).numpy() if prior else inl.numpy()
                    best = ids[np.lexsort((-gl.numpy(), -sc))[0]]
                    hits[label].append(np.linalg.norm(vmap.xy[best] - t) <= thr)
                    if (model, px) == ("homography", 8.0) and not prior and (n_kp, q_kp, side, codec) == DEFAULT_CONFIG:
                        for w in PRIOR_WEIGHTS:
                            sc = with_prior(inl, gl, w).numpy() if w else inl.numpy()
                            weighed[w].append(
                                np.linalg.norm(vmap.xy[ids[np.lexsort((-gl.numpy(), -sc))[0]]] - t) <= thr
                            )
            ms = spent / len(imgs) * 1e3
            r1 = {s: float(100 * np.mean(v)) for s, v in hits.items()}
            row = (
                f"{n_kp}@{side}" + (f" query {q_kp}" if q_kp != n_kp else "") + (f" {codec}" if codec != "fp16" else "")
            )
            rows[row] = {"r1": r1, "ms_per_query_one_score": ms}
            cells = " ".join(f"{v:24.1f}" for v in r1.values())
            print(f"{name:9s} {f'{n_kp}/{q_kp}':>12s} {side:5d} {codec:>5s} {cells}  {ms:8.0f}")
            if weighed[0.0]:
                pw = out["sets"][name]["prior_weight"] = {str(w): float(100 * np.mean(v)) for w, v in weighed.items()}
                print(f"{name:9s} R@1 against the prior's weight: " + " ".join(f"{w}:{v:.1f}" for w, v in pw.items()))
        if name == "corridor":  # ordered, 1 m apart: the inlier count against the offset along the map
            vmap.sparse = extract_sparse(db_imgs, {}, args.device)
            rr = Localizer(vmap, device=args.device, reranker="lighterglue", reranker_options={"prior": 0}).reranker
            prof = {}
            for kind, src in (("database->database", db_imgs), ("query->database", [load_image(p) for p in q.paths])):
                rel = []
                for i in range(6, len(db_imgs) - 6, 6):
                    ids = np.array([i + o for o in OFFSETS])
                    inl = np.array([verify(a, b, "homography", 8.0) for a, b in rr.matches(src[i], ids)], float)
                    if kind == "database->database":
                        inl[list(OFFSETS).index(0)] = np.nan  # an image against itself
                    rel.append(inl / np.nanmax(inl))
                mean = [None if np.isnan(c).all() else round(float(np.nanmean(c)), 3) for c in np.array(rel).T]
                prof[kind] = dict(zip(map(str, OFFSETS), mean))
                print(f"corridor inliers / per-frame max against map offset (m), {kind}: "
                      + " ".join(f"{o}:{v:.2f}" for o, v in prof[kind].items() if v is not None))  # fmt: skip
            out["sets"][name]["offset_profile"] = prof
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    best = {
        n: max(((c, s, v) for c, r in rs.items() if "r1" in r for s, v in r["r1"].items()), key=lambda x: x[2])
        for n, rs in out["sets"].items()
    }
    print(
        f"summary: best LighterGlue choice at K={k}: "
        + ", ".join(f"{n} {c} {s} {v:.1f}" for n, (c, s, v) in best.items())
    )
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("root", type=Path)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--dhe-weights")
    ap.add_argument("--geowarp-weights")
    ap.add_argument("--adapt-iterations", type=int, default=300, help="map adapt iterations for dhe-adapted (0 = skip)")
    ap.add_argument("--sweep", action="store_true", help="R@1 vs K and vs re-rank time for every re-ranker")
    ap.add_argument("--merge", nargs="*", metavar="JSON", help="re-make the JSON and plots from sweep JSONs")
    ap.add_argument("--ms-from", metavar="JSON", help="with --merge: re-rank times from this sweep JSON")
    ap.add_argument("--methods", nargs="*", choices=list(SWEEP_METHODS), help="with --sweep: these only (default all)")
    ap.add_argument(
        "--grid-codec",
        default="pq",
        choices=GRID_CODECS,
        help="with --sweep: the maps' dense-grid codec (pq: the compact default; fp16)",
    )
    ap.add_argument("--ablation", action="store_true", help="LighterGlue: keypoints x size x score on the same top-K")
    ap.add_argument("--ablation-k", type=int, default=10)
    ap.add_argument("--sweep-max-k", nargs="*", metavar="METHOD=K", help="cap K per method (lighterglue=20 default)")
    ap.add_argument("--max-queries", type=int, default=0, help="with --sweep: queries per set (0 = all)")
    ap.add_argument("--timing-queries", type=int, default=10)
    ap.add_argument("--sets", nargs="*", help="with --sweep: corridor triplets nordland (default all)")
    ap.add_argument("--storage", action="store_true", help="only: stored vs recomputed candidate features (corridor)")
    ap.add_argument("--storage-k", type=int, default=10, help="candidates for the stored-vs-recomputed timing")
    ap.add_argument("--json")
    ap.add_argument("--plot-prefix", default="rerank")
    args = ap.parse_args()
    torch.set_num_threads(2)
    if args.merge:
        import json

        out = {"sets": {}}
        for f in args.merge:
            d = json.loads(Path(f).read_text())
            for name, r in d["sets"].items():
                out["sets"].setdefault(name, {**r, "methods": {}})["methods"].update(r["methods"])
        if args.ms_from:  # re-rank times from a run alone on the machine (R@1 stays from the full runs)
            d = json.loads(Path(args.ms_from).read_text())
            for name, r in d["sets"].items():
                for m, v in r["methods"].items():
                    if m in out["sets"].get(name, {}).get("methods", {}):
                        out["sets"][name]["methods"][m]["ms"] = v["ms"]
            out["ms_from"] = str(args.ms_from)
        return report(out, args)
    if args.sweep:
        return sweep(args)
    if args.ablation:
        return ablation(args)
    if args.storage:
        root = args.root / "corridor" / "images" / "test"
        db = load_geoset(root / "database")
        vmap = build_map(db, device=args.device, source=str(root / "database"))
        q = load_geoset(root / "queries", frame=db.frame)
        cost = storage_cost(args, vmap, q, Localizer(vmap, device=args.device))
        print(
            f"summary: K={cost['k']}: dense stored {cost['dense_kib']:.0f} KiB/img vs recompute "
            f"{cost['dense_recompute_ms']:.0f} ms/query; sparse stored {cost['sparse_kib']:.0f} KiB/img, matching "
            f"{cost['match_ms']:.0f} ms vs recompute +{cost['sparse_recompute_ms']:.0f} ms/query"
        )
        return 0
    dev = torch.device(args.device)
    methods = {
        "none": {},
        "ransac": {"backend": "poselib"},
        "ransac-cv2": {"backend": "opencv"},
        "dhe": {"weights": args.dhe_weights},
        "dhe-adapted": {},
        "geowarp": {"weights": args.geowarp_weights},
    }
    if not args.adapt_iterations:
        del methods["dhe-adapted"]
    base = lambda m: m.split("-")[0]  # noqa: E731
    print(f"1) Recall@1 on real data ({args.device}); default K: ransac 10, dhe 32, geowarp 5")
    print(f"{'set':9s} " + " ".join(f"{m:>11s}" for m in methods) + "   (rerank ms p50)")
    maps, summary = {}, {}
    for name, thr in SETS.items():
        root = args.root / name / "images" / "test"
        db = load_geoset(root / "database")
        q = load_geoset(root / "queries", frame=db.frame)
        vmap = build_map(db, device=args.device, source=str(root / "database"))
        maps[name] = (vmap, q)
        adapted = None
        if "dhe-adapted" in methods:
            with tempfile.TemporaryDirectory() as tmp:
                save_map(vmap, Path(tmp) / "m.vprmap")
                t0 = time.perf_counter()
                adapted = adapt_map(
                    Path(tmp) / "m.vprmap", conf={"iterations": args.adapt_iterations}, device=args.device
                )
                print(
                    f"   ({name}: map adapt, {args.adapt_iterations} iterations on {len(vmap)} database images, "
                    f"{time.perf_counter() - t0:.0f} s)"
                )
        r1, ms = [], []
        for m, conf in methods.items():
            vm = adapted if m == "dhe-adapted" else vmap
            loc = Localizer(
                vm,
                device=args.device,
                reranker=base(m),
                reranker_options={k: v for k, v in conf.items() if v is not None} if base(m) != "none" else {},
            )
            rep, _ = evaluate(loc, q, thr, progress=False)
            tag = "" if loc.reranker.trained else "*"
            r1.append(f"{rep['recall@1']:.1f}{tag}")
            ms.append(rep["latency_ms"]["rerank"]["p50"])
            summary[(name, m)] = rep["recall@1"]
        print(f"{name:9s} " + " ".join(f"{v:>11s}" for v in r1) + "   (" + " ".join(f"{v:.0f}" for v in ms) + ")")
    print("   * = untrained head (no published or shipped weights here): not the method's accuracy")

    print(f"\n2) per-query re-rank latency, K={args.k}, same query and candidates (corridor), {args.device}")
    vmap, q = maps["corridor"]
    loc = Localizer(vmap, device=args.device)
    ex = loc.extractor
    _, qloc = ex.describe_local(ex.to_tensor([load_image(q.paths[0])]))
    _, ids = loc.index.search(ex(ex.to_tensor([load_image(q.paths[0])])), args.k)
    cands = LocalGrids(vmap.grids, dev).gather(ids[0], dev)  # as the localizer does: decoded from the map's codes
    qd = qloc[0].to(dev)
    lat = {}
    for m, conf in methods.items():
        if m in ("none", "dhe-adapted"):  # the adapted head costs what the shipped one does
            continue
        rr = build_reranker(base(m), {**{k: v for k, v in conf.items() if v is not None}, "top_k": args.k})
        rr.bind(vmap, dev, loc.model.input_size)
        lat[m] = timed(lambda rr=rr: rr.score(qd, cands))
        print(f"  {m:11s} p50 {lat[m][0]:7.1f} ms  p95 {lat[m][1]:7.1f} ms")
    ratio = lat["dhe"][0] / lat["ransac"][0]
    head = DHEHead(108)
    print(
        f"  DHE/RANSAC latency ratio {ratio:.2f} (DHE head on XFeat: 12x9 = 108 tokens, {head.flops() / 1e9:.2f} GFLOP "
        "per pair; "
        f"reference 24x24 head: {DHEHead(576).flops() / 1e9:.1f} GFLOP per pair)"
    )

    print("\n3) candidates' features: stored in the map vs recomputed from the map images")
    cost = storage_cost(args, vmap, q, loc)
    print(
        "summary: R@1 "
        + "; ".join(
            f"{n} " + " / ".join(f"{m} {summary[(n, m)]:.1f}" for m in methods if m != "ransac-cv2") for n in SETS
        )
        + f"; K={args.k} rerank ms: "
        + ", ".join(f"{m} {v[0]:.0f}" for m, v in lat.items())
        + f"; DHE/RANSAC {ratio:.2f}; dense stored {cost['dense_kib']:.0f} KiB/img vs recompute "
        + f"{cost['dense_recompute_ms']:.0f} ms/query; sparse stored {cost['sparse_kib']:.0f} KiB/img, matching "
        + f"{cost['match_ms']:.0f} ms vs recompute {cost['sparse_recompute_ms']:.0f} ms/query"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
