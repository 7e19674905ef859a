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
from .codec import decode_pq, encode_pq
from .format import VprMap
from .search import append_index, stored_index

__all__ = ["merge_maps", "same_model"]

log = logging.getLogger(__name__)
SPARSE = "sparse."


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


def _grids(first: VprMap, m: VprMap) -> np.ndarray | None:
    """``m``'s grids in ``first``'s codec, or None when either has none."""
    if first.local_shape is None or m.local_shape is None or m.local_shape != first.local_shape:
        return None
    if first.local_codes is not None:
        codec = first.grid_codec
        if m.local_codes is not None and codec.same(m.grid_codec):
            return np.asarray(m.local_codes)
        grids = m.local if m.local is not None else _decode(m)
        return np.concatenate([encode_pq(grids[i : i + 256], codec) for i in range(0, len(m), 256)])
    return np.asarray(m.local) if m.local is not None else _decode(m).astype(np.float16)


def _decode(m: VprMap) -> np.ndarray:
    codec = m.grid_codec
    book, rot = torch.from_numpy(codec.codebook), torch.from_numpy(codec.rotation)
    return np.concatenate(
        [
            decode_pq(torch.from_numpy(np.array(m.local_codes[i : i + 256])), book, rot).numpy()
            for i in range(0, len(m), 256)
        ]
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
    grids = [_grids(first, m) for m in maps]
    if any(g is None for g in grids) and first.local_shape is not None:
        log.warning("not every map has the same kind of grids: the merged map has none (no re-ranking by grids)")
    grids = None if any(g is None for g in grids) else np.concatenate(grids)
    extras = {k: v for k, v in first.extras.items() if not k.startswith(SPARSE)}
    sparse_keys = sorted(k for k in first.extras if k.startswith(SPARSE))
    same_sparse = sparse_keys and all(
        sorted(k for k in m.extras if k.startswith(SPARSE)) == sparse_keys
        and np.array_equal(m.extras[f"{SPARSE}conf"], first.extras[f"{SPARSE}conf"])
        for m in maps
    )
    if same_sparse:
        for k in sparse_keys:
            extras[k] = (
                np.asarray(first.extras[k])
                if k == f"{SPARSE}conf"
                else np.concatenate([np.asarray(m.extras[k]) for m in maps])
            )
    info = {
        **first.info,
        "num_images": len(desc),
        "merged": [{"source": n, "images": len(m), "created": m.info.get("created")} for n, m in zip(names, maps)],
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    pq = first.local_codes is not None
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
        extras=extras,
        local=None if pq else grids,
        local_codes=grids if pq else None,
        local_codebook=first.local_codebook if pq and grids is not None else None,
        local_rotation=first.local_rotation if pq and grids is not None else None,
        index=_index(maps, desc),
    )
