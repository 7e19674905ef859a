"""Inference backends for the per-frame global model: TensorRT, onnxruntime, eager - with a logged fallback chain.

``auto`` on a CUDA device tries TensorRT (torch-tensorrt, dynamo IR, FP16), then CUDA
eager; on CPU it is eager. Compiled artefacts are cached on disk (see ``compile``), so
a robot compiles once and loads the engine at every later start. Any failure to load
or compile is logged and the next backend takes over; the chain of reasons is kept in
``runner.fallbacks`` for the node's diagnostics.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import torch

from ..errors import VprError
from .compile import GlobalNet, cache_dir, cache_key, compile_tensorrt, global_exported, load_exported, to_onnx
from .extractor import Extractor

__all__ = ["BACKENDS", "CompiledRunner", "EagerRunner", "OnnxRuntimeRunner", "Runner", "TensorRTRunner", "make_runner"]

log = logging.getLogger(__name__)

#: Backend names a user may give.
BACKENDS = ("auto", "eager", "tensorrt", "onnxruntime")

Output = tuple[torch.Tensor, torch.Tensor | None]


class Runner:
    """x (1, 3, H, W) on the model's device -> (global (1, D), local grid (1, C, gh, gw) or None), float32 tensors.

    Outputs stay on the extractor's device, so retrieval and re-ranking never round-trip
    through host memory. ``local=False`` lets a backend skip the grid (no re-ranker needs it).
    """

    name = "eager"

    def __init__(self) -> None:
        self.fallbacks: list[str] = []

    def __call__(self, x: torch.Tensor, local: bool = True) -> Output:
        raise NotImplementedError


class EagerRunner(Runner):
    def __init__(self, extractor: Extractor) -> None:
        super().__init__()
        self.ex = extractor
        self.name = f"eager-{extractor.device.type}{'-fp16' if extractor.fp16 else ''}"

    def __call__(self, x: torch.Tensor, local: bool = True) -> Output:
        return self.ex.describe(x, local)


class CompiledRunner(Runner):
    """One compiled artefact per input shape, built on first use (cached on disk); on failure, eager takes over for
    good."""

    kind = ""

    def __init__(self, extractor: Extractor, fingerprint: str, precision: str) -> None:
        super().__init__()
        self.ex, self.fingerprint, self.precision = extractor, fingerprint, precision
        self.fallback = EagerRunner(extractor)
        self.compiled: dict[tuple[int, ...], Callable[[torch.Tensor], Output]] = {}
        self.failed: str | None = None
        self.name = f"{self.kind}-{precision}"

    def artefact(self, shape: tuple[int, ...]) -> Callable[[torch.Tensor], Output]:
        raise NotImplementedError

    def __call__(self, x: torch.Tensor, local: bool = True) -> Output:
        if self.failed:
            return self.fallback(x, local)
        shape = tuple(x.shape)
        try:
            if shape not in self.compiled:
                self.compiled[shape] = self.artefact(shape)
            g, loc = self.compiled[shape](x)
        except Exception as e:
            why = str(e).splitlines()[0] if str(e) else ""
            self.failed = f"{self.kind} failed ({type(e).__name__}: {why}); using {self.fallback.name}"
            self.fallbacks.append(self.failed)
            self.name = self.fallback.name
            log.warning("%s", self.failed)
            return self.fallback(x, local)
        return g, (loc if local else None)

    def path(self, shape: tuple[int, ...], suffix: str) -> Path:
        return cache_dir() / f"{cache_key(self.kind, self.fingerprint, shape, self.precision)}{suffix}"


class OnnxRuntimeRunner(CompiledRunner):
    """The exported ONNX graph under onnxruntime (CPU, or CUDA when its provider exists).

    onnxruntime takes host arrays: the frame goes to the host once and the outputs come
    back to the extractor's device (a no-op on CPU, where this backend is meant to run).
    """

    kind = "onnxruntime"

    def artefact(self, shape: tuple[int, ...]) -> Callable[[torch.Tensor], Output]:
        import onnxruntime as ort

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
        device = self.ex.device

        def run(x: torch.Tensor) -> Output:
            g, loc = sess.run(None, {"image": x.detach().cpu().numpy()})
            return torch.from_numpy(g).to(device), torch.from_numpy(loc).to(device)

        return run


class TensorRTRunner(CompiledRunner):
    kind = "tensorrt"

    def artefact(self, shape: tuple[int, ...]) -> Callable[[torch.Tensor], Output]:
        path = self.path(shape, ".ep")
        mod = None
        if path.exists():
            try:
                mod = load_exported(path).module()
                log.info("TensorRT: loaded cached engine %s", path)
            except Exception as e:  # stale or torn: rebuild
                log.warning("TensorRT: cached engine %s unusable (%s); recompiling", path, e)
        if mod is None:
            log.warning(
                "TensorRT: compiling the global model for input %s (%s) once; cached at %s", shape, self.precision, path
            )
            path.parent.mkdir(parents=True, exist_ok=True)
            compile_tensorrt(GlobalNet(self.ex.model).eval(), (torch.rand(shape),), self.precision, path)
            mod = load_exported(path).module()

        def run(x: torch.Tensor) -> Output:
            with torch.no_grad():
                g, loc = mod(x.cuda())
            return g.float(), loc.float()

        return run


def make_runner(extractor: Extractor, backend: str, fingerprint: str, precision: str = "fp16") -> Runner:
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
