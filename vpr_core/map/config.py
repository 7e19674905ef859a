"""``MapBuildConfig``: every knob of ``vpr map build``, with its flag, and the named presets.

As ``LocalizerConfig`` does for the per-frame pipeline, this is where a build's settings are written once: the
``vpr map build`` flags are generated from these fields, ``build_map`` takes one instance, and what local features
a map stores is the one choice ``local`` (grid, sparse, both, none) with the codec settings beside it.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from typing import Any

from ..config import add_arguments, knob, knobs, validate
from ..errors import VprError
from ..models import GLOBAL_MODELS
from ..runtime.extractor import device_knob
from .codec import GRID_CODECS, PQ_DEFAULTS, PQ_M_WITH_SPARSE
from .search import BUILD_INDEX

__all__ = ["AUTO_MODEL", "LOCAL_KINDS", "MAP_PRESETS", "TINY_SIDE_PX", "MapBuildConfig"]

#: ``--model auto``: the model is chosen from the database images (``map.build.choose_model``).
AUTO_MODEL = "auto"
#: Below this median shorter side (pixels) the images are too small for XFeat's 1/8-resolution features (a 32 px
#: side is 4 cells): the weight-free thumbnail model is used.
TINY_SIDE_PX = 64

#: What a map stores for re-ranking: dense grids (ransac, dhe, geowarp), sparse keypoints (lighterglue, loftr,
#: lightglue), both (dhe+lighterglue) or none (global search only).
LOCAL_KINDS = ("grid", "sparse", "both", "none")


@dataclass
class MapBuildConfig:
    """How a map is built: the global model, the local features stored for re-ranking and their codec, the
    stored search index, and where the images are described (this process or Ray)."""

    model: str = knob(
        AUTO_MODEL,
        "Global model (see 'vpr models'). auto: thumbnail when the database images are tiny (median shorter side "
        f"under {TINY_SIDE_PX} px, e.g. 64x32 train frames: nordland R@1 with --temporal hmm 95.2 vs 71 for "
        "xfeat-vlad), else xfeat-vlad (corridor 93.7 vs 43.2, triplets 90 vs 30 for thumbnail).",
        type=str,
        choices=lambda: [AUTO_MODEL, *GLOBAL_MODELS.names()],
        registry=True,
        cli="--model",
    )
    model_options: dict = knob(
        {},
        "Model option, e.g. --set weights=ResNet50_2048_cosplace.pth --set pca_dim=256.",
        type=dict,
        cli="--set",
    )
    local: str = knob(
        "grid",
        "Local features stored for re-ranking: grid (dense XFeat grid: ransac, dhe, geowarp), sparse (XFeat "
        "keypoints, fp16: lighterglue, loftr, lightglue; 66 KB/image at 512), both (dhe+lighterglue; grids at "
        "--pq-m 32) or none.",
        type=str,
        choices=lambda: LOCAL_KINDS,
        cli="--local",
    )
    sparse_keypoints: int = knob(
        512,
        "With --local sparse/both: keypoints per image (1024 is 4x slower to match).",
        type=int,
        range=(1, 8192),
        cli="--sparse-keypoints",
    )
    sparse_max_side: int = knob(
        640,
        "With --local sparse/both: the longest image side keypoints are extracted at (px).",
        type=int,
        range=(32, 8192),
        cli="--sparse-max-side",
    )
    grid_codec: str = knob(
        "pq",
        "How the dense grids are stored: pq (product-quantised, 9.6 KB/image at --pq-m 8) or fp16 (153.6 KB/image).",
        type=str,
        choices=lambda: GRID_CODECS,
        cli="--grid-codec",
    )
    pq_m: int = knob(
        0,
        f"PQ bytes per grid cell; 0 = {PQ_DEFAULTS['m']}, or {PQ_M_WITH_SPARSE} with --local both (where the grids "
        "serve dhe+lighterglue).",
        type=int,
        range=(0, 512),
        cli="--pq-m",
    )
    index: str = knob(
        "auto",
        "Search index stored in the map: auto (IVF-PQ shards from 50 000 images on, exact search below), ivfpq "
        "(always) or flat (never).",
        type=str,
        choices=lambda: BUILD_INDEX,
        cli="--index",
    )
    device: str = device_knob(cli="--device")
    ray: str = knob(
        "",
        "Describe the images as Ray Data batch inference: 'local' starts Ray here, an address joins a cluster "
        "(pip install .[ray]); resumable: rerun the same command after a failure.",
        type=str,
        cli="--ray",
    )
    ray_block: int = knob(
        64, "With --ray: images per task and per resumable block.", type=int, range=(1, 1_000_000), cli="--ray-block"
    )
    ray_workers: int = knob(
        0,
        "With --ray: describer actors; 0 = one per GPU, else one per CPU of the cluster.",
        type=int,
        range=(0, 100_000),
        cli="--ray-workers",
    )

    def validate(self, surface: str | None = None) -> MapBuildConfig:
        validate(self, surface)
        return self

    @property
    def stores_grid(self) -> bool:
        return self.local in ("grid", "both")

    @property
    def stores_sparse(self) -> bool:
        return self.local in ("sparse", "both")

    def pq_conf(self) -> dict[str, Any]:
        """PQ options of the grids: the code size defaults to ``PQ_M_WITH_SPARSE`` beside sparse keypoints."""
        m = self.pq_m or (PQ_M_WITH_SPARSE if self.stores_sparse else PQ_DEFAULTS["m"])
        return {**PQ_DEFAULTS, "m": int(m)}

    def sparse_conf(self) -> dict[str, int]:
        return {"top_k": int(self.sparse_keypoints), "max_side": int(self.sparse_max_side)}

    @classmethod
    def preset(cls, name: str = "default", **overrides: Any) -> MapBuildConfig:
        """The named preset (``MAP_PRESETS``) with ``overrides`` (field names) on top, validated."""
        if name not in MAP_PRESETS:
            raise VprError(f"map preset '{name}' unknown; choose one of {', '.join(MAP_PRESETS)}")
        unknown = set(overrides) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise VprError(
                f"MapBuildConfig has no setting {sorted(unknown)}; known: {', '.join(f.field for f in knobs(cls))}"
            )
        return cls(**{**MAP_PRESETS[name], **overrides}).validate()

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """``vpr map build``'s flags, one per knob, plus ``--preset``; unset flags keep the preset's value."""
        parser.add_argument(
            "--preset",
            choices=list(MAP_PRESETS),
            default="default",
            help="named settings the other flags refine: "
            + "; ".join(f"{k}: {v or 'the defaults below'}" for k, v in MAP_PRESETS.items()),
        )
        add_arguments(parser, cls, [k.field for k in knobs(cls, "cli")], keep_unset=True)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> MapBuildConfig:
        given = {k.field: getattr(args, k.field) for k in knobs(cls, "cli") if hasattr(args, k.field)}
        if "model_options" in given:
            from ..config import parse_sets

            given["model_options"] = parse_sets(given["model_options"], "--set")
        return cls.preset(args.preset, **given)


#: Named build settings, as hloc names its confs: each is a few fields over the defaults.
MAP_PRESETS: dict[str, dict[str, Any]] = {
    "default": {},  # PQ grids (9.6 KB/image): ransac, dhe, geowarp, reranker auto
    "learned": {"local": "both"},  # + 512 XFeat keypoints, grids at 32 B/cell: dhe+lighterglue, the most accurate
    "keypoints": {"local": "sparse"},  # keypoints only: lighterglue, loftr, lightglue
    "exact-grids": {"grid_codec": "fp16"},  # float16 grids, 16x the size of PQ: for studies of the codec
    "global-only": {"local": "none"},  # descriptors and geotags only: the smallest map, no re-ranking
    "city": {"index": "ivfpq"},  # a stored IVF-PQ index whatever the size (auto stores one from 50 000 images)
}
