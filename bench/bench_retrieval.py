#!/usr/bin/env python3
"""faiss vs a numpy brute-force scan, and global-descriptor throughput, measured in one run.

    python bench/bench_retrieval.py [--sizes 10000 100000] [--dim 2048] [--queries 200]

Ratios are what matter (machines differ); the last line summarises them.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vpr_core.localize.retrieval import Index, brute_force_search
from vpr_core.models import build_global_model
from vpr_core.runtime.extractor import Extractor


def timeit(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000])
    ap.add_argument("--dim", type=int, default=2048, help="descriptor size (xfeat-vlad: 2048)")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--k", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    print(f"retrieval, {args.dim}-d, {args.queries} queries, top-{args.k}, one query at a time (as the node does)")
    print(
        f"{'entries':>8s} {'numpy ms/q':>11s} {'faiss flat ms/q':>16s} {'ratio':>6s} {'faiss ivf ms/q':>15s} "
        f"{'ivf R@1 vs exact':>17s}"
    )
    ratios = []
    for n in args.sizes:
        db = rng.standard_normal((n, args.dim), dtype=np.float32)
        db /= np.linalg.norm(db, axis=1, keepdims=True)
        q = db[rng.choice(n, args.queries)] + 0.02 * rng.standard_normal((args.queries, args.dim), dtype=np.float32)
        flat = Index(db)
        ivf = Index(db, kind="ivf", nprobe=16)

        def one_by_one(search, q=q):
            return lambda: [search(q[i : i + 1], args.k) for i in range(args.queries)]

        t_np = timeit(one_by_one(lambda x, k, db=db: brute_force_search(db, x, k)), 1) / args.queries
        t_fl = timeit(one_by_one(flat.search)) / args.queries
        t_iv = timeit(one_by_one(ivf.search)) / args.queries
        agree = float((ivf.search(q, 1)[1][:, 0] == flat.search(q, 1)[1][:, 0]).mean())
        ratios.append((n, t_np / t_fl, t_np / t_iv))
        print(
            f"{n:8d} {t_np * 1e3:11.2f} {t_fl * 1e3:16.2f} {t_np / t_fl:6.1f} {t_iv * 1e3:15.2f} {100 * agree:16.1f}%"
        )

    print("\nglobal descriptors on this CPU (batch 16 and batch 1, 320x240 pixel budget)")
    ips = {}
    for name in ("xfeat-vlad", "xfeat-gem"):
        model = build_global_model(name)
        if name == "xfeat-vlad":
            model.fitted = True  # throughput only: the vocabulary's values do not change the cost
        ex = Extractor(model, "cpu")
        for b in (16, 1):
            x = torch.rand(b, 3, 240, 320)
            ex(x)
            t = timeit(lambda x=x, ex=ex: ex(x))
            ips[(name, b)] = b / t
            print(f"  {name:11s} batch {b:2d}: {b / t:7.1f} images/s ({1e3 * t / b:.1f} ms/image)")
    r = ", ".join(f"{n // 1000}k: faiss {a:.1f}x / ivf {b:.1f}x faster than numpy" for n, a, b in ratios)
    print(
        f"summary: {r}; xfeat-vlad {ips[('xfeat-vlad', 16)]:.0f} img/s batched, {ips[('xfeat-vlad', 1)]:.0f} img/s "
        "single"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
