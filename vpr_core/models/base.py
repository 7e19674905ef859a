"""Global descriptor models: the common interface and the registry.

A model maps a batch of RGB images (float32 NCHW in [0, 1] at ``input_size``) to
L2-normalised descriptors. Models with map-specific parts (a VLAD vocabulary, a PCA)
learn them in :meth:`fit` from the database images and round-trip them through
:meth:`map_state` / :meth:`load_map_state`, so the map file carries them.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import check_options
from ..errors import VprError
from ..registry import Registry

GLOBAL_MODELS: Registry[type[GlobalModel]] = Registry("global model")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


#: Ranges of the numeric options the models share (inclusive).
CONF_RANGES: dict[str, tuple[float, float]] = {
    "batch_size": (1, 4096),
    "clusters": (1, 65536),
    "pca_dim": (0, 65536),
    "vocab_max_images": (1, 10**9),
    "vocab_max_features": (1, 10**10),
    "fc_output_dim": (1, 65536),
    "blocks": (1, 64),
    "p": (0.1, 100.0),
    "seed": (0, 2**32 - 1),
}
#: Options that are (width, height) pairs: network input in pixels, stored grid in cells.
PAIRS = {"input_size": 32, "local_grid": 1}


class GlobalModel(nn.Module):
    name: ClassVar[str] = ""
    #: What the model suits, for `vpr models` (measured where a figure is given).
    suits: ClassVar[str] = ""
    default_conf: ClassVar[dict[str, Any]] = {}
    #: Network sides are rounded to this (a ViT/14 needs whole patches) when ``keep_aspect`` sizes the input.
    size_multiple: int = 8

    def __init__(self, conf: dict[str, Any] | None = None) -> None:
        super().__init__()
        rules = {**CONF_RANGES, **{key: f"pair>={lo}" for key, lo in PAIRS.items()}}
        self.conf = check_options(f"global model '{self.name}'", copy.deepcopy(self.default_conf), conf, rules)
        self.trained = True  # False when running on random weights; reported, never hidden

    # ---- geometry -----------------------------------------------------------------
    @property
    def input_size(self) -> tuple[int, int]:
        """(width, height) every image is resized to before the network."""
        w, h = self.conf["input_size"]
        return int(w), int(h)

    @property
    def dim(self) -> int:
        raise NotImplementedError

    def check_input_size(self, size: tuple[int, int]) -> None:
        """Refuse, in one line, a network size (width, height) this model cannot run at (export --input-size)."""
        if self.size_multiple != 8 and (size[0] % self.size_multiple or size[1] % self.size_multiple):
            raise VprError(
                f"global model '{self.name}': input size {size[0]}x{size[1]} is not a multiple of its "
                f"{self.size_multiple} px patch; use e.g. {size[0] // self.size_multiple * self.size_multiple}x"
                f"{size[1] // self.size_multiple * self.size_multiple}"
            )

    # ---- map-specific state ------------------------------------------------------
    @property
    def needs_fit(self) -> bool:
        return False

    def fit(self, batches: Callable[[], Iterable[torch.Tensor]], num_images: int) -> None:
        """Learn map-specific parts from database images (no-op for most models)."""

    def map_state(self) -> dict[str, np.ndarray]:
        return {}

    def load_map_state(self, arrays: dict[str, np.ndarray]) -> None:
        if arrays:
            raise VprError(f"global model '{self.name}' takes no map state, but the map carries {sorted(arrays)}")

    # ---- identity -----------------------------------------------------------------
    def network_state(self) -> dict[str, torch.Tensor]:
        """Weights that define the descriptor (excludes map state); hashed into the fingerprint."""
        return self.state_dict()

    def fingerprint(self) -> str:
        """Hash of name, descriptor-relevant config and weights: a map only serves the model that built it."""
        h = hashlib.sha256(self.name.encode())
        conf = {k: v for k, v in self.conf.items() if k not in ("weights", "batch_size")}
        h.update(json.dumps(conf, sort_keys=True).encode())
        for k, v in sorted(self.network_state().items()):
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:16]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Global descriptors only; models compute both in :meth:`describe`."""
        return self.describe(x)[0]

    def use_imagenet_normalization(self) -> None:
        """Torchvision-trained trunks expect ImageNet mean/std; buffers so they follow .to(device)."""
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def load_weights_or_mark_untrained(self, source: str) -> None:
        """Strictly load ``conf['weights']`` (named ``source`` in errors); without a file the model is labelled
        untrained."""
        if self.conf.get("weights"):
            path = str(self.conf["weights"])
            load_strict(self, load_checkpoint_state(path, source), path, source)
        else:
            self.trained = False
        self.eval()

    @property
    def local_grid(self) -> tuple[int, int]:
        """(width, height) of the dense feature grid stored in maps for re-ranking."""
        w, h = self.conf.get("local_grid", (40, 30))
        return int(w), int(h)

    def describe(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One forward pass -> (global (B, D), local grid (B, C, gh, gw) L2-normalised per cell)."""
        raise NotImplementedError(f"global model '{self.name}' has no dense features for re-ranking")

    def pool_local(self, dense: torch.Tensor) -> torch.Tensor:
        gw, gh = self.local_grid
        if tuple(dense.shape[-2:]) != (gh, gw):  # skipped when it would be the identity
            dense = adaptive_avg_pool(dense, (gh, gw))
        return F.normalize(dense, dim=1)


@functools.lru_cache(maxsize=64)
def pool_bins(n: int, m: int, device: torch.device | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(m, n) averaging matrix of adaptive average pooling from n to m cells: bin i spans
    [floor(i n / m), ceil((i + 1) n / m)), as ``F.adaptive_avg_pool2d`` defines it. Cached per size and device:
    made once per camera size, not per frame (read-only: callers must not modify it). Built outside inference
    mode, so a matrix first made while localizing still serves training."""
    with torch.inference_mode(False), torch.no_grad():
        i = torch.arange(m)
        start, end = (i * n) // m, ((i + 1) * n + m - 1) // m
        j = torch.arange(n)
        inside = (j[None] >= start[:, None]) & (j[None] < end[:, None])
        return (inside.float() / (end - start).float()[:, None]).to(device=device, dtype=dtype)


def adaptive_avg_pool(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``F.adaptive_avg_pool2d(x, size)`` as two products with constant bin matrices. Why: the ONNX exporter takes
    adaptive pooling only when the output size divides the input's, and a camera whose aspect differs from the
    model's (``keep_aspect``) gives feature maps that do not divide the grid; the matrices export at any size."""
    h, w = (int(v) for v in x.shape[-2:])
    ph = pool_bins(h, int(size[0]), x.device, x.dtype)
    pw = pool_bins(w, int(size[1]), x.device, x.dtype)
    return torch.matmul(torch.matmul(ph, x), pw.t())


def load_checkpoint_state(path: str, source: str) -> dict[str, torch.Tensor]:
    """Read a plain state_dict without unpickling arbitrary objects."""
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise VprError(f"{path}: checkpoint not found; pass the path to the {source} weights") from None
    except Exception as e:  # torch raises many types for corrupt/unsafe files
        raise VprError(
            f"{path}: not a loadable {source} checkpoint ({type(e).__name__}: {str(e).splitlines()[0][:160]})"
        ) from None
    if isinstance(sd, dict) and "model_state_dict" in sd:
        sd = sd["model_state_dict"]
    if isinstance(sd, dict) and "state_dict" in sd:
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise VprError(f"{path}: expected a state_dict, found {type(sd).__name__}")
    return {k.removeprefix("module."): v for k, v in sd.items()}


def load_strict(module: nn.Module, sd: dict[str, torch.Tensor], path: str, source: str) -> None:
    """load_state_dict(strict=True) with a one-line error listing the first offending keys."""
    own = module.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shape = [k for k in own if k in sd and tuple(own[k].shape) != tuple(sd[k].shape)]
    if missing or unexpected or shape:
        parts = []
        if missing:
            parts.append(f"missing {missing[:3]}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:3]}")
        if shape:
            parts.append(f"shape mismatch {[(k, tuple(sd[k].shape), tuple(own[k].shape)) for k in shape[:2]]}")
        raise VprError(
            f"{path}: does not match the {source} layout ({'; '.join(parts)}); check the backbone/dimension options"
        )
    module.load_state_dict(sd, strict=True)


def build_global_model(name: str, conf: dict[str, Any] | None = None) -> GlobalModel:
    return GLOBAL_MODELS.get(name)(conf)
