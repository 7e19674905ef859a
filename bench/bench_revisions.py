"""The same figures from two revisions of vpr_core, in one run: to show that a refactoring changed no behaviour.

    python bench/bench_revisions.py ../shared/datasets --rev d3b9b6f [--threads 2]

Each revision runs in its own process (the other one from a temporary ``git worktree`` put first on PYTHONPATH),
alternating per set, so both meet the same machine load. Per set: the map a default ``vpr map build`` writes
(bytes per image), then R@1 / R@5 and ms per query p50 for each configuration, through the public API both
revisions share (``build_and_save``, ``Localizer.from_file``, ``evaluate``). The table puts the two side by side;
the summary line says whether every recall is equal.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: set -> (threshold m, model, [(reranker, temporal), ...])
CASES = {
    "corridor": (2.5, "xfeat-vlad", [("none", "none"), ("ransac", "none"), ("dhe", "none"), ("auto", "none"),
                                     ("none", "hmm")]),
    "triplets": (25.0, "xfeat-vlad", [("none", "none"), ("ransac", "none"), ("dhe", "none"), ("auto", "none")]),
    "nordland": (25.0, "thumbnail", [("none", "none"), ("none", "hmm")]),
}  # fmt: skip

PROBE = r"""
import json, sys, tempfile, time
from pathlib import Path
import numpy as np, torch
torch.set_num_threads(int(sys.argv[3]))
from vpr_core.eval.recall import evaluate
from vpr_core.io.geoset import load_geoset
from vpr_core.localize.localizer import Localizer
from vpr_core.map.build import build_and_save
base, spec = Path(sys.argv[1]), json.loads(sys.argv[2])
db = load_geoset(base / "database")
q = load_geoset(base / "queries", frame=db.frame)
out = {}
with tempfile.TemporaryDirectory() as tmp:
    path = Path(tmp) / "m.vprmap"
    build_and_save(db, path, model=spec["model"], device="cpu", source=str(base / "database")) if spec["new"] else \
        build_and_save(db, path, model_name=spec["model"], device="cpu", source=str(base / "database"))
    out["kb_per_image"] = path.stat().st_size / len(db.paths) / 1000
    for rr, tmp_ in spec["cases"]:
        for rep_i in range(2 if rr == "auto" else 1):  # auto's K follows the timing: run twice to show its spread
            loc = Localizer.from_file(path, device="cpu", reranker=rr, temporal=tmp_)
            k0 = loc.auto.top_k if loc.auto else None
            rep, est = evaluate(loc, q, spec["thr"], progress=False)
            ms = float(np.median([e.timings["total"] for e in est]))
            chosen = f"{loc.auto.reranker} K={k0}->{loc.auto.top_k}" if loc.auto else ""
            key = f"{rr}/{tmp_}" + (f"#{rep_i + 1}" if rr == "auto" else "")
            out[key] = [rep["recall@1"], rep["recall@5"], ms, chosen]
print("RESULT " + json.dumps(out))
"""


def run(pythonpath: Path, base: Path, spec: dict, threads: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(pythonpath), "OMP_NUM_THREADS": str(threads)}
    r = subprocess.run(
        [sys.executable, "-c", PROBE, str(base), json.dumps(spec), str(threads)],
        env=env, capture_output=True, text=True, cwd=pythonpath,
    )  # fmt: skip
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
    if r.returncode or not lines:
        sys.exit(f"error: revision at {pythonpath} failed on {base}: {r.stderr.strip().splitlines()[-1:]}")
    return json.loads(lines[-1][7:])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("root", type=Path, help="folder with corridor/, triplets/, nordland/")
    ap.add_argument("--rev", required=True, help="the earlier revision (git rev) to compare the working tree with")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sets", nargs="*", default=list(CASES))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="vpr-rev-"))
    old = tmp / "old"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(old), args.rev], check=True,
                   capture_output=True)  # fmt: skip
    results: dict = {}
    try:
        for name in args.sets:
            thr, model, cases = CASES[name]
            base = args.root.resolve() / name / "images" / "test"
            spec = {"model": model, "thr": thr, "cases": cases}
            results[name] = {
                args.rev: run(old, base, {**spec, "new": False}, args.threads),
                "working tree": run(ROOT, base, {**spec, "new": True}, args.threads),
            }
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"{'set':9s} {'reranker/temporal':18s} {'R@1 before/after':>17s} {'R@5 before/after':>17s} {'ms p50 b/a':>13s}"
    )
    equal = True
    for name, both in results.items():
        a, b = both[args.rev], both["working tree"]
        print(f"{name:9s} {'map KB/image':18s} {a['kb_per_image']:8.1f} / {b['kb_per_image']:6.1f}")
        for key in a:
            if key == "kb_per_image":
                continue
            (r1a, r5a, ma, ca), (r1b, r5b, mb, cb) = a[key], b[key]
            if not key.startswith("auto"):  # auto chooses K by this run's timing: not comparable bit for bit
                equal &= (r1a, r5a) == (r1b, r5b)
            print(f"{name:9s} {key:18s} {r1a:8.1f} / {r1b:6.1f} {r5a:8.1f} / {r5b:6.1f} {ma:6.0f} / {mb:4.0f}"
                  + (f"  {ca} / {cb}" if ca or cb else ""))  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    verdict = "all equal" if equal else "DIFFER"
    print(f"summary: {args.rev} vs working tree: recalls {verdict} over {len(results)} sets (auto: timing-dependent)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
