"""Map building on Ray: image decoding and description as Ray Data batch inference, resumable block by block.

The driver learns what every worker must share (the vocabulary and the grid codebook, ``describe.prepare_model``),
then Ray Data runs a pool of describer actors (one GPU each where the cluster has GPUs, else one CPU each) over
blocks of ``BLOCK`` images. Each finished block is written beside the map (``MAP.parts/``, temp file then rename)
as it streams back, so a run killed half-way (a worker, the driver, the cluster) resumes with the blocks still
missing; Ray itself restarts a dead actor and retries its task. Workers read the images by path: on a cluster,
the folder must be on storage every node mounts. The map is the one the single-process build writes.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import shutil
import socket
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ..errors import VprError
from ..io.files import atomic_write
from ..runtime.extractor import Extractor
from .codec import GridCodec

__all__ = ["BLOCK", "describe_on_ray", "reachable"]

log = logging.getLogger(__name__)
#: Images per Ray task and per resumable block file.
BLOCK = 64


class _Describer:
    """One Ray actor: the map's model rebuilt from its name, options and map state (vocabulary), on its device."""

    def __init__(
        self, name: str, conf: dict, state: dict, codec: GridCodec | None, paths: list[str], local: bool, block: int
    ) -> None:
        import torch

        from ..models import build_global_model
        from .describe import describe_share

        torch.set_num_threads(1)
        model = build_global_model(name, conf)
        model.load_map_state(state)
        self.ex = Extractor(model, "auto")
        self.codec, self.paths, self.local, self.block = codec, [Path(p) for p in paths], local, block
        self.describe = describe_share

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        blocks = [int(b) for b in batch["block"]]
        out: dict[str, list] = {"block": [], "desc": [], "local": []}
        for b in blocks:
            desc, loc = self.describe(
                self.ex, self.paths[b * self.block : (b + 1) * self.block], self.local, self.codec, desc=None
            )
            out["block"].append(b)
            out["desc"].append(desc)
            out["local"].append(loc if loc is not None else np.zeros((len(desc), 0), np.uint8))
        return {k: np.stack(v) if k == "block" else _ragged(v) for k, v in out.items()}


def _ragged(arrays: list[np.ndarray]) -> np.ndarray:
    """An object column: the last block may be shorter than the others."""
    col = np.empty(len(arrays), dtype=object)
    for i, a in enumerate(arrays):
        col[i] = a
    return col


def _key(ex: Extractor, codec: GridCodec | None, paths: list[Path], local: bool, block: int) -> str:
    """What the blocks on disk were computed for: a resumed run reuses them only when this matches."""
    h = hashlib.sha256(ex.model.fingerprint().encode())
    for k, v in sorted(ex.model.map_state().items()):
        h.update(k.encode() + np.ascontiguousarray(v).tobytes())
    if codec is not None:
        h.update(codec.tobytes())
    h.update(json.dumps([str(p) for p in paths] + [local, block]).encode())
    return h.hexdigest()[:16]


def reachable(address: str, timeout: float = 3.0) -> None:
    """A HOST:PORT cluster address answers, or one line now (ray.init would retry for minutes)."""
    if address == "auto" or "://" in address or ":" not in address:
        return
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return
    except (OSError, ValueError) as e:
        raise VprError(
            f"--ray {address}: no Ray head answers there ({e}); start one with 'ray start --head' or use --ray local"
        ) from None


def _init(address: str) -> Any:
    try:
        import ray
    except ImportError:
        raise VprError("--ray needs Ray: pip install '.[ray]' (or pip install 'ray[data]')") from None
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # ours (tqdm, images) is the one bar
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    if not ray.is_initialized():
        if address != "local":
            reachable(address)
        try:
            ray.init(address=None if address == "local" else address, log_to_driver=False, include_dashboard=False)
        except (ConnectionError, ValueError, RuntimeError) as e:
            raise VprError(f"--ray {address}: cannot start or join Ray ({str(e).splitlines()[0][:160]})") from None
    return ray


def describe_on_ray(
    address: str,
    ex: Extractor,
    codec: GridCodec | None,
    paths: list[Path],
    local: bool,
    work_dir: str | Path | None,
    workers: int | None = None,
    block: int = BLOCK,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Descriptors and grids of ``paths``, computed by Ray actors; blocks kept in ``work_dir`` until the map is
    saved (the caller removes it), so a rerun after a failure describes only what is missing."""
    if work_dir is None:
        raise VprError("--ray needs a folder for its resumable blocks (the map's MAP.parts/)")
    work = Path(work_dir)
    key = _key(ex, codec, paths, local, block)
    manifest = work / "manifest.json"
    if work.exists() and (not manifest.exists() or json.loads(manifest.read_text()).get("key") != key):
        log.warning("%s: blocks of another build (other images or model); starting over", work)
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    manifest.write_text(json.dumps({"key": key, "images": len(paths), "block": block}))
    n_blocks = (len(paths) + block - 1) // block
    done = {int(p.stem.split("_")[1]) for p in work.glob("block_*.npz")}
    todo = [b for b in range(n_blocks) if b not in done]
    if done:
        log.warning("resuming the Ray build: %d of %d blocks already described in %s", len(done), n_blocks, work)
    if todo:
        ray = _init(address)
        gpus = int(ray.cluster_resources().get("GPU", 0))
        cpus = int(ray.cluster_resources().get("CPU", 1))
        pool = workers or max(1, min(gpus or cpus, len(todo)))
        model = ex.model
        state = {k: np.asarray(v) for k, v in model.map_state().items()}
        ds = ray.data.from_items([{"block": b} for b in todo], override_num_blocks=len(todo)).map_batches(
            _Describer,
            fn_constructor_kwargs={
                "name": model.name,
                "conf": model.conf,
                "state": state,
                "codec": codec,
                "paths": [str(p) for p in paths],
                "local": local,
                "block": block,
            },
            batch_size=1,
            concurrency=pool,
            num_gpus=1 if gpus else 0,
            num_cpus=0 if gpus else 1,
            max_restarts=3,
            max_task_retries=3,
        )
        left = sum(min(block, len(paths) - b * block) for b in todo)
        with tqdm(total=left, desc=f"map descriptors (Ray, {pool} workers)", unit="img") as bar:
            for row in ds.iter_rows():
                b = int(row["block"])
                tgt = work / f"block_{b:06d}.npz"
                atomic_write(tgt, functools.partial(_save_block, row=row))
                bar.update(len(row["desc"]))
    descs, grids = [], []
    for b in range(n_blocks):
        with np.load(work / f"block_{b:06d}.npz") as z:
            descs.append(z["desc"])
            grids.append(z["local"])
    return np.concatenate(descs), (np.concatenate(grids) if local else None)


def _save_block(tmp: Path, row: dict[str, Any]) -> None:
    with open(tmp, "wb") as f:
        np.savez(f, desc=np.asarray(row["desc"]), local=np.asarray(row["local"]))
