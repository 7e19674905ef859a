"""``vpr export``: the global model (with its map-specific parts) and the DHE head as ONNX or TensorRT.

Exported modules, at fixed configured sizes:
- ``global``: float32 NCHW RGB in [0, 1] at the model's input size -> ``descriptor``
  (B, D), L2-normalised, plus ``local`` (B, C, gh, gw), the dense grid re-rankers use.
  From a map, the map's vocabulary (VLAD centres, PCA) is baked in.
- ``dhe``: ``query`` (1, C, h, w) and ``candidates`` (K, C, h, w) grids already pooled
  to the head grid -> ``points`` (K, 8, 2); correlation + transformer + linear, the
  part that costs. Pooling, DLT and the inlier count stay in torch (cheap, and
  their SVD/solve ops do not export portably). K is a dynamic axis.
ONNX is the portable path (``trtexec --onnx=... --fp16`` on a Jetson); ``--check``
runs onnxruntime on CPU against eager on random inputs and prints the max abs error.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .errors import VprError
from .mapdb import atomic_write

log = logging.getLogger(__name__)

#: Max abs error accepted between onnxruntime (CPU, fp32) and eager torch: descriptors and grids are unit
#: vectors; DHE points are pixels of the nominal frame (1e-2 px is far below the 16 px grid cell).
ONNX_TOLERANCE = {"global": 1e-4, "dhe": 1e-2}


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
        from .rerank.dhe import correlation

        return self.head(correlation(q.expand(cands.shape[0], -1, -1, -1), cands))


@dataclass
class Exported:
    name: str
    module: nn.Module
    inputs: tuple[torch.Tensor, ...]
    input_names: list[str]
    output_names: list[str]
    dynamic: dict[str, dict[int, str]]


def global_module(model_name: str | None = None, map_path: str | Path | None = None, model_conf: dict[str, Any] | None = None,
                  input_size: tuple[int, int] | None = None) -> tuple[Exported, Any]:  # fmt: skip
    """The global model, from a map (vocabulary included, fingerprint checked) or by name."""
    from .models import build_global_model

    if map_path:
        from .localizer import map_model
        from .mapdb import load_map

        model = map_model(load_map(map_path), model_conf)
    else:
        model = build_global_model(model_name or "xfeat-vlad", model_conf)
        if model.needs_fit:
            raise VprError(f"'{model.name}' learns its vocabulary from a map; export with --map MAP")
    model.eval()
    w, h = input_size or model.input_size
    return global_exported(model, (1, 3, int(h), int(w))), model


def global_exported(model: nn.Module, shape: tuple[int, ...]) -> Exported:
    """The global graph at one static input shape (one frame; adaptive pooling needs known sizes)."""
    return Exported("global", GlobalNet(model).eval(), (torch.rand(shape),), ["image"], ["descriptor", "local"], {})


def dhe_module(weights: str | Path | None = None, map_path: str | Path | None = None, channels: int = 64, k: int = 32) -> Exported:
    """The DHE head: explicit weights, else the map's adapted head, else the head shipped for the map's (or the default) model."""
    from .mapdb import load_map
    from .rerank.dhe import SHIPPED_HEADS, WEIGHTS_DIR, grid_for, load_dhe_head, map_head

    grid = (40, 30)  # XFeat's stored grid at the default input size
    head = load_dhe_head(str(weights)) if weights else None
    if map_path:
        vmap = load_map(map_path)
        if head is None:
            head = map_head(vmap, str(map_path))[0]
        if vmap.local is not None:
            channels, gh, gw = vmap.local.shape[1:]
            grid = (gw, gh)
    if head is None:
        head = load_dhe_head(str(WEIGHTS_DIR / SHIPPED_HEADS["xfeat-vlad"]))
    gw, gh = grid_for(*grid)  # the head grid the dhe re-ranker pools to
    if gw * gh != head.tokens:
        raise VprError(f"DHE head has {head.tokens} grid cells but this map's grid pools to {gw}x{gh}; export weights trained for this model")
    q = F.normalize(torch.rand(1, int(channels), gh, gw), dim=1)
    c = F.normalize(torch.rand(k, int(channels), gh, gw), dim=1)
    return Exported("dhe", DHENet(head.eval()).eval(), (q, c), ["query", "candidates"], ["points"], {"candidates": {0: "K"}, "points": {0: "K"}})


def to_onnx(ex: Exported, out: str | Path, opset: int = 18) -> Path:
    """Write ONNX atomically (legacy TorchScript exporter: no onnxscript needed, stable op coverage)."""
    out = Path(out)

    def write(tmp: Path) -> None:
        with torch.no_grad():
            torch.onnx.export(ex.module, ex.inputs, str(tmp), input_names=ex.input_names, output_names=ex.output_names,
                              dynamic_axes=ex.dynamic, opset_version=opset, dynamo=False)  # fmt: skip

    try:
        atomic_write(out, write)
    except VprError:
        raise
    except Exception as e:  # the exporter's own errors are long; one line, naming the module
        raise VprError(f"ONNX export of '{ex.name}' failed: {type(e).__name__}: {str(e).splitlines()[0]}") from None
    return out


def check_onnx(ex: Exported, path: str | Path, trials: int = 3, seed: int = 0) -> float:
    """Max abs error of onnxruntime (CPU) against eager torch over random inputs (every output)."""
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
            worst = max(worst, float(np.abs(w.numpy() - g).max()))
    return worst


def export(kind: str, fmt: str, out: str | Path, model: str | None = None, map_path: str | Path | None = None, precision: str = "fp16",
           check: bool = False, dhe_weights: str | None = None, input_size: tuple[int, int] | None = None, device: str = "auto") -> dict[str, Any]:  # fmt: skip
    """One module (``global`` or ``dhe``) to ``out``; returns a record of what was written (and the parity error)."""
    ex = global_module(model, map_path, input_size=input_size)[0] if kind == "global" else dhe_module(dhe_weights, map_path)
    rec: dict[str, Any] = {"module": kind, "format": fmt, "path": str(out), "inputs": {n: list(t.shape) for n, t in zip(ex.input_names, ex.inputs)}}
    if fmt == "onnx":
        to_onnx(ex, out)
        if check:
            rec["max_abs_error"] = check_onnx(ex, out)
            rec["tolerance"] = ONNX_TOLERANCE[kind]
            if rec["max_abs_error"] > ONNX_TOLERANCE[kind]:
                raise VprError(f"ONNX '{kind}' differs from eager by {rec['max_abs_error']:.2e} > {ONNX_TOLERANCE[kind]:g}; do not deploy it")
        return rec
    from .accel import compile_tensorrt

    path, info = compile_tensorrt(ex.module, ex.inputs, precision=precision, out=Path(out), device=device)
    rec |= info
    return rec


def temp_onnx(ex: Exported) -> Path:
    """An ONNX copy in a temporary folder (benchmarks, onnxruntime backend)."""
    return to_onnx(ex, Path(tempfile.mkdtemp(prefix="vpr-onnx-")) / f"{ex.name}.onnx")
