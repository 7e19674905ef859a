"""``vpr train dhe``: DHE's homography head (stage 1) and joint fine-tuning (stage 2).

Stage 1 (reference Lu-Feng/DHE-VPR train_dhe.py): the head alone on a frozen
backbone, REI loss; Adam, lr 1e-4, StepLR(10000, 0.8), batch 16, random DLT weights.
Pairs: self-supervised homographic views of every image (any folder), plus
geotagged positives when the folder is named in the VPR convention
(``--pairs geo|self|both``).

Stage 2 (``--joint``, reference finetune.py): backbone trainable, loss = triplet
(margin 0.1, on the global descriptors) + lambda * REI (lambda 100) of the
query-positive pair, one Adam over head and backbone; negatives are the hardest
images farther than 25 m under the *current* model, re-mined every ``mine_every``
iterations. The backbone is kept in eval mode (its BatchNorm statistics frozen):
our batches are far smaller than the reference's. The fine-tuned backbone is saved
as ``CKPT.backbone`` in the layout ``--set weights=`` of the XFeat models reads.

Exact resume: the pairs and random weights of iteration i come from generators
seeded by (seed, i), and hard negatives are re-mined at iterations that are
multiples of ``mine_every`` (which divides ``save_every``), so a resumed run
continues with the same numbers as an uninterrupted one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..config import check_options
from ..errors import VprError
from ..io.images import list_images, load_image, resize
from ..models import build_global_model
from ..rerank.dhe import DHEHead
from ..runtime.extractor import Extractor
from . import loop
from .pairs import homographic_pair, photometric
from .rei import rei_loss

#: Where training pairs come from: homographic views of one image, geotagged positives, or both.
PAIR_SOURCES = ("self", "geo", "both")

#: Ranges of the training options (``config.check_option`` rules); the others are checked by type.
RULES: dict[str, Any] = {
    "iterations": ">=1", "batch_size": ">=1", "lr": ">0", "lr_step": ">=1", "lr_gamma": "(0,1]", "k": "(0,1)",
    "save_every": ">=1", "log_every": ">=1", "seed": "seed", "frame": "pair>=32", "head_grid": "pair>=1",
    "match_grid": "pair>=1", "grid": ">=1",
}  # fmt: skip
DEFAULTS: dict[str, Any] = {
    "iterations": 2000,
    "batch_size": 16,
    "lr": 1e-4,
    "lr_step": 10000,
    "lr_gamma": 0.8,
    "k": 0.6,  # trapezoid warping coefficient of self-supervised pairs
    "frame": [320, 240],
    "head_grid": [12, 9],
    "match_grid": [20, 15],
    "pairs": "self",
    "save_every": 100,
    "log_every": 10,
    "seed": 0,
    "model": "xfeat-gem",  # stage 1: frozen, only its dense grid is used; --joint: its GeM descriptor is the global one
    "backbone": None,  # XFeat weights to start from (None = the official ones)
    "joint": False,
    "lambda_rei": 100.0,  # reference finetune.py: triplet + 100 * REI
    "margin": 0.1,
    "negatives": 2,  # hardest negatives per (anchor, positive); the reference uses 10 on a GPU
    "mine_every": 50,
    "positive_radius_m": 25.0,
}


def init_identity(head: DHEHead, frame: tuple[int, int]) -> None:
    """Start from the identity correspondence (frame corners in both images) instead of a degenerate one."""
    w, h = frame
    corners = torch.tensor([[0.0, 0.0], [w, 0.0], [w, h], [0.0, h]])
    with torch.no_grad():
        head.linear.weight.mul_(1e-3)
        head.linear.bias.copy_(torch.cat([corners, corners]).reshape(-1))


class PairSource:
    """Deterministic pairs: batch i depends only on (seed, i)."""

    def __init__(self, folder: Path, conf: dict[str, Any], paths: list[Path] | None = None) -> None:
        self.folder = folder
        self.paths = list(paths) if paths is not None else list_images(folder)
        self.conf = conf
        self.size = tuple(conf["frame"])
        self.geo_pairs = np.zeros((0, 2), dtype=np.int64)
        self.xy: np.ndarray | None = None  # UTM positions (same order as paths) when the names carry them
        if conf["pairs"] in ("geo", "both"):
            self.geo_pairs = self._mine_geo(folder)
            if conf["pairs"] == "geo" and not len(self.geo_pairs):
                raise VprError(f"{folder}: no geotagged positive pairs (within 25 m and similar); use --pairs self")
        self._cache: dict[int, np.ndarray] = {}

    def _mine_geo(self, folder: Path) -> np.ndarray:
        from ..io.geoset import load_geoset
        from ..runtime.extractor import describe_images
        from .pairs import geotagged_pairs

        try:
            geo = load_geoset(folder)
        except VprError:
            if self.conf["pairs"] == "both":  # an unlabelled folder: self-supervised pairs only
                return np.zeros((0, 2), dtype=np.int64)
            raise
        self.xy = geo.xy
        _, desc, _ = describe_images(geo.paths, "xfeat-vlad")  # the map builder's default model
        return geotagged_pairs(geo.xy, desc)

    def image(self, i: int) -> np.ndarray:
        if i not in self._cache:
            if len(self._cache) > 512:
                self._cache.clear()
            self._cache[i] = resize(load_image(self.paths[i]), self.size)
        return self._cache[i]

    def batch(self, iteration: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
        rng = np.random.default_rng([int(self.conf["seed"]), iteration])
        pairs = [
            self.pair(rng, bool(len(self.geo_pairs)) and (self.conf["pairs"] == "geo" or rng.random() < 0.5))
            for _ in range(int(self.conf["batch_size"]))
        ]
        return [q for q, _ in pairs], [p for _, p in pairs]

    def pair(self, rng: np.random.Generator, geo: bool) -> tuple[np.ndarray, np.ndarray]:
        """A geotagged positive pair (photometrically changed), or two homographic views of one image."""
        if geo:
            i, j = self.geo_pairs[rng.integers(len(self.geo_pairs))]
            return photometric(self.image(int(i)), rng), photometric(self.image(int(j)), rng)
        return homographic_pair(self.image(int(rng.integers(len(self.paths)))), rng, float(self.conf["k"]), self.size)


class TripletSource:
    """Geotagged triplets for ``--joint``: (anchor, positive) from mined pairs, negatives hardest under the current
    model."""

    def __init__(self, pairs: PairSource, conf: dict[str, Any]) -> None:
        self.pairs = pairs
        self.conf = conf
        folder = Path(pairs.folder)
        if pairs.xy is None:
            raise VprError(f"{folder}: --joint needs every image named in the VPR convention (@east@north@...)")
        self.xy = pairs.xy
        if not len(pairs.geo_pairs):
            raise VprError(f"{folder}: --joint needs geotagged positive pairs (within 25 m and similar); none found")
        far = np.linalg.norm(self.xy[:, None] - self.xy[None], axis=2) > float(conf["positive_radius_m"])
        self.far = [np.flatnonzero(row) for row in far]
        self.usable = np.array([i for i, (a, _) in enumerate(pairs.geo_pairs) if len(self.far[a])], dtype=np.int64)
        if not len(self.usable):
            raise VprError(
                f"{folder}: no image is farther than {conf['positive_radius_m']} m from a positive pair; --joint needs "
                "negatives (a longer route)"
            )
        self.desc: torch.Tensor | None = None

    @torch.no_grad()
    def mine(self, model, ex: Extractor) -> None:
        """Descriptors of every image under the current backbone (eval mode)."""
        out = []
        for i in range(0, len(self.pairs.paths), 16):
            imgs = [self.pairs.image(j) for j in range(i, min(i + 16, len(self.pairs.paths)))]
            out.append(model(ex.to_tensor(imgs)).float().cpu())
        self.desc = torch.cat(out)

    def batch(self, iteration: int) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
        rng = np.random.default_rng([int(self.conf["seed"]), iteration, 2])
        qs, ps, ns = [], [], []
        for _ in range(int(self.conf["batch_size"])):
            i, j = self.pairs.geo_pairs[self.usable[rng.integers(len(self.usable))]]
            far = self.far[int(i)]
            d = torch.cdist(self.desc[int(i)][None], self.desc[torch.from_numpy(far)])[0]
            hardest = far[torch.topk(d, min(int(self.conf["negatives"]), len(far)), largest=False).indices.numpy()]
            for n in hardest:
                qs.append(photometric(self.pairs.image(int(i)), rng))
                ps.append(photometric(self.pairs.image(int(j)), rng))
                ns.append(photometric(self.pairs.image(int(n)), rng))
        return qs, ps, ns


RESUME_KEYS = ("head_grid", "frame", "batch_size", "seed", "model", "pairs", "k", "joint", "negatives", "mine_every")


def train_dhe(
    images: str | Path,
    out: str | Path,
    conf: dict[str, Any] | None = None,
    resume: bool = False,
    log: str | Path | None = None,
    device: str = "cpu",
    init: str | Path | None = None,
    paths: list[Path] | None = None,
) -> Path:
    """Train and return the checkpoint path; ``init`` starts the head from a trained one (fine-tuning); ``paths``
    restricts the images."""
    c = check_options("vpr train dhe", DEFAULTS, conf, {**RULES, "pairs": set(PAIR_SOURCES)})
    out = Path(out)
    joint = bool(c["joint"])
    if joint and int(c["save_every"]) % int(c["mine_every"]):
        raise VprError(
            f"--joint: save_every ({c['save_every']}) must be a multiple of mine_every ({c['mine_every']}) for exact "
            "resume"
        )
    model = build_global_model(
        c["model"],
        {
            "input_size": list(c["frame"]),
            "keep_aspect": False,
            **({"weights": c["backbone"]} if c.get("backbone") else {}),
        },
    )
    ex = Extractor(model, device)
    model = ex.model.eval()
    tokens = int(c["head_grid"][0]) * int(c["head_grid"][1])
    if init:
        from ..rerank.dhe import load_dhe_head

        head = load_dhe_head(str(init), tokens).to(ex.device)
    else:
        head = DHEHead(tokens, generator=torch.Generator().manual_seed(int(c["seed"]))).to(ex.device)
        init_identity(head, tuple(c["frame"]))
    modules: dict[str, torch.nn.Module] = {"main": head}
    params = list(head.parameters())
    if joint:
        modules["backbone"] = model.xfeat
        params += list(model.xfeat.parameters())
    else:
        model.requires_grad_(False)
    opt = torch.optim.Adam(params, lr=float(c["lr"]))
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=int(c["lr_step"]), gamma=float(c["lr_gamma"]))
    start = loop.load_for_resume(out, modules, opt, sched, c, RESUME_KEYS) if resume else 0
    source = PairSource(Path(images), c, paths)
    triplets = TripletSource(source, c) if joint else None
    record = {
        "config": c,
        "data": {"images": str(images), "num_images": len(source.paths), "geo_pairs": int(len(source.geo_pairs))},
        "init": str(init) if init else None,
        "code_version": loop.code_version(),
        "format": "DHE homography_regression state_dict",
        "tokens": tokens,
    }
    frame, hg, mg = tuple(c["frame"]), tuple(c["head_grid"]), tuple(c["match_grid"])

    def rei(it: int, fq: torch.Tensor, fp: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        head.train()
        return rei_loss(
            head,
            fq.to(ex.device),
            fp.to(ex.device),
            frame,
            hg,
            mg,
            torch.Generator().manual_seed(int(c["seed"]) * 1_000_003 + it),
        )

    def step_stage1(it: int) -> tuple[torch.Tensor, dict[str, float]]:
        qs, ps = source.batch(it)
        with torch.no_grad():
            _, fq = ex.describe_local(ex.to_tensor(qs))
            _, fp = ex.describe_local(ex.to_tensor(ps))
        return rei(it, fq, fp)

    def step_joint(it: int) -> tuple[torch.Tensor, dict[str, float]]:
        if triplets.desc is None or it % int(c["mine_every"]) == 0:
            triplets.mine(model, ex)
        qs, ps, ns = triplets.batch(it)
        g, loc = model.describe(ex.to_tensor(qs + ps + ns))
        n = len(qs)
        trip = F.triplet_margin_loss(g[:n], g[n : 2 * n], g[2 * n :], margin=float(c["margin"]))
        per = int(c["negatives"])  # REI once per (anchor, positive), not once per negative
        r, stats = rei(it, loc[:n:per], loc[n : 2 * n : per])
        return trip + float(c["lambda_rei"]) * r, {"triplet": float(trip.detach()), "rei": float(r.detach()), **stats}

    return loop.run(
        "train dhe (joint)" if joint else "train dhe",
        out,
        c,
        modules,
        opt,
        sched,
        step_joint if joint else step_stage1,
        record,
        start,
        log,
        "loss (REI px)" if not joint else "triplet + lambda REI",
    )
