"""Turning the per-frame modules into deployable artefacts: ONNX files and TensorRT programs.

The wrappers here (``GlobalNet``, ``DHENet``) are exactly what runs per frame, so an
exported graph computes what the eager model computes; ``check_onnx`` measures that.
TensorRT programs are cached on disk under a key that covers everything that makes
one (in)valid: model fingerprint, input shape, precision, GPU, TensorRT and torch.
Both ``vpr export`` and the inference backends build on this module.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import VprError
from ..io.files import atomic_write
from ..rerank.dhe import correlation

__all__ = [
    "ONNX_TOLERANCE",
    "DHENet",
    "Exported",
    "GlobalNet",
    "cache_dir",
    "cache_key",
    "check_onnx",
    "compile_tensorrt",
    "global_exported",
    "gpu_name",
    "temp_onnx",
    "to_onnx",
    "trt_version",
]

#: Max error accepted between onnxruntime (CPU, fp32) and eager torch, per output vector, so that it holds on any
#: CPU's kernels: descriptors and grid cells are unit vectors compared by relative L2 error (1e-2 is a cosine of
#: at least 0.99995; VLAD's intra-normalisation amplifies fp32 rounding in a cluster with little mass, measured up
#: to 2.6e-4); DHE points by their distance in pixels of the nominal frame (1e-2 px, far below the 16 px cell).
ONNX_TOLERANCE = {"global": 1e-2, "dhe": 1e-2}
#: TensorRT engine precisions.
PRECISIONS = ("fp16", "fp32")


class GlobalNet(nn.Module):
    """image (B, 3, H, W) in [0, 1] -> (descriptor, local grid): what the Localizer calls per frame."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        g, loc = self.model.describe(x)
        return g, loc


class DHENet(nn.Module):
    """Pooled grids -> the head's 8 points per candidate (query points 0-3, candidate points 4-7)."""

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.head = head

    def forward(self, q: torch.Tensor, cands: torch.Tensor) -> torch.Tensor:
        return self.head(correlation(q.expand(cands.shape[0], -1, -1, -1), cands))


@dataclass
class Exported:
    name: str
    module: nn.Module
    inputs: tuple[torch.Tensor, ...]
    input_names: list[str]
    output_names: list[str]
    dynamic: dict[str, dict[int, str]]


def global_exported(model: nn.Module, shape: tuple[int, ...]) -> Exported:
    """The global graph at one static input shape (one frame; adaptive pooling needs known sizes)."""
    return Exported("global", GlobalNet(model).eval(), (torch.rand(shape),), ["image"], ["descriptor", "local"], {})


@contextlib.contextmanager
def eager_attention() -> Iterator[None]:
    """Trace nn.TransformerEncoderLayer/MultiheadAttention through their plain ops: their fused inference kernel
    (``_transformer_encoder_layer_fwd``) has no ONNX or TensorRT form."""
    before = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(before)


def to_onnx(ex: Exported, out: str | Path, opset: int = 18) -> Path:
    """Write ONNX atomically (legacy TorchScript exporter: no onnxscript needed, stable op coverage)."""
    out = Path(out)

    def write(tmp: Path) -> None:
        with torch.no_grad(), eager_attention():
            ex.module(*ex.inputs)  # warm-up: per-size constants (a ViT's resized positional grid) get cached
            torch.onnx.export(
                ex.module,
                ex.inputs,
                str(tmp),
                input_names=ex.input_names,
                output_names=ex.output_names,
                dynamic_axes=ex.dynamic,
                opset_version=opset,
                dynamo=False,
            )

    try:
        atomic_write(out, write)
    except VprError:
        raise
    except Exception as e:  # the exporter's own errors are long; one line, naming the module
        raise VprError(f"ONNX export of '{ex.name}' failed: {type(e).__name__}: {str(e).splitlines()[0]}") from None
    return out


def check_onnx(ex: Exported, path: str | Path, trials: int = 3, seed: int = 0) -> float:
    """Max error of onnxruntime (CPU) against eager torch over random inputs, per output vector (see
    ``ONNX_TOLERANCE``): relative L2 along the channel axis for the global module, pixels per point for DHE."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(seed)
    worst = 0.0
    for i in range(trials):
        inputs = []
        for t in ex.inputs:
            x = torch.rand(t.shape, generator=gen)
            if ex.name == "dhe":
                x = F.normalize(x, dim=1)
                if i == 1 and t.shape[0] > 1:
                    x = x[: max(1, t.shape[0] // 3)]  # another K: the dynamic axis works
            inputs.append(x)
        with torch.no_grad():
            want = ex.module(*inputs)
        want = want if isinstance(want, tuple) else (want,)
        got = sess.run(None, {n: x.numpy() for n, x in zip(ex.input_names, inputs)})
        for w, g in zip(want, got):
            if tuple(w.shape) != tuple(g.shape):
                raise VprError(f"ONNX '{ex.name}' output shape {g.shape} != eager {tuple(w.shape)}")
            w = w.double().numpy()
            if ex.name == "dhe":  # (K, 8, 2) points in pixels
                err = np.linalg.norm(w - g, axis=-1)
            else:  # (B, D) descriptors, (B, C, gh, gw) grid cells: directions
                err = np.linalg.norm(w - g, axis=1) / np.maximum(np.linalg.norm(w, axis=1), 1e-12)
            worst = max(worst, float(err.max()))
    return worst


def temp_onnx(ex: Exported) -> Path:
    """An ONNX copy in a temporary folder (benchmarks, onnxruntime backend)."""
    return to_onnx(ex, Path(tempfile.mkdtemp(prefix="vpr-onnx-")) / f"{ex.name}.onnx")


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
    parts = {
        "kind": kind,
        "fingerprint": fingerprint,
        "shape": list(shape),
        "precision": precision,
        "gpu": gpu_name() if kind == "tensorrt" else "",
        "tensorrt": trt_version() if kind == "tensorrt" else "",
        "torch": torch.__version__.split("+")[0],
    }
    h = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]
    return f"{fingerprint}-{'x'.join(map(str, shape))}-{precision}-{h}"


def compile_tensorrt(
    module: torch.nn.Module,
    inputs: tuple[torch.Tensor, ...],
    precision: str = "fp16",
    out: Path | None = None,
    device: str = "auto",
) -> tuple[Path, dict[str, Any]]:
    """torch-tensorrt (dynamo) compile, saved as an ExportedProgram at ``out`` (atomically)."""
    if not torch.cuda.is_available():
        raise VprError(
            "TensorRT needs an NVIDIA GPU with CUDA; none here (export --format onnx and build with trtexec on the "
            "robot)"
        )
    try:
        import torch_tensorrt
    except ImportError as e:
        raise VprError(
            f"torch-tensorrt is not installed ({e}); pip install torch-tensorrt matching your torch, or use --format "
            "onnx"
        ) from None
    if precision not in PRECISIONS:
        raise VprError(f"precision must be fp16 or fp32, got '{precision}'")
    mod = module.cuda().eval()
    cuda_inputs = [x.cuda() for x in inputs]
    t0 = time.perf_counter()
    with torch.no_grad(), eager_attention():
        mod(*cuda_inputs)  # warm-up, as for ONNX: per-size constants are cached before tracing
        trt = torch_tensorrt.compile(
            mod,
            ir="dynamo",
            inputs=cuda_inputs,
            enabled_precisions={torch.half if precision == "fp16" else torch.float},
            min_block_size=1,
        )
    out = Path(out) if out else cache_dir() / "engine.ep"
    atomic_write(out, lambda t: torch_tensorrt.save(trt, str(t), inputs=cuda_inputs))
    return out, {
        "compile_s": time.perf_counter() - t0,
        "precision": precision,
        "gpu": gpu_name(),
        "tensorrt": trt_version(),
    }


def load_exported(path: str | Path):
    """``torch.export.load``, refusing any file whose payloads are not plain tensors and containers.

    torch.export.load retries with ``weights_only=False`` when a payload does not load safely, so a crafted
    file in the engine cache could run code. Every ``.pt`` member of the archive is loaded here with
    ``weights_only=True`` first; a member that needs more is refused (VprError), and export.load never sees it.
    """
    import io
    import json
    import zipfile

    path = Path(path)

    def refuse(why: str) -> VprError:
        return VprError(f"{path}: {why}; refusing to load it: delete the file (it may have been tampered with)")

    try:
        with zipfile.ZipFile(path) as z:
            members = [(i.filename, z.read(i)) for i in z.infolist() if i.filename.endswith(".pt")]
            configs = [(i.filename, z.read(i)) for i in z.infolist() if i.filename.endswith("_config.json")]
    except (OSError, zipfile.BadZipFile) as e:
        raise VprError(f"{path}: not an exported program ({e}); delete it, it is rebuilt") from None
    for name, raw in configs:  # the pt2 archive: payloads it would unpickle are flagged here
        try:
            entries = json.loads(raw).get("config", {})
        except (ValueError, AttributeError):
            raise refuse(f"{name} is not valid JSON") from None
        for fqn, meta in entries.items():
            path_name = str(meta.get("path_name", ""))
            if meta.get("use_pickle") or ("constants" in name and not path_name.startswith("tensor_")):
                raise refuse(f"{name}: '{fqn}' is stored as a pickled object, not plain tensor data")
    for name, data in members:
        if not data:
            continue
        try:
            torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
        except Exception as e:
            raise refuse(f"member {name} is not plain tensor data ({type(e).__name__})") from None
    return torch.export.load(str(path))
