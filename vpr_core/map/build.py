"""Map building: geotagged images (folder, CSV or a mapping run's bag) -> descriptors, vocabulary, geotags -> map
file."""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import math
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from ..errors import VprError
from ..geodesy import LocalFrame, utm_name_fields
from ..io.bags import BagError, GeoFrame, GeoFrames, Skips
from ..io.files import atomic_write, staged
from ..io.geoset import GeoImage, GeoSet, make_geoset, vpr_name
from ..store.parts import GridStore, Headings
from .config import AUTO_MODEL, TINY_SIDE_PX, MapBuildConfig
from .describe import describe_share, prepare_model
from .format import IMAGES_MARKER, VprMap, save_map
from .search import stored_index

log = logging.getLogger(__name__)

__all__ = [
    "build_and_save",
    "build_map",
    "build_map_from_bag",
    "describe_share",
    "extract_map_images",
    "prepare_model",
    "ray_parts",
]


def build_map(
    geo: GeoSet,
    conf: MapBuildConfig | None = None,
    *,
    source: str = "",
    like: VprMap | None = None,
    work_dir: str | Path | None = None,
    **overrides: Any,
) -> VprMap:
    """Describe every image of ``geo`` as ``conf`` (with ``overrides``, ``MapBuildConfig`` field names) says, with
    ``like``'s model when given; learns the vocabulary first when the model needs one.

    Dense grids are PQ-coded by default (9.6 KB/image; fp16: 153.6 KB): measured cheaper than recomputing
    candidates' features per query (bench/bench_rerank.py). Sparse keypoints serve the learned matchers
    (``rerank.sparse``). Maps above ``min_images`` get a trained IVF-PQ index (``map.search``). ``conf.ray``
    ('local' or a cluster address) describes the images as Ray Data batch inference (``map.distributed``), keeping
    resumable blocks in ``work_dir``.
    """
    c = (
        dataclasses.replace(conf or MapBuildConfig(), **overrides).validate()
        if overrides
        else (conf or MapBuildConfig()).validate()
    )
    model_name = like.model if like is not None else c.model
    paths = list(geo.paths)
    choice = ""
    if model_name == AUTO_MODEL:  # --set options then apply to the model chosen, and are checked against it
        model_name, choice = choose_model(paths)
        log.info("model auto: %s", choice)
    if c.ray and c.ray != "local":
        from .distributed import reachable

        reachable(c.ray)  # before the vocabulary pass, not after it
    _one_image_per_name(paths)
    grid_codec = c.grid_codec if c.stores_grid else None
    ex, codec = prepare_model(paths, model_name, c.model_options, c.device, grid_codec, c.pq_conf(), like)
    model = ex.model
    if c.ray:
        from .distributed import describe_on_ray

        desc, grid_data = describe_on_ray(
            c.ray, ex, codec, paths, c.stores_grid, work_dir, c.ray_workers or None, c.ray_block
        )
    else:
        desc, grid_data = describe_share(ex, paths, c.stores_grid, codec)
    grids = GridStore(grid_data, codec) if grid_data is not None else None
    sparse = None
    if c.stores_sparse:
        from ..io.images import load_image
        from ..rerank.sparse import extract_sparse

        with tqdm(total=len(paths), desc="sparse features", unit="img") as bar:
            sparse = extract_sparse((load_image(p) for p in paths), c.sparse_conf(), str(ex.device), bar)
    info = {
        "source": source,
        **({"model_choice": choice} if choice else {}),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "num_images": len(paths),
        "trained_weights": bool(model.trained),
        "local_features": None
        if grids is None
        else {"grid": list(model.local_grid), "codec": grids.kind, "bytes_per_image": grids.bytes_per_image},
        "sparse_features": None
        if sparse is None
        else {"keypoints": sparse.top_k, "max_side": sparse.max_side, "bytes_per_image": sparse.bytes_per_image},
    }
    if like is not None:
        info["like"] = like.info.get("source", "")
    m = VprMap(
        descriptors=desc,
        lat=geo.lat,
        lon=geo.lon,
        alt=geo.alt,
        east=geo.east,
        north=geo.north,
        origin=(geo.frame.lat0, geo.frame.lon0, geo.frame.h0),
        names=[p.name for p in paths],
        model=model_name,
        model_conf=model.conf,
        fingerprint=model.fingerprint(),
        model_state=model.map_state(),
        info=info,
        grids=grids,
        sparse=sparse,
        headings=map_headings(geo),
    )
    m.index = stored_index(m.descriptors, {"kind": c.index}, like.index if like is not None else None)
    return m


def map_headings(geo) -> Headings | None:
    """Per-image heading: the geotags' (CSV column, VPR name field) where any is given, else the direction of travel
    when the names give the capture order; None otherwise (yaw then stays unknown at run time)."""
    from ..io.geoset import capture_order

    given = Headings.from_compass(np.array([g.heading for g in geo.images], np.float64))
    if given is not None:
        return given
    order = capture_order(geo)
    return None if order is None else Headings.from_travel(geo.east, geo.north, order)


def choose_model(paths: list[Path], sample: int = 32) -> tuple[str, str]:
    """``--model auto``: thumbnail for tiny images (median shorter side of up to ``sample`` evenly spaced database
    images under ``TINY_SIDE_PX``), else xfeat-vlad; returns the model and why (recorded in the map's info)."""
    from ..io.images import encoded_size

    picks = [paths[i] for i in np.linspace(0, len(paths) - 1, min(sample, len(paths))).round().astype(int)]
    sides = []
    for p in picks:
        try:
            size = encoded_size(p.read_bytes())
        except OSError:
            size = None
        if size is not None:
            sides.append(min(size))
    if not sides:
        return "xfeat-vlad", "image sizes unreadable: xfeat-vlad"
    side = float(np.median(sides))
    model = "thumbnail" if side < TINY_SIDE_PX else "xfeat-vlad"
    return model, f"median shorter side {side:.0f} px {'<' if side < TINY_SIDE_PX else '>='} {TINY_SIDE_PX}: {model}"


def _one_image_per_name(paths: list[Path]) -> None:
    """A map names its images by file name (debug view, map adapt, merge): one image per name."""
    first: dict[str, Path] = {}
    for p in paths:
        if p.name in first:
            twice = f"{p} is listed twice" if first[p.name] == p else f"{first[p.name]} and {p} share a file name"
            raise VprError(f"{twice}; a map names its images by file name: rename or drop one")
        first[p.name] = p


@contextmanager
def ray_parts(out: str | Path, conf: MapBuildConfig | None) -> Iterator[Path | None]:
    """Where a Ray build keeps its resumable blocks (``OUT.parts/``) until the map is written; removed after."""
    parts = Path(f"{out}.parts") if conf is not None and conf.ray else None
    yield parts
    if parts is not None:
        shutil.rmtree(parts, ignore_errors=True)


def build_and_save(
    geo: GeoSet, out: str | Path, conf: MapBuildConfig | None = None, *, source: str = "", like: VprMap | None = None,
    **overrides: Any,
) -> VprMap:  # fmt: skip
    """Build (``build_map``) and save atomically."""
    conf = dataclasses.replace(conf or MapBuildConfig(), **overrides)
    with ray_parts(out, conf) as parts:
        m = build_map(geo, conf, source=source, like=like, work_dir=parts)
        save_map(m, out)
    return m


def _image_file(gf: GeoFrame, lat: float, lon: float, index: int) -> tuple[str, bytes]:
    """VPR-convention name and bytes: a CompressedImage's payload as recorded, raw images as lossless PNG."""
    f = gf.frame
    ext = ".jpg" if f.encoded is not None and "png" not in f.fmt.lower() else ".png"
    name = vpr_name(lat, lon, f"{f.stamp}", ext)
    if f.encoded is not None:
        return name, f.encoded
    ok, buf = cv2.imencode(".png", cv2.cvtColor(f.image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise VprError(f"cannot encode frame {index} as PNG")
    return name, buf.tobytes()


def extract_map_images(
    bag: str | Path | list[str | Path],
    image_topic: str,
    fix_topic: str,
    out_dir: str | Path,
    min_spacing: float = 0.0,
    max_fix_age: float = 1.0,
    max_fix_std: float = 10.0,
    progress: bool = True,
    map_path: str | Path | None = None,
    heading_topic: str = "",
) -> tuple[list[GeoImage], LocalFrame, Skips, int]:
    """Write the kept frames to ``out_dir`` (VPR names; written to a temporary folder, then renamed) -> geotags.

    ``bag`` may be several bags (a fleet's runs): their frames go to the one folder, in the order given, each
    bag's fixes in its own ENU frame before the WGS-84 names are written. The folder carries a marker naming
    ``map_path`` and an id, marked complete (``mark_images_complete``) just before the map that owns it is saved
    with the same id: only an incomplete folder whose map never appeared (a build killed while extracting or
    describing) is a leftover and replaced; a complete one is never deleted, whatever happened to its map since.
    Returns the first bag's frame, the summed skips and frames seen.
    """
    bags = list(bag) if isinstance(bag, list | tuple) else [bag]
    out_dir = Path(out_dir)
    if out_dir.exists() and _orphaned_images(out_dir):
        log.warning("%s: left by an interrupted map build (its map was never written); replacing it", out_dir)
        shutil.rmtree(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise VprError(f"{out_dir}: image folder exists and is not empty; remove it or pass --images-out elsewhere")
    sources = [
        GeoFrames(b, image_topic, fix_topic, max_fix_age, max_fix_std, heading_topic=heading_topic) for b in bags
    ]
    images: list[GeoImage] = []
    skips, seen = Skips(), 0
    if out_dir.exists():
        out_dir.rmdir()  # empty (checked above): replaced by the staged folder
    with staged(out_dir) as tmp:
        tmp.mkdir()
        owner = str(Path(map_path).resolve()) if map_path else None
        (tmp / IMAGES_MARKER).write_text(json.dumps({"map": owner, "id": uuid.uuid4().hex, "complete": False}))
        total = sum(src.num_images for src in sources)
        bar = tqdm(total=total, desc="bag frames", unit="img", disable=not progress)
        for src in sources:
            last_xy: tuple[float, float] | None = None
            for gf in src:
                bar.update(1)
                if not isinstance(gf, GeoFrame):
                    continue
                if last_xy is not None and math.hypot(gf.east - last_xy[0], gf.north - last_xy[1]) < min_spacing:
                    src.skips.add("closer than min-spacing")
                    continue
                lat, lon, _ = (float(v[0]) for v in src.frame.lla(gf.east, gf.north))
                name, data = _image_file(gf, lat, lon, len(images))
                if (tmp / name).exists():  # two bags with a frame at the same place and stamp
                    name = f"{Path(name).stem}{len(images)}{Path(name).suffix}"
                (tmp / name).write_bytes(data)
                compass = 90.0 - math.degrees(gf.yaw) if math.isfinite(gf.yaw) else math.nan  # as geotags give it
                images.append(GeoImage(out_dir / name, lat, lon, gf.alt, compass, utm_name_fields(lat, lon)))
                last_xy = (gf.east, gf.north)
            skips.counts.update(src.skips.counts)
            seen += src.num_images
        bar.close()
        if not images:
            raise BagError(
                f"{', '.join(map(str, bags))}: no image could be paired with a usable fix "
                f"(skipped: {skips.summary()}); check --fix-topic, --max-fix-age"
            )
    return images, sources[0].frame, skips, seen


def _images_marker(folder: Path) -> dict[str, Any]:
    try:
        marker = json.loads((folder / IMAGES_MARKER).read_text())
    except (OSError, ValueError):
        return {}
    return marker if isinstance(marker, dict) else {}


def _orphaned_images(folder: Path) -> bool:
    """A map-images folder that no map can reference: a build killed before it finished, whose map does not
    exist. Folders of older versions (no ``complete`` field) and complete ones are never orphans: their map may
    have been moved."""
    marker = _images_marker(folder)
    owner = marker.get("map")
    return marker.get("complete") is False and isinstance(owner, str) and bool(owner) and not Path(owner).exists()


def mark_images_complete(folder: Path) -> str:
    """Mark a map-images folder as referenced by a map (before that map is saved); returns the id both carry."""
    marker = _images_marker(folder)
    marker["complete"] = True
    marker.setdefault("id", uuid.uuid4().hex)
    atomic_write(folder / IMAGES_MARKER, lambda p: p.write_text(json.dumps(marker)))
    return str(marker["id"])


def build_map_from_bag(
    bag: str | Path | list[str | Path],
    image_topic: str,
    fix_topic: str,
    out: str | Path,
    images_out: str | Path | None = None,
    min_spacing: float = 0.0,
    max_fix_age: float = 1.0,
    max_fix_std: float = 10.0,
    progress: bool = True,
    conf: MapBuildConfig | None = None,
    like: VprMap | None = None,
    heading_topic: str = "",
    **overrides: Any,
):
    """Kept frames go to ``images_out`` (default ``MAP.images/``) - the map's image source for debug views and ``map
    adapt``. Headings: the IMU orientation on ``heading_topic`` at each frame (source ``bag``), else the direction of
    travel."""
    out = Path(out)
    images_out = Path(images_out) if images_out else out.with_name(out.name + ".images")
    images, _, skips, seen = extract_map_images(
        bag,
        image_topic,
        fix_topic,
        images_out,
        min_spacing,
        max_fix_age,
        max_fix_std,
        progress,
        map_path=out,
        heading_topic=heading_topic,
    )
    conf = dataclasses.replace(conf or MapBuildConfig(), **overrides)
    with ray_parts(out, conf) as parts:
        m = build_map(make_geoset(images), conf, source=str(images_out), like=like, work_dir=parts)
        if heading_topic and m.headings is not None and m.headings.source == "geotags":
            m.headings = Headings(m.headings.yaw, "bag")
        _finish_bag_map(m, out, images_out, bag, image_topic, fix_topic, seen, len(images), skips)
    return m, skips, seen


def _finish_bag_map(m: VprMap, out: Path, images_out: Path, bag, image_topic: str, fix_topic: str, seen: int,
                    kept: int, skips: Skips) -> None:  # fmt: skip
    """Record the bag and claim the image folder (from here on never a leftover), then save the map."""
    m.info["images_id"] = mark_images_complete(images_out)  # from here on the folder is never a leftover
    m.info["bag"] = {
        "path": [str(b) for b in bag] if isinstance(bag, list | tuple) else str(bag),
        "image_topic": image_topic,
        "fix_topic": fix_topic,
        "frames": seen,
        "kept": kept,
        "skipped": dict(skips.counts),
    }
    save_map(m, out)
