#!/usr/bin/env python3
"""Per-stage latency and peak memory of every backend present, measured in one run.

    python bench/bench_accel.py --map MAP --queries DIR [--n 40] [--device cpu|cuda]

Each backend runs in its own process (clean peak memory): the Localizer with the
DHE re-ranker at K=32 over the same queries gives preprocess / global / search /
re-rank / total p50 and p95; the two exported modules are also timed alone:
the global model (one frame) and the DHE head (K=32 pooled grid pairs).
Backends: eager-cpu and onnxruntime always; on CUDA also eager-cuda (FP32 and FP16
autocast) and TensorRT FP16 when torch-tensorrt is installed. Ends with one
summary line: speed-ups over eager FP32 on the same device.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vpr_core.runtime.timing import timed_ms

STAGES = ("preprocess", "global", "search", "rerank", "total")


def worker(args: argparse.Namespace) -> dict:
    from vpr_core.io.geoset import load_geoset
    from vpr_core.io.images import load_image
    from vpr_core.localize.localizer import Localizer
    from vpr_core.map.model import map_model
    from vpr_core.rerank.dhe import map_head
    from vpr_core.runtime.export import dhe_module, global_module

    device, backend, fp16 = args.device, args.worker, args.worker.endswith("fp16")
    name = backend.replace("-fp16", "")
    loc = Localizer.from_file(
        args.map, device=device, backend="eager" if name == "eager" else name, reranker="dhe", reranker_top_k=32
    )
    loc.extractor.fp16 = fp16 and loc.extractor.device.type == "cuda"
    q = load_geoset(args.queries, frame=loc.map.frame)
    images = [load_image(p) for p in q.paths[: args.n]]
    loc.localize(images[0])  # compile / load / warm up
    timings = [loc.localize(img).timings for img in images]
    ran = loc.runner.name + ("-fp16" if loc.extractor.fp16 and not loc.runner.name.endswith("fp16") else "")
    out = {"backend": ran, "fallbacks": loc.runner.fallbacks, "n": len(images)}
    for s in STAGES:
        v = [t[s] for t in timings]
        out[s] = (float(np.percentile(v, 50)), float(np.percentile(v, 95)))
    # the exported modules alone
    g = global_module(map_model(loc.map))
    c, gh, gw = loc.map.local_shape
    d = dhe_module(map_head(loc.map)[0], (gw, gh), c)
    dev = loc.extractor.device
    if name == "onnxruntime":
        import onnxruntime as ort

        from vpr_core.runtime.compile import temp_onnx

        sg = ort.InferenceSession(str(temp_onnx(g)), providers=["CPUExecutionProvider"])
        sd = ort.InferenceSession(str(temp_onnx(d)), providers=["CPUExecutionProvider"])
        gi = {"image": g.inputs[0].numpy()}
        di = {"query": d.inputs[0].numpy(), "candidates": d.inputs[1].numpy()}
        out["module_global"] = float(np.median(timed_ms(lambda: sg.run(None, gi), args.repeat)))
        out["module_dhe"] = float(np.median(timed_ms(lambda: sd.run(None, di), args.repeat)))
    elif name == "tensorrt":
        from vpr_core.runtime.compile import compile_tensorrt

        tmp = Path(tempfile.mkdtemp())
        for ex, key in ((g, "module_global"), (d, "module_dhe")):
            path, _ = compile_tensorrt(ex.module, ex.inputs, "fp16", tmp / f"{key}.ep")
            mod = torch.export.load(str(path)).module()
            xs = [x.cuda() for x in ex.inputs]
            with torch.no_grad():
                out[key] = float(np.median(timed_ms(lambda m=mod, xs=xs: m(*xs), args.repeat)))
    else:
        for ex, key in ((g, "module_global"), (d, "module_dhe")):
            m = ex.module.to(dev)
            xs = [x.to(dev) for x in ex.inputs]
            with torch.no_grad(), torch.autocast("cuda", dtype=torch.float16, enabled=fp16 and dev.type == "cuda"):
                out[key] = float(np.median(timed_ms(lambda m=m, xs=xs: m(*xs), args.repeat)))
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["peak_cuda_mib"] = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else 0.0
    return out


def backends(device: str) -> list[str]:
    found = ["eager"]
    try:
        import onnxruntime  # noqa: F401

        found.append("onnxruntime")
    except ImportError:
        pass
    if device == "cuda":
        found.append("eager-fp16")
        try:
            import torch_tensorrt  # noqa: F401

            found.append("tensorrt")
        except ImportError:
            print("torch-tensorrt not installed: no TensorRT row", file=sys.stderr)
    return found


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--map", required=True)
    ap.add_argument("--queries", required=True)
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return 0
    env = dict(os.environ, VPR_ENGINE_CACHE=tempfile.mkdtemp(prefix="vpr-bench-engines-"))
    rows = []
    for b in backends(args.device):
        r = subprocess.run(
            [
                sys.executable,
                __file__,
                "--map",
                args.map,
                "--queries",
                args.queries,
                "--n",
                str(args.n),
                "--repeat",
                str(args.repeat),
                "--device",
                args.device,
                "--worker",
                b,
            ],
            capture_output=True,
            text=True,
            env=env,
        )
        if r.returncode != 0:
            print(
                f"{b}: failed: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}",
                file=sys.stderr,
            )
            continue
        row = json.loads(r.stdout.strip().splitlines()[-1])
        if row["fallbacks"]:  # it ran, but not on the backend asked for: label it so, never as that backend
            row["backend"] = f"{b}->{row['backend']}"
        rows.append(row)
    if not rows:
        print("summary: no backend ran (errors above)", file=sys.stderr)
        return 1
    dev = torch.cuda.get_device_name(0) if args.device == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"device: {dev}; Localizer with dhe K=32, {rows[0]['n'] if rows else 0} queries; ms p50/p95")
    print(
        f"{'backend':18s} "
        + " ".join(f"{s:>13s}" for s in STAGES)
        + f" {'global mod':>10s} {'dhe mod':>8s} {'RSS MiB':>8s} {'CUDA MiB':>8s}"
    )
    for r in rows:
        cells = " ".join(f"{r[s][0]:6.1f}/{r[s][1]:6.1f}" for s in STAGES)
        print(
            f"{r['backend']:18s} {cells} {r['module_global']:10.2f} {r['module_dhe']:8.2f} {r['peak_rss_mib']:8.0f} "
            f"{r['peak_cuda_mib']:8.0f}"
        )
        for f in r["fallbacks"]:
            print(f"   fallback: {f}")
    base = next((r for r in rows if r["backend"] in ("eager-cpu", "eager-cuda")), None)
    if base:
        parts = [
            f"{r['backend']}: global x{base['module_global'] / r['module_global']:.2f}, dhe "
            f"x{base['module_dhe'] / r['module_dhe']:.2f}, "
            f"total x{base['total'][0] / r['total'][0]:.2f}"
            for r in rows
            if r is not base
        ]
        print(
            f"summary ({dev}): speed-up over {base['backend']} FP32 - "
            + ("; ".join(parts) or "no other backend present")
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
