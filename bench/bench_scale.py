"""Search at city scale: the map's stored IVF-PQ shards against exact search on N synthetic descriptors.

Data (stated, not tuned to a real set): N unit vectors of the default global model's dimension (xfeat-vlad, 2048)
drawn from a Gaussian mixture of ``--components`` (default N/100, so ~100 images a place) components: a random
unit centre per component plus isotropic noise of total norm ``--spread`` (0.6), normalised. Queries: 1000
database vectors, each plus isotropic noise of norm ``--noise`` (0.4), normalised (cosine to its source ~0.93).
The descriptors are written as float16 to a memory-mapped file, as a map stores them.

Measured in one run, on this machine's cores: the index build (training + adding), search latency per single
query (p50/p95 ms, the robot's case), top-1 agreement with exact search (``recall_vs_exact``), and memory: the
index's resident bytes and this process's peak RSS.

    python bench/bench_scale.py --n 1000000 --json docs/scale_1m.json
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vpr_core.map.search import SEARCH_DEFAULTS, StoredIndex, stored_index

CHUNK = 50_000


def make_data(path: Path, n: int, d: int, components: int, spread: float, seed: int) -> np.memmap:
    """Chunked: the N x D float16 matrix never exists in float32 at once."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((components, d)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    out = np.memmap(path, dtype=np.float16, mode="w+", shape=(n, d))
    for lo in tqdm(range(0, n, CHUNK), desc="synthetic map", unit="chunk"):
        hi = min(n, lo + CHUNK)
        comp = rng.integers(0, components, hi - lo)
        x = centres[comp] + rng.standard_normal((hi - lo, d)).astype(np.float32) * (spread / np.sqrt(d))
        out[lo:hi] = x / np.linalg.norm(x, axis=1, keepdims=True)
    out.flush()
    return np.memmap(path, dtype=np.float16, mode="r", shape=(n, d))


def exact_top1(desc: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Exact inner-product top-1 over the float16 map, chunked, in torch (the reference the index is judged by)."""
    qt = torch.from_numpy(q)
    best = torch.full((len(q),), -np.inf)
    arg = torch.zeros(len(q), dtype=torch.long)
    for lo in tqdm(range(0, len(desc), CHUNK), desc="exact search", unit="chunk"):
        s = qt @ torch.from_numpy(np.asarray(desc[lo : lo + CHUNK], np.float32)).T
        v, i = s.max(dim=1)
        take = v > best
        best[take], arg[take] = v[take], i[take] + lo
    return arg.numpy()


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000, help="map size (images)")
    ap.add_argument("--dim", type=int, default=2048, help="descriptor dimension (default: xfeat-vlad's 2048)")
    ap.add_argument("--components", type=int, default=0, help="mixture components (default N/100)")
    ap.add_argument("--spread", type=float, default=0.6, help="noise norm around a component centre")
    ap.add_argument("--noise", type=float, default=0.4, help="query noise norm")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument(
        "--nprobe", type=int, default=0, help=f"lists probed (default the map's, {SEARCH_DEFAULTS['nprobe']})"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="write the figures here")
    ap.add_argument("--work", type=Path, help="folder for the memory-mapped descriptors (default: a temp folder)")
    args = ap.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    comps = args.components or max(1, args.n // 100)
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        desc = make_data(Path(tmp) / "desc.f16", args.n, args.dim, comps, args.spread, args.seed)
        rng = np.random.default_rng(args.seed + 1)
        src = rng.choice(args.n, args.queries, replace=False)
        q = np.asarray(desc[src], np.float32)
        q += rng.standard_normal(q.shape).astype(np.float32) * (args.noise / np.sqrt(args.dim))
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        truth = exact_top1(desc, q)
        rss0 = rss_mb()
        t0 = time.perf_counter()
        stored = stored_index(desc, {"kind": "ivfpq"})
        build_s = time.perf_counter() - t0
        index = StoredIndex(stored, desc, nprobe=args.nprobe or None)
        index_bytes = sum(len(b) for b in stored["shards"])
        for i in range(20):  # warm-up: page in the lists and the refine rows once
            index.search(q[i : i + 1], 10)
        times, hits = [], 0
        for i in tqdm(range(len(q)), desc="search", unit="query"):
            t = time.perf_counter()
            _, ids = index.search(q[i : i + 1], 10)
            times.append((time.perf_counter() - t) * 1e3)
            hits += int(ids[0, 0] == truth[i])
        out = {
            "n": args.n,
            "dim": args.dim,
            "components": comps,
            "spread": args.spread,
            "noise": args.noise,
            "threads": torch.get_num_threads(),
            "index": index.conf,
            "build_s": round(build_s, 1),
            "search_p50_ms": round(float(np.percentile(times, 50)), 3),
            "search_p95_ms": round(float(np.percentile(times, 95)), 3),
            "recall_vs_exact": hits / len(q),
            "source_is_exact_top1": float(np.mean(truth == src)),
            "index_bytes": index_bytes,
            "index_bytes_per_image": round(index_bytes / args.n, 1),
            "descriptor_file_bytes_per_image": args.dim * 2,
            "peak_rss_mb": round(rss_mb(), 1),
            "rss_before_index_mb": round(rss0, 1),
        }
    print(f"{'n':>10} {'p50 ms':>8} {'p95 ms':>8} {'recall_vs_exact':>16} {'index B/img':>12} {'peak RSS MB':>12}")
    print(
        f"{out['n']:>10} {out['search_p50_ms']:>8} {out['search_p95_ms']:>8} {out['recall_vs_exact']:>16.3f} "
        f"{out['index_bytes_per_image']:>12} {out['peak_rss_mb']:>12}"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2))
    print(
        f"summary: N={args.n} search p50 {out['search_p50_ms']} ms, recall_vs_exact {out['recall_vs_exact']:.3f}, "
        f"index {out['index_bytes'] / 1e6:.0f} MB, build {out['build_s']} s, peak RSS {out['peak_rss_mb']:.0f} MB"
    )


if __name__ == "__main__":
    main()
