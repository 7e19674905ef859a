"""``vpr export``: the global model (with its map-specific parts) and the DHE head as ONNX or TensorRT.

Exported modules, at fixed configured sizes:
- ``global``: float32 NCHW RGB in [0, 1] at the model's input size -> ``descriptor``
  (B, D), L2-normalised, plus ``local`` (B, C, gh, gw), the dense grid re-rankers use.
  From a map, the map's vocabulary (VLAD centres, PCA) is baked in.
- ``dhe``: ``query`` (1, C, h, w) and ``candidates`` (K, C, h, w) grids already pooled
  to the head grid -> ``points`` (K, 8, 2); correlation + transformer + linear, the
  part that costs. Pooling, DLT and the inlier count stay in torch (cheap, and
  their SVD/solve ops do not export portably). K is a dynamic axis.
ONNX is the portable path (``trtexec --onnx=... --fp16`` on a Jetson); ``check``
runs onnxruntime on CPU against eager on random inputs and reports the max error per vector.
This module takes models and heads as objects; the CLI resolves them from a map.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import VprError
from ..models import GlobalModel
from ..rerank.dhe import DHEHead, grid_for
from .compile import ONNX_TOLERANCE, DHENet, Exported, check_onnx, compile_tensorrt, global_exported, to_onnx

__all__ = ["MODULES", "dhe_module", "export", "global_module"]

#: What ``vpr export --module`` can write.
MODULES = ("global", "dhe")


def global_module(model: GlobalModel, input_size: tuple[int, int] | None = None) -> Exported:
    """The global model at its configured (or the given) input size; its map state must already be loaded."""
    model.eval()
    w, h = input_size or model.input_size
    model.check_input_size((int(w), int(h)))
    return global_exported(model, (1, 3, int(h), int(w)))


def dhe_module(head: DHEHead, grid: tuple[int, int] = (40, 30), channels: int = 64, k: int = 32) -> Exported:
    """The DHE head for a stored ``grid`` (w, h) of ``channels``-d features, K candidates (dynamic)."""
    gw, gh = grid_for(*grid)  # the head grid the dhe re-ranker pools to
    if gw * gh != head.tokens:
        raise VprError(
            f"DHE head has {head.tokens} grid cells but this map's grid pools to {gw}x{gh}; "
            "export weights trained for this model"
        )
    q = F.normalize(torch.rand(1, int(channels), gh, gw), dim=1)
    c = F.normalize(torch.rand(k, int(channels), gh, gw), dim=1)
    dyn = {"candidates": {0: "K"}, "points": {0: "K"}}
    return Exported("dhe", DHENet(head.eval()).eval(), (q, c), ["query", "candidates"], ["points"], dyn)


def export(
    ex: Exported, fmt: str, out: str | Path, precision: str = "fp16", check: bool = False, device: str = "auto"
) -> dict[str, Any]:
    """One module to ``out``; returns a record of what was written (and the parity error)."""
    inputs = {n: list(t.shape) for n, t in zip(ex.input_names, ex.inputs)}
    rec: dict[str, Any] = {"module": ex.name, "format": fmt, "path": str(out), "inputs": inputs}
    if fmt == "onnx":
        to_onnx(ex, out)
        if check:
            rec["max_error"] = check_onnx(ex, out)
            rec["tolerance"] = ONNX_TOLERANCE[ex.name]
            if rec["max_error"] > ONNX_TOLERANCE[ex.name]:
                raise VprError(
                    f"ONNX '{ex.name}' differs from eager by {rec['max_error']:.2e} > "
                    f"{ONNX_TOLERANCE[ex.name]:g}; do not deploy it"
                )
        return rec
    _, info = compile_tensorrt(ex.module, ex.inputs, precision=precision, out=Path(out), device=device)
    return rec | info
