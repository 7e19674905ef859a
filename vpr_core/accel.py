"""Inference backends for the per-frame global model: TensorRT, onnxruntime, eager - with a logged fallback chain.

``auto`` on a CUDA device tries TensorRT (torch-tensorrt, dynamo IR, FP16), then CUDA
eager; on CPU it is eager. Compiled artefacts are cached on disk, keyed by model
fingerprint, input shape, precision, GPU name and TensorRT version, so a robot
compiles once and loads the engine at every later start. Any failure to load or
compile is logged and the next backend takes over; the chain of reasons is kept in
``runner.fallbacks`` for the node's diagnostics.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import VprError
from .mapdb import atomic_write

log = logging.getLogger(__name__)

BACKENDS = ("auto", "eager", "tensorrt", "onnxruntime")

def cache_dir() -> Path:
    return Path(os.environ.get("VPR_ENGINE_CACHE") or Path.home() / ".cache" / "vpr_ros" / "engines")


def trt_version() -> str | None:
    try:
        import tensorrt

        return str(tensorrt.__version__)
    except Exception:
        return None


def gpu_name() -> str:
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


def cache_key(kind: str, fingerprint: str, shape: tuple[int, ...], precision: str) -> str:
    """File stem unique to everything that makes an engine (in)valid."""
    parts = {"kind": kind, "fingerprint": fingerprint, "shape": list(shape), "precision": precision, "gpu": gpu_name() if kind == "tensorrt" else "",
             "tensorrt": trt_version() if kind == "tensorrt" else "", "torch": torch.__version__.split("+")[0]}  # fmt: skip
    h = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]
    return f"{fingerprint}-{'x'.join(map(str, shape))}-{precision}-{h}"


def compile_tensorrt(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], precision: str = "fp16", out: Path | None = None,
                     device: str = "auto") -> tuple[Path, dict[str, Any]]:  # fmt: skip
    """torch-tensorrt (dynamo) compile, saved as an ExportedProgram at ``out`` (atomically)."""
    if not torch.cuda.is_available():
        raise VprError("TensorRT needs an NVIDIA GPU with CUDA; none here (export --format onnx and build with trtexec on the robot)")
    try:
        import torch_tensorrt
    except ImportError as e:
        raise VprError(f"torch-tensorrt is not installed ({e}); pip install torch-tensorrt matching your torch, or use --format onnx") from None
    if precision not in ("fp16", "fp32"):
        raise VprError(f"precision must be fp16 or fp32, got '{precision}'")
    mod = module.cuda().eval()
    cuda_inputs = [x.cuda() for x in inputs]
    t0 = time.perf_counter()
    with torch.no_grad():
        trt = torch_tensorrt.compile(mod, ir="dynamo", inputs=cuda_inputs, enabled_precisions={torch.half if precision == "fp16" else torch.float}, min_block_size=1)
    out = Path(out) if out else cache_dir() / "engine.ep"
    atomic_write(out, lambda t: torch_tensorrt.save(trt, str(t), inputs=cuda_inputs))
    return out, {"compile_s": time.perf_counter() - t0, "precision": precision, "gpu": gpu_name(), "tensorrt": trt_version()}


class Runner:
    """x (1, 3, H, W) on the model's device -> (global (1, D) numpy, local grid (1, C, gh, gw) float32 CPU tensor or None).

    ``local=False`` lets a backend skip handing over the grid (no re-ranker needs it).
    """

    name = "eager"

    def __init__(self) -> None:
        self.fallbacks: list[str] = []

    def __call__(self, x: torch.Tensor, local: bool = True) -> tuple[np.ndarray, torch.Tensor | None]:
        raise NotImplementedError


class EagerRunner(Runner):
    def __init__(self, extractor) -> None:
        super().__init__()
        self.ex = extractor
        self.name = f"eager-{extractor.device.type}{'-fp16' if extractor.fp16 else ''}"

    def __call__(self, x: torch.Tensor, local: bool = True) -> tuple[np.ndarray, torch.Tensor | None]:
        return self.ex.describe_local(x) if local else (self.ex(x), None)


class CompiledRunner(Runner):
    """One compiled artefact per input shape, built on first use (cached on disk); on failure, eager takes over for good."""

    kind = ""

    def __init__(self, extractor, fingerprint: str, precision: str) -> None:
        super().__init__()
        self.ex, self.fingerprint, self.precision = extractor, fingerprint, precision
        self.fallback = EagerRunner(extractor)
        self.compiled: dict[tuple[int, ...], Callable] = {}
        self.failed: str | None = None
        self.name = f"{self.kind}-{precision}"

    def artefact(self, shape: tuple[int, ...]) -> Callable:
        raise NotImplementedError

    def __call__(self, x: torch.Tensor, local: bool = True) -> tuple[np.ndarray, torch.Tensor | None]:
        if self.failed:
            return self.fallback(x, local)
        shape = tuple(x.shape)
        try:
            if shape not in self.compiled:
                self.compiled[shape] = self.artefact(shape)
            g, loc = self.compiled[shape](x)
        except Exception as e:
            self.failed = f"{self.kind} failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); using {self.fallback.name}"
            self.fallbacks.append(self.failed)
            self.name = self.fallback.name
            log.warning("%s", self.failed)
            return self.fallback(x, local)
        return np.asarray(g, dtype=np.float32), loc

    def path(self, shape: tuple[int, ...], suffix: str) -> Path:
        return cache_dir() / f"{cache_key(self.kind, self.fingerprint, shape, self.precision)}{suffix}"


class OnnxRuntimeRunner(CompiledRunner):
    """The exported ONNX graph under onnxruntime (CPU, or CUDA when its provider exists)."""

    kind = "onnxruntime"

    def artefact(self, shape: tuple[int, ...]) -> Callable:
        import onnxruntime as ort

        from .export import global_exported, to_onnx

        path = self.path(shape, ".onnx")
        if path.exists():
            log.info("onnxruntime: cached model %s", path)
        else:
            log.warning("onnxruntime: exporting the global model for input %s once to %s", shape, path)
            path.parent.mkdir(parents=True, exist_ok=True)
            to_onnx(global_exported(self.ex.model, shape), path)
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = torch.get_num_threads()
        sess = ort.InferenceSession(str(path), opts, providers=providers)

        def run(x: torch.Tensor):
            g, loc = sess.run(None, {"image": x.detach().cpu().numpy()})
            return g, torch.from_numpy(loc)

        return run


class TensorRTRunner(CompiledRunner):
    kind = "tensorrt"

    def artefact(self, shape: tuple[int, ...]) -> Callable:
        from .export import GlobalNet

        path = self.path(shape, ".ep")
        mod = None
        if path.exists():
            try:
                mod = torch.export.load(str(path)).module()
                log.info("TensorRT: loaded cached engine %s", path)
            except Exception as e:  # stale or torn: rebuild
                log.warning("TensorRT: cached engine %s unusable (%s); recompiling", path, e)
        if mod is None:
            log.warning("TensorRT: compiling the global model for input %s (%s) once; cached at %s", shape, self.precision, path)
            path.parent.mkdir(parents=True, exist_ok=True)
            compile_tensorrt(GlobalNet(self.ex.model).eval(), (torch.rand(shape),), self.precision, path)
            mod = torch.export.load(str(path)).module()

        def run(x: torch.Tensor):
            with torch.no_grad():
                g, loc = mod(x.cuda())
            return g.float().cpu().numpy(), loc.float().cpu()

        return run


def make_runner(extractor, backend: str, fingerprint: str, precision: str = "fp16") -> Runner:
    """The requested backend, or the first that can run here - each step down logged and kept in ``fallbacks``."""
    if backend not in BACKENDS:
        raise VprError(f"backend '{backend}' unknown; choose one of {', '.join(BACKENDS)}")
    cuda = extractor.device.type == "cuda"
    reasons: list[str] = []
    if backend == "auto":
        backend = "tensorrt" if cuda else "eager"
    runner: Runner | None = None
    if backend == "tensorrt":
        if not cuda:
            reasons.append(f"tensorrt needs a CUDA device (running on {extractor.device.type})")
        else:
            try:
                import torch_tensorrt  # noqa: F401

                runner = TensorRTRunner(extractor, fingerprint, precision)
            except ImportError:
                reasons.append("torch-tensorrt is not installed")
    elif backend == "onnxruntime":
        try:
            import onnxruntime  # noqa: F401

            runner = OnnxRuntimeRunner(extractor, fingerprint, "fp32")
        except ImportError:
            reasons.append("onnxruntime is not installed")
    if runner is None:
        runner = EagerRunner(extractor)
        if reasons:
            reasons[-1] += f"; using {runner.name}"
            log.warning("backend: %s", reasons[-1])
    runner.fallbacks = reasons + runner.fallbacks
    return runner
