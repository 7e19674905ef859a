"""Run a global model over images: device choice, fp16 on CUDA, batching, prefetching."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from ..config import knob
from ..errors import VprError
from ..io.images import load_image, resize
from ..models import GlobalModel, build_global_model

__all__ = ["DEVICES", "Extractor", "describe_images", "resolve_device"]

#: Device names a user may give ("cuda:N" selects one GPU).
DEVICES = ("auto", "cpu", "cuda")


def cuda_index(value: object) -> bool:
    """A device name beside ``DEVICES``: ``cuda:N``."""
    return isinstance(value, str) and value.startswith("cuda:") and value[5:].isdigit()


def device_knob(**surfaces: Any) -> Any:
    """The ``device`` setting of a config class (``config.knob``), shown on ``surfaces``."""
    return knob(
        "auto", "auto (CUDA when present), cpu, cuda or cuda:N.", type=str, choices=lambda: DEVICES,
        accepts=cuda_index, **surfaces,
    )  # fmt: skip


def _load_all(paths: list[Path]) -> list[np.ndarray]:
    return [load_image(p) for p in paths]


def resolve_device(device: str = "auto") -> torch.device:
    """auto -> cuda when available, else cpu; an explicit 'cuda' without CUDA is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise VprError(f"device '{device}' requested but CUDA is not available; use device: auto or cpu")
    if device != "cpu" and not device.startswith("cuda"):
        raise VprError(f"device '{device}' unknown; use {', '.join(DEVICES)}")
    return torch.device(device)


class Extractor:
    """Wraps a GlobalModel for inference on numpy RGB images."""

    def __init__(self, model: GlobalModel, device: str = "auto", fp16: bool | None = None) -> None:
        self.device = resolve_device(device)
        self.fp16 = (self.device.type == "cuda") if fp16 is None else (fp16 and self.device.type == "cuda")
        self.amp_dtype = torch.float16  # with fp16: the autocast type (torch.bfloat16 where the GPU prefers it)
        self.model = model.to(self.device).eval()
        self.batch_size = int(model.conf.get("batch_size", 8))

    def target_size(self, height: int, width: int) -> tuple[int, int]:
        """(width, height) fed to the network for an image of this size.

        With ``keep_aspect`` the image keeps its aspect ratio and gets the pixel budget
        of ``input_size`` (sides rounded to the model's ``size_multiple``, 8 or a ViT's patch): a 16:9 camera is not
        squeezed into 4:3, which measurably helps retrieval across cameras.
        """
        w, h = self.model.input_size
        if not self.model.conf.get("keep_aspect", False):
            return w, h
        s, m = (w * h / (width * height)) ** 0.5, int(self.model.size_multiple)
        lo = -(-32 // m) * m
        return max(lo, round(width * s / m) * m), max(lo, round(height * s / m) * m)

    def to_tensor(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """Resize for the network; -> float32 (B, 3, H, W) in [0, 1] on the device (one size per call)."""
        sizes = {self.target_size(*im.shape[:2]) for im in images}
        if len(sizes) != 1:
            raise ValueError("to_tensor needs images that map to one network size; use to_tensors")
        size = sizes.pop()
        arr = np.stack([resize(im, size) for im in images])
        return torch.from_numpy(arr).to(self.device).permute(0, 3, 1, 2).float().div_(255.0)

    def to_tensors(self, images: Sequence[np.ndarray]) -> list[torch.Tensor]:
        """Batches of consecutive images that share a network size (order kept)."""
        out: list[torch.Tensor] = []
        run: list[np.ndarray] = []
        for im in images:
            if run and self.target_size(*im.shape[:2]) != self.target_size(*run[-1].shape[:2]):
                out.append(self.to_tensor(run))
                run = []
            run.append(im)
        if run:
            out.append(self.to_tensor(run))
        return out

    @torch.inference_mode()
    def describe(self, x: torch.Tensor, local: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(global (B, D), local grid (B, C, gh, gw) or None), float32 on the model's device: the per-frame path."""
        with torch.autocast("cuda", dtype=self.amp_dtype, enabled=self.fp16):
            if local:
                g, loc = self.model.describe(x)
                return g.float(), loc.float()
            return self.model(x).float(), None

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> np.ndarray:
        with torch.autocast("cuda", dtype=torch.float16, enabled=self.fp16):
            d = self.model(x)
        return d.float().cpu().numpy()

    @torch.inference_mode()
    def describe_local(self, x: torch.Tensor) -> tuple[np.ndarray, torch.Tensor]:
        """(global descriptors (B, D) numpy, local grids (B, C, gh, gw) float32 tensor on CPU)."""
        with torch.autocast("cuda", dtype=torch.float16, enabled=self.fp16):
            g, loc = self.model.describe(x)
        return g.float().cpu().numpy(), loc.float().cpu()

    def tensor_batches(self, paths: Sequence[Path], desc: str | None = None) -> Iterator[torch.Tensor]:
        """Decode files on a small thread pool while the model runs; yields device tensors."""
        chunks = [paths[i : i + self.batch_size] for i in range(0, len(paths), self.batch_size)]
        with ThreadPoolExecutor(max_workers=2) as pool:
            futures = [pool.submit(_load_all, c) for c in chunks[:2]]
            bar = tqdm(total=len(paths), desc=desc, unit="img", disable=desc is None, leave=False)
            for i in range(len(chunks)):
                images = futures[i].result()
                if i + 2 < len(chunks):
                    futures.append(pool.submit(_load_all, chunks[i + 2]))
                bar.update(len(images))
                yield from self.to_tensors(images)
            bar.close()

    def describe_paths(
        self,
        paths: Sequence[Path],
        desc: str | None = "descriptors",
        local: bool = False,
        encode: Callable[[torch.Tensor], np.ndarray] | None = None,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Global descriptors of the files, and their local grids when ``local``: float16, or ``encode(grids)`` per
        batch (PQ codes), so a large map's grids never sit in memory uncompressed."""
        gs, ls = [], []
        for x in self.tensor_batches(paths, desc):
            if local:
                g, loc = self.describe_local(x)
                ls.append(encode(loc) if encode is not None else loc.half().numpy())
            else:
                g = self(x)
            gs.append(g)
        g = np.concatenate(gs) if gs else np.zeros((0, self.model.dim), np.float32)
        return g, (np.concatenate(ls) if local and ls else None)


def describe_images(
    paths: Sequence[Path],
    model_name: str,
    model_conf: dict[str, Any] | None = None,
    device: str = "auto",
    local: bool = False,
) -> tuple[GlobalModel, np.ndarray, np.ndarray | None]:
    """The named model (its vocabulary learnt from ``paths`` first, when it needs one) and the images' descriptors."""
    model = build_global_model(model_name, model_conf)
    ex = Extractor(model, device)
    if model.needs_fit:
        model.fit(lambda: ex.tensor_batches(paths, desc="vocabulary"), len(paths))
    desc, local_feats = ex.describe_paths(paths, desc="map descriptors", local=local)
    bad = ~np.isfinite(desc).all(axis=1)
    if bad.any():
        raise VprError(
            f"{paths[int(np.argmax(bad))]}: model '{model_name}' produced NaN/Inf descriptors "
            f"({int(bad.sum())} images); check the weights"
        )
    return model, desc, local_feats
