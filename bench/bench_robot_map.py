"""Memory of the localizer on a large map, measured: a 100 000-image map file, then the default pipeline on it.

The map is the demo street's real map (model, vocabulary, PQ codec) grown to ``--n`` images: the extra images'
descriptors are the street's own plus noise (float16), their grid codes are copies of the street's, their
positions continue the street along a long loop. It is saved with its trained IVF-PQ index, as ``vpr map build``
writes a map of that size. A fresh process then loads it with the defaults of the node (``reranker: dhe`` at
K = 5, ``temporal: hmm``), localizes ``--frames`` street queries and reports its resident memory: anonymous
(heap, what the robot must have) and file-backed (map pages, which the kernel drops under pressure).

    python bench/bench_robot_map.py --n 100000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RUN = """
import json, sys, time, numpy as np
from pathlib import Path
from vpr_core.io.geoset import load_geoset
from vpr_core.io.images import load_image
from vpr_core.localize.localizer import Localizer
def mem():
    f = dict(l.split(':', 1) for l in Path('/proc/self/status').read_text().splitlines() if ':' in l)
    kb = lambda k: int(f[k].split()[0]) / 1024
    return {'rss_mb': kb('VmRSS'), 'anon_mb': kb('RssAnon'), 'file_mb': kb('RssFile'), 'peak_mb': kb('VmHWM')}
m0 = mem()
t = time.perf_counter()
loc = Localizer.from_file(sys.argv[1], device='cpu', reranker='dhe', reranker_top_k=5, temporal='hmm')
load_s = time.perf_counter() - t
m1 = mem()
q = load_geoset(sys.argv[2]).paths
ms = []
for i in range(int(sys.argv[3])):
    img = load_image(q[i % len(q)])
    t = time.perf_counter(); loc.localize(img, stamp=float(i)); ms.append((time.perf_counter() - t) * 1e3)
print(json.dumps({'before_load': m0, 'after_load': m1, 'after_frames': mem(), 'load_s': load_s,
                  'index': type(loc.index).__name__, 'frame_ms_p50': float(np.median(ms))}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--frames", type=int, default=50)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    from vpr_core.demo import generate
    from vpr_core.io.geoset import load_geoset
    from vpr_core.map.build import build_map
    from vpr_core.map.format import file_parts, save_map
    from vpr_core.map.search import stored_index

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "street"
        generate(root, seed=3, n_map=24, n_query=10)
        m = build_map(load_geoset(root / "database"), device="cpu")
        n, base = args.n, len(m)
        rng = np.random.default_rng(0)
        src = np.arange(n) % base
        desc = np.asarray(m.descriptors, np.float32)[src]
        desc[base:] += rng.standard_normal((n - base, desc.shape[1])).astype(np.float32) * (
            0.5 / np.sqrt(desc.shape[1])
        )
        desc /= np.linalg.norm(desc, axis=1, keepdims=True)
        m.descriptors = desc.astype(np.float16)
        del desc
        m.grids = m.grids.take(src)
        ang = np.arange(n) * 2.0 / 5000.0  # a 5 km loop of places 2 m apart, the street first
        east = np.where(np.arange(n) < base, m.east[src], 800 * np.cos(ang) + 1000)
        north = np.where(np.arange(n) < base, m.north[src], 800 * np.sin(ang) + 1000)
        m.lat, m.lon, _ = (np.asarray(v) for v in m.frame.lla(east, north, np.zeros(n)))
        m.alt = np.full(n, np.nan)
        m.east, m.north = east, north
        m.names = [f"{m.names[i % base]}.{i}" for i in range(n)]
        t = time.perf_counter()
        m.index = stored_index(m.descriptors)
        index_s = time.perf_counter() - t
        path = Path(tmp) / "big.vprmap"
        save_map(m, path)
        parts = file_parts(path)
        del m
        r = subprocess.run(
            [sys.executable, "-c", RUN, str(path), str(root / "queries"), str(args.frames)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        out = json.loads(r.stdout.strip().splitlines()[-1])
        out |= {"n": n, "file_mb": sum(parts.values()) / 2**20, "parts_mb": {k: v / 2**20 for k, v in parts.items()}}
        out["index_build_s"] = index_s
    a, f = out["after_frames"], out["file_mb"]
    head = ("n", "file MB", "load s", "RSS MB", "anon MB", "map MB", "peak MB", "frame ms")
    print(" ".join(f"{h:>9}" for h in head))
    row = (n, f, out["load_s"], a["rss_mb"], a["anon_mb"], a["file_mb"], a["peak_mb"], out["frame_ms_p50"])
    print(" ".join(f"{v:>9.0f}" if isinstance(v, float) else f"{v:>9}" for v in row))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    print(
        f"summary: {n}-image map ({f:.0f} MB file, index {out['index']}): localizer RSS {a['rss_mb']:.0f} MB, of it "
        f"{a['anon_mb']:.0f} MB anonymous and {a['file_mb']:.0f} MB map pages, peak {a['peak_mb']:.0f} MB; frame p50 "
        f"{out['frame_ms_p50']:.0f} ms"
    )


if __name__ == "__main__":
    main()
