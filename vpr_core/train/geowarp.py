"""``vpr train geowarp``: GeoWarp's homography regression on a frozen backbone.

Losses as the reference (gmberton/geo_warp train.py), with its weights as defaults:
- self-supervised (1): two random vertical-sided trapezoids (coefficient k) of one
  image; the head must predict, in each view, the corners of their overlap - both
  directions, four MSE terms;
- features-wise (10): on query-positive pairs, warp both by the predicted (averaged)
  quads and pull their 15x15 features together (MSE);
- consistency (0.1): the four predictions of a pair (q->p, p->q and both on the
  horizontally flipped pair, flipped back) are pulled to their detached centroid.
SGD (lr 1e-4, momentum 0.9, weight decay 1e-3) as the reference; ``optim: adam`` is offered.
Query-positive pairs come from a geotagged folder (25 m, feature distance < 1.2);
an unlabelled folder falls back to overlapping homographic views.

Deviation, as at inference (rerank/geowarp.py): the features-wise loss warps the
dense feature grid, not the images, because maps store features, not images.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..config import check_options
from ..models import build_global_model
from ..rerank.dhe import correlation
from ..rerank.geowarp import GeoWarpHead, grid_volume, warp
from ..runtime.extractor import Extractor
from . import loop
from .dhe import RULES, PairSource
from .pairs import homographic_pair_with_targets

#: Optimizers of the GeoWarp head (the reference uses SGD).
OPTIMIZERS = ("sgd", "adam")

DEFAULTS: dict[str, Any] = {
    "iterations": 2000,
    "batch_size": 8,  # reference 16 for each loss
    "lr": 1e-4,
    "optim": "sgd",
    "lr_step": 10000,
    "lr_gamma": 1.0,  # the reference keeps the rate constant
    "k": 0.6,
    "ss_w": 1.0,
    "features_wise_w": 10.0,
    "consistency_w": 0.1,
    "qp_threshold": 1.2,
    "frame": [320, 240],
    "grid": 15,
    "pairs": "both",  # geotagged query-positive pairs when the names carry coordinates
    "model": "xfeat-gem",
    "save_every": 100,
    "log_every": 10,
    "seed": 0,
}

RESUME_KEYS = ("frame", "grid", "batch_size", "seed", "model", "k", "optim", "ss_w", "features_wise_w", "consistency_w")


def hor_flip(points: torch.Tensor) -> torch.Tensor:
    """Predictions of a flipped pair, expressed for the unflipped one: mirror x, swap left/right corners."""
    out = points[:, [1, 0, 3, 2, 5, 4, 7, 6]].clone()
    out[..., 0] = -out[..., 0]
    return out


def swap(points: torch.Tensor) -> torch.Tensor:
    """(q->p prediction) as if it were a (p->q) one: the two halves exchanged."""
    return torch.cat([points[:, 4:], points[:, :4]], dim=1)


class GeoWarpTrainer:
    def __init__(self, head: GeoWarpHead, ex: Extractor, source: PairSource, conf: dict[str, Any]) -> None:
        self.head, self.ex, self.source, self.c = head, ex, source, conf
        self.g = int(conf["grid"])
        self.frame = tuple(conf["frame"])

    def features(self, imgs: list[np.ndarray]) -> torch.Tensor:
        with torch.no_grad():
            _, f = self.ex.describe_local(self.ex.to_tensor(imgs))
        return f.to(self.ex.device).clone()  # a normal tensor: inference-mode ones cannot join autograd

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(F.adaptive_avg_pool2d(x, (self.g, self.g)), dim=1)

    def regress(self, fa: torch.Tensor, fb: torch.Tensor) -> torch.Tensor:
        return self.head(grid_volume(correlation(self.pool(fa), self.pool(fb), eps=1e-6)))

    def qp_batch(self, rng: np.random.Generator) -> tuple[list[np.ndarray], list[np.ndarray]]:
        pairs = [self.source.pair(rng, geo=bool(len(self.source.geo_pairs))) for _ in range(int(self.c["batch_size"]))]
        return [q for q, _ in pairs], [p for _, p in pairs]

    def step(self, it: int) -> tuple[torch.Tensor, dict[str, float]]:
        c, s = self.c, self.source
        rng = np.random.default_rng([int(c["seed"]), it])
        self.head.train()
        mse = F.mse_loss
        a, b, ta, tb = zip(
            *(
                homographic_pair_with_targets(s.image(int(rng.integers(len(s.paths)))), rng, float(c["k"]), self.frame)
                for _ in range(int(c["batch_size"]))
            )
        )
        ta = torch.from_numpy(np.stack(ta)).float().to(self.ex.device)
        tb = torch.from_numpy(np.stack(tb)).float().to(self.ex.device)
        fa, fb = self.features(list(a)), self.features(list(b))
        p12, p21 = self.regress(fa, fb), self.regress(fb, fa)
        ss = mse(p12[:, :4], ta) + mse(p12[:, 4:], tb) + mse(p21[:, :4], tb) + mse(p21[:, 4:], ta)
        loss = float(c["ss_w"]) * ss
        stats = {"ss": float(ss.detach())}
        if float(c["features_wise_w"]) or float(c["consistency_w"]):
            qs, ps = self.qp_batch(rng)
            fq, fp = self.features(qs), self.features(ps)
            pq, pp = self.regress(fq, fp), self.regress(fp, fq)
            if float(c["consistency_w"]):
                fl = lambda imgs: self.features([np.ascontiguousarray(x[:, ::-1]) for x in imgs])  # noqa: E731
                fq_fl, fp_fl = fl(qs), fl(ps)
                four = [swap(pq), pp, hor_flip(swap(self.regress(fq_fl, fp_fl))), hor_flip(self.regress(fp_fl, fq_fl))]
                centre = torch.stack(four).mean(0).detach()
                cons = sum(mse(x, centre) for x in four)
                loss = loss + float(c["consistency_w"]) * cons
                stats["consistency"] = float(cons.detach())
            if float(c["features_wise_w"]):
                mq, mp = (pq[:, :4] + pp[:, 4:]) / 2, (pq[:, 4:] + pp[:, :4]) / 2
                fw = mse(self.pool(warp(fq, mq)), self.pool(warp(fp, mp)))
                loss = loss + float(c["features_wise_w"]) * fw
                stats["features_wise"] = float(fw.detach())
        return loss, stats


def train_geowarp(
    images: str | Path,
    out: str | Path,
    conf: dict[str, Any] | None = None,
    resume: bool = False,
    log: str | Path | None = None,
    device: str = "cpu",
) -> Path:
    """Train GeoWarp's head; the checkpoint loads with ``--rerank geowarp --rerank-set weights=CKPT``."""
    c = check_options("vpr train geowarp", DEFAULTS, conf, {**RULES, "optim": set(OPTIMIZERS)})
    out = Path(out)
    model = build_global_model(c["model"], {"input_size": list(c["frame"]), "keep_aspect": False})
    ex = Extractor(model, device)
    ex.model.eval().requires_grad_(False)
    head = GeoWarpHead(grid=int(c["grid"]), generator=torch.Generator().manual_seed(int(c["seed"]))).to(ex.device)
    if c["optim"] == "sgd":
        opt = torch.optim.SGD(head.parameters(), lr=float(c["lr"]), momentum=0.9, weight_decay=0.001)
    else:
        opt = torch.optim.Adam(head.parameters(), lr=float(c["lr"]))
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=int(c["lr_step"]), gamma=float(c["lr_gamma"]))
    start = loop.load_for_resume(out, {"main": head}, opt, sched, c, RESUME_KEYS) if resume else 0
    source = PairSource(Path(images), c)
    trainer = GeoWarpTrainer(head, ex, source, c)
    record = {
        "config": c,
        "data": {"images": str(images), "num_images": len(source.paths), "qp_pairs": int(len(source.geo_pairs))},
        "code_version": loop.code_version(),
        "format": "GeoWarp homography_regression state_dict",
    }
    return loop.run(
        "train geowarp", out, c, {"main": head}, opt, sched, trainer.step, record, start, log, "weighted loss"
    )
