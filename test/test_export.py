"""Export and backends: ONNX parity on CPU, the onnxruntime backend and its cache, fallbacks, torch top-k search.

TensorRT/CUDA checks run only where CUDA is present (skipped with the reason otherwise).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import NET_RTOL, VPR, assert_one_line_error, assert_vectors_close, reduction_atol, vpr

from vpr_core.eval.recall import evaluate
from vpr_core.io.geoset import load_geoset
from vpr_core.io.images import load_image
from vpr_core.localize.localizer import Localizer

no_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device: TensorRT/CUDA paths need an NVIDIA GPU"
)


@pytest.fixture()
def engine_cache(tmp_path, monkeypatch) -> Path:
    d = tmp_path / "engines"
    monkeypatch.setenv("VPR_ENGINE_CACHE", str(d))
    return d


def test_onnx_export_matches_eager(street_map, tmp_path):
    import onnxruntime as ort

    out = tmp_path / "m"
    r = subprocess.run(
        [*VPR, "export", "--map", str(street_map), "--format", "onnx", "--module", "all", "--out", str(out), "--check"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    assert "global:" in r.stdout and "dhe:" in r.stdout and r.stdout.count("max error") == 2
    # the global graph: float32 NCHW RGB in [0, 1] at the configured size -> the map's descriptor (vocabulary baked in)
    sess = ort.InferenceSession(str(tmp_path / "m.global.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["image"] and sess.get_inputs()[0].shape == [1, 3, 240, 320]
    loc = Localizer.from_file(street_map, device="cpu", backend="eager")
    img = load_image(sorted((Path(loc.map.info["source"])).iterdir())[0])
    x = loc.extractor.to_tensor([img])
    g, local = sess.run(None, {"image": x.numpy()})
    want, want_local = loc.extractor.describe_local(x)
    # fp32 on other kernels: the same directions (descriptor, every grid cell), unit norm, the same ranking
    assert_vectors_close(g, want, NET_RTOL) and assert_vectors_close(local, want_local, NET_RTOL, axis=1)
    assert np.linalg.norm(g, axis=1) == pytest.approx(1.0, abs=reduction_atol(g.shape[1]))
    ranked = np.argsort(-(loc.map.descriptors.astype(np.float32) @ g[0]))
    assert ranked[0] == 0  # the first map image finds itself through the ONNX graph
    assert np.array_equal(ranked[:5], np.argsort(-(loc.map.descriptors.astype(np.float32) @ want[0]))[:5])
    # the DHE graph takes any number of candidates
    dhe = ort.InferenceSession(str(tmp_path / "m.dhe.onnx"), providers=["CPUExecutionProvider"])
    q = np.random.default_rng(0).random((1, 64, 9, 12), dtype=np.float32)
    for k in (1, 7):
        assert dhe.run(None, {"query": q, "candidates": np.repeat(q, k, axis=0)})[0].shape == (k, 8, 2)


def test_export_errors_are_one_line(tmp_path):
    for args, needle in (
        (["--model", "xfeat-vlad", "--format", "onnx"], "export with --map MAP"),
        (
            ["--model", "xfeat-gem", "--format", "tensorrt"],
            "TensorRT needs an NVIDIA GPU" if not torch.cuda.is_available() else "",
        ),
        (["--format", "onnx"], "give --model NAME or --map MAP"),
    ):
        r = vpr("export", *args, "--out", tmp_path / "x.onnx", ok=False)
        if needle:
            assert_one_line_error(r, needle)
    assert not (tmp_path / "x.onnx").exists()


def test_onnxruntime_backend_agrees_and_caches(street, street_map, engine_cache):
    q = load_geoset(street / "queries", frame=load_geoset(street / "database").frame)
    eager, _ = evaluate(
        Localizer.from_file(street_map, device="cpu", backend="eager", reranker="ransac"), q, 5.0, progress=False
    )
    loc = Localizer.from_file(street_map, device="cpu", backend="onnxruntime", reranker="ransac")
    ort_rep, est = evaluate(loc, q, 5.0, progress=False)
    assert ort_rep["backend"] == "onnxruntime-fp32" and not loc.runner.fallbacks
    assert (ort_rep["recall@1"], ort_rep["recall@5"]) == (eager["recall@1"], eager["recall@5"])
    assert ort_rep["median_error_m"] == pytest.approx(eager["median_error_m"], abs=0.01)  # 1 cm on a 2 m map
    cached = list(engine_cache.glob("*.onnx"))
    assert len(cached) == 1 and loc.map.fingerprint in cached[0].name and "1x3x240x320" in cached[0].name
    mtime = cached[0].stat().st_mtime_ns
    again = Localizer.from_file(street_map, device="cpu", backend="onnxruntime")
    again.localize(load_image(q.paths[0]))
    assert cached[0].stat().st_mtime_ns == mtime  # loaded, not exported again
    # a broken cached file: the backend steps down to eager, says why, and keeps localizing
    cached[0].write_bytes(b"not onnx")
    broken = Localizer.from_file(street_map, device="cpu", backend="onnxruntime")
    est = broken.localize(load_image(q.paths[0]))
    assert (
        broken.runner.name == "eager-cpu"
        and "onnxruntime failed" in broken.runner.fallbacks[0]
        and np.isfinite(est.lat)
    )


def test_onnxruntime_backend_serves_a_wide_camera(street, street_map, engine_cache):
    """A 16:9 camera keeps its aspect (``keep_aspect``), so its feature map does not divide the local grid; the
    exported graph pools it all the same (no fallback to eager) and agrees with eager."""
    import cv2
    import torch.nn.functional as F

    from vpr_core.models.base import adaptive_avg_pool

    x = torch.randn(2, 8, 26, 46)
    for size in ((30, 40), (9, 12), (26, 46)):
        # two matrix products (rows, then columns): sums of at most H + W terms of |x| <= max|x|
        tol = reduction_atol(sum(x.shape[-2:]), float(x.abs().max()))
        assert torch.allclose(adaptive_avg_pool(x, size), F.adaptive_avg_pool2d(x, size), rtol=0, atol=tol)
    with torch.inference_mode():  # the bin matrices are cached: one first made while localizing still trains
        adaptive_avg_pool(torch.randn(1, 8, 27, 47), (30, 40))
    x = torch.randn(1, 8, 27, 47, requires_grad=True)
    adaptive_avg_pool(x, (30, 40)).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    img = cv2.resize(load_image(load_geoset(street / "queries").paths[0]), (640, 360), interpolation=cv2.INTER_AREA)
    eager = Localizer.from_file(street_map, device="cpu", backend="eager", reranker="none")
    shape = eager.extractor.to_tensor([img]).shape
    assert shape[-1] // 8 % 40 and shape[-2] // 8 % 30, shape  # pooling that ONNX's own operator refuses
    loc = Localizer.from_file(street_map, device="cpu", backend="onnxruntime", reranker="none")
    a, b = eager.localize(img), loc.localize(img)
    assert loc.runner.name == "onnxruntime-fp32" and not loc.runner.fallbacks, loc.runner.fallbacks
    assert [m.index for m in a.matches] == [m.index for m in b.matches]
    # scores are cosines of unit descriptors: |d cos| <= |d descriptor|
    assert [m.score for m in b.matches] == pytest.approx([m.score for m in a.matches], abs=NET_RTOL)


def test_tensorrt_request_falls_back_on_cpu(street_map):
    if torch.cuda.is_available():
        pytest.skip("CUDA present: the fallback applies to machines without it")
    loc = Localizer.from_file(street_map, device="cpu", backend="tensorrt")
    assert loc.runner.name == "eager-cpu" and "tensorrt needs a CUDA device" in loc.runner.fallbacks[0]


def test_torch_topk_search_matches_faiss():
    from vpr_core.localize.retrieval import Index, TorchIndex, make_index

    rng = np.random.default_rng(0)
    db = rng.normal(size=(500, 64)).astype(np.float32)
    db /= np.linalg.norm(db, axis=1, keepdims=True)
    q = db[[3, 77]] + 0.01 * rng.normal(size=(2, 64)).astype(np.float32)
    s1, i1 = Index(db).search(q, 5)
    s2, i2 = TorchIndex(db, "cpu").search(q, 5)
    assert np.array_equal(i1, i2) and np.allclose(s1, s2, rtol=0, atol=reduction_atol(64)) and i1[0, 0] == 3
    assert isinstance(make_index(db, device=torch.device("cpu")), Index)  # CPU: faiss
    assert isinstance(make_index(db, retrieval="torch"), TorchIndex)


@no_cuda
def test_tensorrt_fp16_matches_eager(street_map, engine_cache):
    pytest.importorskip("torch_tensorrt", reason="torch-tensorrt not installed")
    eager = Localizer.from_file(street_map, device="cuda", backend="eager")
    trt = Localizer.from_file(street_map, device="cuda", backend="tensorrt")
    img = load_image(sorted(Path(eager.map.info["source"]).iterdir())[0])
    a, b = eager.localize(img), trt.localize(img)
    assert trt.runner.name == "tensorrt-fp16" and not trt.runner.fallbacks
    assert a.matches[0].index == b.matches[0].index
    assert len(list(engine_cache.glob("*.ep"))) == 1


@no_cuda
def test_cuda_retrieval_uses_the_gpu(street_map):
    loc = Localizer.from_file(street_map, device="cuda")
    assert loc.index.on_gpu


def test_gpu_check_script_runs(tmp_path):
    """`make gpu-check` on the CPU (--cpu-smoke): the same code paths, so the script never rots untested."""
    script = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.py"
    env = dict(os.environ, VPR_ENGINE_CACHE=str(tmp_path))
    r = subprocess.run([sys.executable, str(script), "--cpu-smoke", "--frames", "2"], capture_output=True, text=True,
                       timeout=600, env=env)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    for row in ("eager fp32", "eager fp16", "eager bf16", "torch.compile", "TensorRT", "GPU retrieval"):
        assert row in r.stdout, row
    for method in ("ransac", "dhe", "lighterglue", "dhe+lighterglue"):
        assert re.search(rf"re-rank {re.escape(method)} K=10 +p50 [0-9.]+ ms", r.stdout), method
    assert "reranker auto -> " in r.stdout
    for model in ("eigenplaces", "mixvpr", "salad", "boq", "boq-dinov2"):
        assert re.search(rf"model {model} \d+x\d+ +fp32 [0-9.]+ ms, fp16 [0-9.]+ ms", r.stdout), model
    assert "top-1 agreement with faiss 1.00" in r.stdout and r.stdout.strip().splitlines()[-1].startswith("summary:")
