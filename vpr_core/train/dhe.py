"""``vpr train dhe``: stage 1 of DHE - the homography head on a frozen backbone, REI loss.

Defaults follow the reference (Lu-Feng/DHE-VPR train_dhe.py): Adam, lr 1e-4,
StepLR(10000, 0.8), batch 16, random DLT weights. Pairs: self-supervised
homographic views of every image (any folder), plus geotagged positives when the
folder is named in the VPR convention (``--pairs geo|self|both``).

Exact resume: the pairs and random weights of iteration i come from generators
seeded by (seed, i), so an interrupted run resumed from a checkpoint continues
with the same numbers as an uninterrupted one. Checkpoints are written atomically:
``CKPT`` (the head's plain state_dict, the layout ``--rerank-set weights=`` reads),
``CKPT.optim`` (optimizer and scheduler state, iteration) and ``CKPT.json``
(config, data, code version). A kill at any moment leaves the previous set loadable.
"""

from __future__ import annotations

import json
import math
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from ..errors import VprError
from ..extract import Extractor
from ..images import list_images, load_image, resize
from ..mapdb import atomic_write
from ..models import build_global_model
from ..rerank.dhe import DHEHead
from .pairs import homographic_pair, photometric
from .rei import rei_loss

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
    "model": "xfeat-gem",  # frozen backbone: only its dense grid is used
}


def init_identity(head: DHEHead, frame: tuple[int, int]) -> None:
    """Start from the identity correspondence (frame corners in both images) instead of a degenerate one."""
    w, h = frame
    corners = torch.tensor([[0.0, 0.0], [w, 0.0], [w, h], [0.0, h]])
    with torch.no_grad():
        head.linear.weight.mul_(1e-3)
        head.linear.bias.copy_(torch.cat([corners, corners]).reshape(-1))


def code_version() -> str:
    try:
        return subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True, cwd=Path(__file__).parent, timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


class PairSource:
    """Deterministic pairs: batch i depends only on (seed, i)."""

    def __init__(self, folder: Path, conf: dict[str, Any]) -> None:
        self.paths = list_images(folder)
        self.conf = conf
        self.size = tuple(conf["frame"])
        self.geo_pairs = np.zeros((0, 2), dtype=np.int64)
        if conf["pairs"] in ("geo", "both"):
            self.geo_pairs = self._mine_geo(folder)
            if conf["pairs"] == "geo" and not len(self.geo_pairs):
                raise VprError(f"{folder}: no geotagged positive pairs (within 25 m and similar); use --pairs self")
        self._cache: dict[int, np.ndarray] = {}

    def _mine_geo(self, folder: Path) -> np.ndarray:
        from ..dataset import load_geoset
        from ..mapping import build_map
        from .pairs import geotagged_pairs

        geo = load_geoset(folder)
        m = build_map(geo, local=False)
        return geotagged_pairs(geo.xy, m.descriptors)

    def image(self, i: int) -> np.ndarray:
        if i not in self._cache:
            if len(self._cache) > 512:
                self._cache.clear()
            self._cache[i] = resize(load_image(self.paths[i]), self.size)
        return self._cache[i]

    def batch(self, iteration: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
        rng = np.random.default_rng([int(self.conf["seed"]), iteration])
        qs, ps = [], []
        for _ in range(int(self.conf["batch_size"])):
            use_geo = len(self.geo_pairs) and (self.conf["pairs"] == "geo" or rng.random() < 0.5)
            if use_geo:
                i, j = self.geo_pairs[rng.integers(len(self.geo_pairs))]
                qs.append(photometric(self.image(int(i)), rng))
                ps.append(photometric(self.image(int(j)), rng))
            else:
                a, b = homographic_pair(self.image(int(rng.integers(len(self.paths)))), rng, float(self.conf["k"]), self.size)
                qs.append(a)
                ps.append(b)
        return qs, ps


def save_checkpoint(out: Path, head: DHEHead, opt, sched, iteration: int, record: dict[str, Any]) -> None:
    """Three atomic replacements; the JSON (written last) names the iteration all three agree on."""
    atomic_write(out.with_name(out.name + ".optim"), lambda t: torch.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "iteration": iteration}, t))
    atomic_write(out, lambda t: torch.save(head.state_dict(), t))
    atomic_write(out.with_name(out.name + ".json"), lambda t: t.write_text(json.dumps({**record, "iteration": iteration}, indent=2)))


def train_dhe(images: str | Path, out: str | Path, conf: dict[str, Any] | None = None, resume: bool = False, log: str | Path | None = None, device: str = "cpu") -> Path:
    c = {**DEFAULTS, **(conf or {})}
    out = Path(out)
    torch.manual_seed(int(c["seed"]))
    model = build_global_model(c["model"], {"input_size": list(c["frame"]), "keep_aspect": False})
    ex = Extractor(model, device)
    tokens = int(c["head_grid"][0]) * int(c["head_grid"][1])
    head = DHEHead(tokens).to(ex.device)
    init_identity(head, tuple(c["frame"]))
    opt = torch.optim.Adam(head.parameters(), lr=float(c["lr"]))
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=int(c["lr_step"]), gamma=float(c["lr_gamma"]))
    start = 0
    if resume:
        start = load_for_resume(out, head, opt, sched, c)
    source = PairSource(Path(images), c)
    record = {"config": c, "data": {"images": str(images), "num_images": len(source.paths), "geo_pairs": int(len(source.geo_pairs))},
              "code_version": code_version(), "format": "DHE homography_regression state_dict", "tokens": tokens}  # fmt: skip
    logf = Path(log).open("a" if resume else "w") if log else None
    history: list[tuple[int, float]] = []
    bar = tqdm(range(start, int(c["iterations"])), initial=start, total=int(c["iterations"]), desc="train dhe", unit="it")
    try:
        for it in bar:
            qs, ps = source.batch(it)
            with torch.no_grad():
                _, fq = ex.describe_local(ex.to_tensor(qs))
                _, fp = ex.describe_local(ex.to_tensor(ps))
            head.train()
            loss, stats = rei_loss(head, fq.to(ex.device), fp.to(ex.device), tuple(c["frame"]), tuple(c["head_grid"]), tuple(c["match_grid"]),
                                   torch.Generator().manual_seed(int(c["seed"]) * 1_000_003 + it))  # fmt: skip
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            lv = float(loss.detach())
            if not math.isfinite(lv):
                raise VprError(f"loss became {lv} at iteration {it}; lower --lr or check the images")
            history.append((it + 1, lv))
            bar.set_postfix(loss=f"{lv:.2f}", inliers=f"{stats['mean_inliers']:.0f}")
            if logf and ((it + 1) % int(c["log_every"]) == 0 or it == start):
                logf.write(json.dumps({"iteration": it + 1, "loss": lv, "lr": sched.get_last_lr()[0], **stats, "time": time.time()}) + "\n")
                logf.flush()
            if (it + 1) % int(c["save_every"]) == 0 or it + 1 == int(c["iterations"]):
                save_checkpoint(out, head, opt, sched, it + 1, record)
    finally:
        if logf:
            logf.close()
    if log and history:
        plot_loss(Path(log), out.with_suffix(".loss.png"))
    return out


def load_for_resume(out: Path, head: DHEHead, opt, sched, c: dict[str, Any]) -> int:
    meta_path, optim_path = out.with_name(out.name + ".json"), out.with_name(out.name + ".optim")
    if not (out.exists() and meta_path.exists() and optim_path.exists()):
        raise VprError(f"{out}: nothing to resume (need {out.name}, {out.name}.optim and {out.name}.json); run without --resume")
    meta = json.loads(meta_path.read_text())
    st = torch.load(optim_path, map_location="cpu", weights_only=True)
    if st["iteration"] != meta["iteration"]:
        raise VprError(f"{out}: checkpoint files disagree (iteration {st['iteration']} vs {meta['iteration']}); resume from an intact set")
    for k in ("head_grid", "frame", "batch_size", "seed", "model", "pairs", "k"):
        if meta["config"][k] != c[k]:
            raise VprError(f"{out}: --resume with {k}={c[k]} but the checkpoint was trained with {meta['config'][k]}")
    head.load_state_dict(torch.load(out, map_location="cpu", weights_only=True), strict=True)
    opt.load_state_dict(st["optimizer"])
    sched.load_state_dict(st["scheduler"])
    return int(st["iteration"])


def plot_loss(log: Path, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([r["iteration"] for r in rows], [r["loss"] for r in rows])
    ax.set_xlabel("iteration")
    ax.set_ylabel("REI loss [px]")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    atomic_write(png, lambda t: fig.savefig(t, dpi=110, format="png"))
    plt.close(fig)
