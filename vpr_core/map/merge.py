"""Maps that grow run by run: merge maps of one model, append a new run to a map, without re-describing images.

Two maps merge when one model describes both: the same weights (fingerprint) *and* the same map state (the VLAD
vocabulary or PCA a map learns at build); ``vpr map build --like A`` makes a map that satisfies both. Geotags keep
their WGS-84 values and are re-expressed in the first map's ENU frame. Grids are carried in the first map's
codec: PQ codes from another codebook are decoded and re-encoded with it. A stored index is never retrained: its
shards are kept in order and a map without shards gets new ones from the first stored index's trained parts
(``map.search.append_index``); maps with none get one only if together they pass ``min_images``.
"""

from __future__ import annotations

import datetime
import logging
from typing import Any

import faiss
import numpy as np
import torch

from ..errors import MapError
from ..store.parts import GridStore, Headings, SparseKeypoints
from .codec import decode_pq, encode_pq
from .format import VprMap
from .search import append_index, stored_index

__all__ = ["merge_maps", "same_model"]

log = logging.getLogger(__name__)


def same_model(a: VprMap, b: VprMap) -> str | None:
    """Why ``b`` cannot join ``a`` (one line), or None when one model describes both."""
    if a.model != b.model or a.fingerprint != b.fingerprint:
        return (
            f"built with another model ({b.model} {b.fingerprint} vs {a.model} {a.fingerprint}); rebuild it with "
            "'vpr map build --like FIRST_MAP'"
        )
    if sorted(a.model_state) != sorted(b.model_state) or any(
        not np.array_equal(a.model_state[k], b.model_state[k]) for k in a.model_state
    ):
        return (
            "same weights but another vocabulary (each map learnt its own); rebuild it with "
            "'vpr map build --like FIRST_MAP'"
        )
    if a.descriptors.shape[1] != b.descriptors.shape[1]:
        return f"descriptors are {b.descriptors.shape[1]}-d, not {a.descriptors.shape[1]}-d; rebuild it"
    return None


def _grids(first: GridStore | None, g: GridStore | None) -> np.ndarray | None:
    """``g``'s grid data in ``first``'s codec, or None when either has none or their grids differ in shape."""
    if first is None or g is None or g.shape != first.shape:
        return None
    if first.codec is not None:
        if first.codec.same(g.codec):
            return np.asarray(g.data)
        grids = np.asarray(g.data) if g.codec is None else _decode(g)
        return np.concatenate([encode_pq(grids[i : i + 256], first.codec) for i in range(0, len(g), 256)])
    return np.asarray(g.data) if g.codec is None else _decode(g).astype(np.float16)


def _decode(g: GridStore) -> np.ndarray:
    book, rot = torch.from_numpy(g.codec.codebook), torch.from_numpy(g.codec.rotation)
    return np.concatenate(
        [decode_pq(torch.from_numpy(np.array(g.data[i : i + 256])), book, rot).numpy() for i in range(0, len(g), 256)]
    )


def _index(maps: list[VprMap], desc: np.ndarray) -> dict[str, Any] | None:
    stored = [m.index for m in maps if m.index is not None]
    if not stored:
        return stored_index(desc)
    out: dict[str, Any] = {**stored[0], "shards": []}
    empty = faiss.deserialize_index(np.asarray(stored[0]["shards"][0]))
    empty.reset()
    start = 0
    for m in maps:
        if m.index is not None:
            out["shards"] = out["shards"] + list(m.index["shards"])
        else:  # shards from the first stored index's training: the new rows are added, nothing is retrained
            out = append_index(out, desc[: start + len(m)], start, empty)
        start += len(m)
    return out


def _headings(maps: list[VprMap]) -> Headings | None:
    """Headings of every image (NaN where a map has none); the first map's source when they all agree."""
    if all(m.headings is None for m in maps):
        return None
    yaw = np.concatenate([m.headings.yaw if m.headings else np.full(len(m), np.nan) for m in maps])
    sources = {m.headings.source for m in maps if m.headings}
    return Headings(yaw, sources.pop() if len(sources) == 1 else "geotags")


def merge_maps(maps: list[VprMap], sources: list[str] | None = None) -> VprMap:
    """One map holding every image of ``maps`` in order (ids of the first map unchanged); refused, with the reason,
    unless one model describes them all."""
    first = maps[0]
    names = sources or [f"map {i}" for i in range(len(maps))]
    for name, m in zip(names[1:], maps[1:]):
        why = same_model(first, m)
        if why:
            raise MapError(f"{name} cannot merge into {names[0]}: {why}")
    lat = np.concatenate([m.lat for m in maps])
    lon = np.concatenate([m.lon for m in maps])
    alt = np.concatenate([m.alt for m in maps])
    east, north, _ = first.frame.enu(lat, lon, alt)
    f16 = all(np.asarray(m.descriptors).dtype == np.float16 for m in maps)
    desc = np.concatenate([np.asarray(m.descriptors, np.float16 if f16 else np.float32) for m in maps])
    grids = [_grids(first.grids, m.grids) for m in maps]
    if any(g is None for g in grids) and first.grids is not None:
        log.warning("not every map has the same kind of grids: the merged map has none (no re-ranking by grids)")
    merged_grids = None if any(g is None for g in grids) else GridStore(np.concatenate(grids), first.grids.codec)
    kept = [m.sparse for m in maps if m.sparse is not None]
    sparse = SparseKeypoints.concat(kept) if len(kept) == len(maps) else None
    if sparse is None and first.sparse is not None:
        log.warning("not every map has sparse keypoints extracted alike: the merged map has none")
    info = {
        **first.info,
        "num_images": len(desc),
        "merged": [{"source": n, "images": len(m), "created": m.info.get("created")} for n, m in zip(names, maps)],
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    return VprMap(
        descriptors=desc,
        lat=lat,
        lon=lon,
        alt=alt,
        east=east,
        north=north,
        origin=first.origin,
        names=[n for m in maps for n in m.names],
        model=first.model,
        model_conf=first.model_conf,
        fingerprint=first.fingerprint,
        model_state={k: np.asarray(v) for k, v in first.model_state.items()},
        info=info,
        grids=merged_grids,
        sparse=sparse,
        dhe_head=first.dhe_head,
        calibrations=dict(first.calibrations),
        headings=_headings(maps),
        index=_index(maps, desc),
    )
