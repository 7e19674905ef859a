"""DHE (Lu et al., AAAI 2024): a transformer regresses a homography from the correlation volume.

Faithful to the reference (Lu-Feng/DHE-VPR): correlation of query and candidate grids
(ReLU, L2 over query positions), learnable positional embedding, two 3-layer
transformer encoders (d_model = number of grid positions, 12 heads, FFN 2048, GELU,
dropout 0) with a residual between them, a linear layer to 8 points (4 in the query,
4 in the candidate, in pixels of the nominal frame), a homography by DLT, and the
score = mutual nearest neighbours whose reprojection error under it is below
``threshold_cells`` grid cells (reference: 3 cells = 48 px at 384x384). Parameter
names match the released ``homography_regression_*.torch`` so it loads strictly.
Batched over the K candidates: one forward for all of them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import VprError
from ..models.base import load_checkpoint_state, load_strict
from ..models.layers import init_device, reset_parameters
from ..store.parts import DheHead
from ..store.vmap import VprMap
from .base import RERANKERS, Reranker, RerankResult
from .geometry import count_inliers, dlt, grid_keypoints, mutual_nn

log = logging.getLogger(__name__)


def correlation(fa: torch.Tensor, fb: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """Correlation volume (B, Ta, Tb) of grids fa, fb (B, C, H, W) in the reference's index order.

    Rows index fa's cells column-major (k_a = x * H + y), columns fb's cells row-major
    (k_b = y * W + x); ReLU, then L2-normalised over k_a. ``eps`` > 0 gives GeoWarp's
    sqrt(sum + eps) normalisation.
    """
    b, c, h, w = fa.shape
    a = fa.transpose(2, 3).reshape(b, c, h * w)
    bb = fb.reshape(b, c, h * w)
    corr = F.relu(torch.einsum("bca,bcd->bad", a, bb))
    if eps > 0:
        return corr / torch.sqrt((corr * corr).sum(dim=1, keepdim=True) + eps)
    return F.normalize(corr, dim=1)


class DHEHead(nn.Module):
    """Keys: ``encoder.layers.*``, ``encoder2.layers.*``, ``pe``, ``linear.*``."""

    def __init__(
        self, tokens: int = 576, nhead: int = 12, ffn: int = 2048, generator: torch.Generator | None = None
    ) -> None:
        super().__init__()
        if tokens % nhead:
            raise VprError(
                f"DHE head: {tokens} grid positions are not divisible by {nhead} heads; choose another head_grid"
            )
        with init_device(generator):  # seeded: built on "meta", so the global RNG is never drawn from
            layer = nn.TransformerEncoderLayer(
                d_model=tokens, nhead=nhead, dim_feedforward=ffn, activation="gelu", dropout=0.0
            )
            self.encoder = nn.TransformerEncoder(layer, num_layers=3, enable_nested_tensor=False)
            self.encoder2 = nn.TransformerEncoder(layer, num_layers=3, enable_nested_tensor=False)
            self.pe = nn.Parameter(torch.zeros(1, tokens, tokens))
            self.linear = nn.Linear(tokens * tokens, 16)
        self.tokens = tokens
        if generator is not None:
            self.to_empty(device="cpu")
            reset_parameters(self, generator)
            with torch.no_grad():
                self.pe.zero_()

    def forward(self, corr: torch.Tensor) -> torch.Tensor:
        """corr (B, T, T) -> points (B, 8, 2): rows 0-3 in the query, 4-7 in the candidate."""
        b = corr.shape[0]
        x = (corr + self.pe).permute(2, 0, 1)  # sequence over candidate cells, features over query cells
        x1 = self.encoder(x)
        x = self.encoder2(x1) + x1
        return self.linear(x.permute(1, 2, 0).reshape(b, -1)).view(b, 8, 2)

    def flops(self) -> float:
        """Multiply-adds x2 of one forward for one pair (attention and FFN of 6 layers + linear)."""
        t, f = self.tokens, self.encoder.layers[0].linear1.out_features
        per_layer = 2 * t * (4 * t * t + 2 * t * f) + 2 * 2 * t * t * t
        return 6 * per_layer + 2 * t * t * 16


def load_dhe_head(path: str, tokens: int | None = None) -> DHEHead:
    """Strictly load a released/trained head; ``tokens`` None = read the grid size from ``pe``."""
    sd = load_checkpoint_state(path, "DHE homography_regression")
    if tokens is None:
        pe = sd.get("pe")
        if pe is None or pe.dim() != 3:
            raise VprError(
                f"{path}: not a DHE homography_regression checkpoint (no 'pe' of shape (1, T, T)); check the file"
            )
        tokens = int(pe.shape[1])
    head = DHEHead(tokens, generator=torch.Generator())
    load_strict(head, sd, path, f"DHE head ({tokens} tokens)")
    return head.eval()


HEAD_GRID_FALLBACK, MATCH_GRID_FALLBACK = (12, 9), (20, 15)  # for stored grids above 576 cells (e.g. XFeat's 40x30)


def grid_for(gw: int, gh: int, fallback: tuple[int, int] = HEAD_GRID_FALLBACK) -> tuple[int, int]:
    """(w, h) the head (or the matcher) works on for a stored gw x gh grid: the grid itself up to 576 cells, else
    ``fallback``."""
    return (gw, gh) if gw * gh <= 576 else fallback


WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
# Heads shipped with the package, per global model whose dense grid they were trained on.
SHIPPED_HEADS: dict[str, str] = {"xfeat-vlad": "dhe_xfeat_12x9.pt", "xfeat-gem": "dhe_xfeat_12x9.pt"}


def head_to_part(head: DHEHead) -> DheHead:
    """The map part holding ``head``'s weights (``vpr map adapt`` stores it)."""
    return DheHead({k: v.detach().cpu().float().numpy() for k, v in head.state_dict().items()})


def head_from_part(part: DheHead | None, source: str) -> DHEHead | None:
    """The head a map stores, strictly loaded; None when the map has none."""
    if part is None:
        return None
    head = DHEHead(part.tokens, generator=torch.Generator())
    load_strict(
        head, {k: torch.from_numpy(np.asarray(v)) for k, v in part.state.items()}, source, "map-adapted DHE head"
    )
    return head.eval()


def map_head(vmap: VprMap, source: str = "map") -> tuple[DHEHead | None, str]:
    """The head a map gets without explicit weights, and where it came from: its adapted head, else the one shipped
    for its model."""
    head = head_from_part(vmap.dhe_head, source)
    if head is not None:
        return head, "map-adapted"
    if vmap.model in SHIPPED_HEADS:
        path = WEIGHTS_DIR / SHIPPED_HEADS[vmap.model]
        return load_dhe_head(str(path)), f"shipped ({path.name})"
    return None, "untrained"


@RERANKERS.register("dhe")
class DHERerank(Reranker):
    """DHE homography estimation + MNN inlier count (batched over candidates)."""

    name = "dhe"
    weights_kind = "dhe-head"
    auto_rank = 2  # 91.9 / 90 / 22.5 on the compact map
    default_conf = {
        "top_k": 32,
        # homography_regression_*.torch; None = the map's adapted head, else the one shipped for its model,
        # else an untrained head
        "weights": None,
        "head_grid": None,  # (w, h) of the head's input; None = the stored grid if <= 576 cells, else [12, 9]
        "frame": None,  # nominal frame (pixels) of the points; None = the global model's input size
        "threshold_cells": 3.0,  # reference: 48 px at 384 px / 24 cells
        "match_grid": None,  # (w, h) grid for MNN + inliers; None = the stored grid if <= 576 cells, else [20, 15]
    }
    ranges = {"threshold_cells": ">0", "head_grid": "pair>=1", "frame": "pair>=32"}

    def __init__(self, conf: dict[str, Any] | None = None) -> None:
        super().__init__(conf)
        self.head: DHEHead | None = None  # untrained heads are built on first use: their size follows the map's grid
        self.trained = bool(self.conf["weights"])
        self.source = str(self.conf["weights"]) if self.trained else "untrained"
        if self.trained:  # load now: a bad file must fail at start-up, not at the first frame
            self.head = load_dhe_head(str(self.conf["weights"]))

    def _bind_map(self, vmap) -> None:
        """Without explicit weights: the map's adapted head, else the head shipped for the map's model."""
        if not self.conf["weights"]:
            head, source = map_head(vmap)
            if head is not None:
                self.head, self.trained, self.source = head, True, source
        if self.head is not None:
            self.head = self.head.to(self.device)

    def _grid(self, key: str, gw: int, gh: int, fallback: tuple[int, int]) -> tuple[int, int]:
        if self.conf[key]:
            w, h = self.conf[key]
            return int(w), int(h)
        return grid_for(gw, gh, fallback)

    def _ensure_head(self, tokens: int) -> DHEHead:
        if self.head is None or self.head.tokens != tokens:
            if self.trained:
                raise VprError(
                    f"DHE weights ({self.source}) are for a {self.head.tokens}-cell grid but this map gives {tokens} "
                    "cells; "
                    "set head_grid to match or use weights trained for this model"
                )
            else:
                log.warning("DHE head is untrained (no weights): re-ranking results are not meaningful")
                self.head = DHEHead(tokens, generator=torch.Generator().manual_seed(0))
            self.head = self.head.to(self.device).eval()
        return self.head

    @torch.inference_mode()
    def homographies(self, q: torch.Tensor, cands: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """(K, 3, 3) query->candidate homographies in ``frame`` pixels, and the head grid used."""
        _, gh, gw = q.shape
        hw, hh = self._grid("head_grid", gw, gh, HEAD_GRID_FALLBACK)
        head = self._ensure_head(hw * hh)
        qa = F.normalize(F.adaptive_avg_pool2d(q.unsqueeze(0), (hh, hw)), dim=1)
        ca = F.normalize(F.adaptive_avg_pool2d(cands, (hh, hw)), dim=1)
        pts = head(correlation(qa.expand(len(cands), -1, -1, -1), ca))
        return dlt(pts[:, :4], pts[:, 4:]), (hw, hh)

    @torch.inference_mode()
    def score(self, q: torch.Tensor, cands: torch.Tensor) -> RerankResult:
        h, _ = self.homographies(q, cands)
        frame = self.frame
        mw, mh = self._grid("match_grid", q.shape[2], q.shape[1], MATCH_GRID_FALLBACK)
        if (mh, mw) != tuple(q.shape[1:]):
            q = F.normalize(F.adaptive_avg_pool2d(q.unsqueeze(0), (mh, mw)), dim=1)[0]
            cands = F.normalize(F.adaptive_avg_pool2d(cands, (mh, mw)), dim=1)
        _, gh, gw = q.shape
        kp = grid_keypoints(gh, gw, frame, device=q.device)
        nn_q, mask = mutual_nn(q.flatten(1).t(), cands.flatten(2).transpose(1, 2))
        cell = frame[0] / gw
        inl = count_inliers(h, kp, nn_q, mask, kp, float(self.conf["threshold_cells"]) * cell)
        return RerankResult(inl.float(), inl)
