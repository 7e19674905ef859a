"""``vpr map adapt``: fine-tune the DHE head on the map's own database images and store it in the map.

Self-supervised only (homographic views of each database image, REI loss), so it
needs no labels and never sees a query image: the images are exactly the map's
entries, found in the folder (or CSV) the map was built from. It starts from the
map's current head (a previous adaptation, else the head shipped for its model) and
the result travels inside the map file, where the ``dhe`` re-ranker picks it up
when no explicit weights are configured.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch

from ..config import check_options
from ..errors import MapError, VprError
from ..io.files import temp_sibling
from ..io.geoset import load_geoset
from ..io.images import list_images
from ..rerank.dhe import SHIPPED_HEADS, grid_for, head_to_part, load_dhe_head, map_head
from ..train.dhe import RULES
from .format import VprMap, load_map, save_map

ADAPT_DEFAULTS: dict[str, Any] = {
    "iterations": 300,
    "batch_size": 8,
    "lr": 1e-4,
    "seed": 0,
    "save_every": 100,
    "pairs": "self",
}


def map_images(vmap: VprMap, images: str | Path | None = None) -> list[Path]:
    """The map's database images, in map order; fails naming what is missing."""
    src = Path(images) if images else Path(vmap.info.get("source") or "")
    if not str(src) or not src.exists():
        raise MapError(
            f"map images not found at '{src}' (recorded source); pass --images DIR with the map's database images"
        )
    found = load_geoset(csv_path=src).paths if src.is_file() else list_images(src)
    by_name = {p.name: p for p in found}
    missing = [n for n in vmap.names if n not in by_name]
    if missing:
        raise MapError(
            f"{src}: {len(missing)} of the map's {len(vmap.names)} images are missing (e.g. {missing[0]}); pass "
            "--images with the map's database images"
        )
    return [by_name[n] for n in vmap.names]


def adapt_map(
    map_path: str | Path,
    out: str | Path | None = None,
    images: str | Path | None = None,
    conf: dict[str, Any] | None = None,
    device: str = "cpu",
    log: str | Path | None = None,
) -> VprMap:
    from ..train.dhe import train_dhe

    c = check_options("vpr map adapt", ADAPT_DEFAULTS, conf, RULES)
    vmap = load_map(map_path)
    if vmap.model not in SHIPPED_HEADS:
        raise VprError(
            f"map adapt trains the DHE head on XFeat grids; this map uses '{vmap.model}' (supported: "
            f"{', '.join(sorted(SHIPPED_HEADS))})"
        )
    if vmap.grids is None:
        raise MapError(f"{map_path}: the map has no local features, so DHE cannot serve it; rebuild with --local grid")
    paths = map_images(vmap, images)
    _, gh, gw = vmap.grids.shape
    model_conf = vmap.model_conf
    train_conf = {
        **c,
        "frame": list(model_conf.get("input_size", [320, 240])),
        "head_grid": list(grid_for(gw, gh)),
        "model": "xfeat-gem",
        "backbone": model_conf.get("weights"),
    }
    head, started_from = map_head(vmap, str(map_path))
    # scratch beside the map (pid-tagged): a killed run leaves nothing in /tmp, and the next one removes it
    tmp = temp_sibling(Path(out or map_path), ".adapt")
    try:
        init = tmp / "init.pt"
        torch.save(head.state_dict(), init)
        ckpt = train_dhe(
            paths[0].parent, tmp / "adapted.pt", train_conf, log=log, device=device, init=init, paths=paths
        )
        adapted = load_dhe_head(str(ckpt))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    vmap.dhe_head = head_to_part(adapted)
    vmap.info["dhe_adapted"] = {
        "iterations": int(c["iterations"]),
        "images": len(paths),
        "init": started_from.split(" ")[0],
    }
    save_map(vmap, out or map_path)
    return vmap
