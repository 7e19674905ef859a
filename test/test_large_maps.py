"""Large maps: compact PQ grids, memory-mapped loading, the stored IVF-PQ index, merge/--like/--append, Ray build."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import NET_RTOL, VPR, assert_one_line_error, assert_vectors_close
from conftest import vpr as run_vpr


def vpr(*args, **kw):
    """``vpr ARGS``, success or not: each caller checks the outcome it expects."""
    return run_vpr(*args, ok=False, **kw)


def hits(vmap_path: Path, queries: Path, reranker: str = "ransac", k: int = 1) -> list[int]:
    """Top-1 map image per query (the street's queries are ordered like its database)."""
    from vpr_core.io.images import load_image
    from vpr_core.localize.localizer import Localizer

    loc = Localizer.from_file(vmap_path, device="cpu", reranker=reranker, temporal="none")
    return [loc.localize(load_image(p)).matches[0].index for p in sorted(queries.glob("*.jpg"))]


def clustered(n: int, d: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(1, n // 20), d))
    x = centres[rng.integers(0, len(centres), n)] + 0.6 * rng.standard_normal((n, d)) / np.sqrt(d)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_pq_grids_are_16x_smaller_memory_mapped_and_localize_alike(street, street_map, tmp_path):
    from vpr_core.io.geoset import load_geoset
    from vpr_core.map.build import build_and_save
    from vpr_core.map.codec import LocalGrids
    from vpr_core.map.format import load_map

    fp16 = tmp_path / "fp16.vprmap"
    build_and_save(load_geoset(street / "database"), fp16, device="cpu", grid_codec="fp16")
    pq, full = load_map(street_map), load_map(fp16)
    assert isinstance(pq.descriptors, np.memmap) and isinstance(pq.grids.data, np.memmap)  # paged, not read
    assert pq.grids.kind == "pq" and pq.grids.data.dtype == np.uint8 and pq.grids.shape == full.grids.shape
    assert pq.grids.data[0].nbytes * 16 == full.grids.data[0].nbytes
    decoded = LocalGrids(pq.grids).gather(np.arange(len(pq)), "cpu")
    cos = (decoded * torch.from_numpy(np.asarray(full.grids.data, np.float32))).sum(1)
    assert cos.mean() > 0.95, float(cos.mean())
    assert_vectors_close(pq.descriptors, full.descriptors, NET_RTOL)
    a, b = hits(street_map, street / "queries"), hits(fp16, street / "queries")
    assert sum(x != y for x, y in zip(a, b)) <= 1, (a, b)

    r = vpr("map", "info", street_map)
    assert r.returncode == 0, r.stderr
    size = json.loads(r.stdout)["bytes"]
    parts = size["per_image_by_part"]
    assert size["file"] == street_map.stat().st_size
    assert abs(sum(parts.values()) - size["per_image"]) < 1
    assert parts["descriptors"] == 4096 and parts["grid"] < 9600 + (65536 + 64 * 64 * 4) / len(pq) + 1


def test_stored_index_finds_the_exact_top1_across_shards_and_appends_without_retraining():
    import faiss

    from vpr_core.map.search import StoredIndex, append_index, stored_index

    x = clustered(6000, 128)
    conf = {"kind": "ivfpq", "proj_dim": 64, "pq_m": 16, "shard_size": 2500, "nprobe": 16, "refine": 50}
    index = stored_index(x[:5000], conf)
    assert len(index["shards"]) == 2 and index["kind"] == "ivfpq"
    rng = np.random.default_rng(1)
    src = rng.choice(6000, 200, replace=False)
    q = x[src] + 0.3 * rng.standard_normal((200, 128)).astype(np.float32) / np.sqrt(128)
    q /= np.linalg.norm(q, axis=1, keepdims=True)

    def centroids(blob: np.ndarray) -> np.ndarray:
        index = faiss.deserialize_index(blob)  # kept alive while its quantizer is read
        quant = faiss.extract_index_ivf(index).quantizer
        return quant.reconstruct_n(0, quant.ntotal)

    grown = append_index(index, x, 5000)  # both shards are full: a third one opens
    assert len(grown["shards"]) == 3
    sizes = [faiss.deserialize_index(b).ntotal for b in grown["shards"]]
    assert sizes == [2500, 2500, 1000]
    for b in grown["shards"]:  # the same trained coarse quantizer everywhere: nothing was retrained
        assert np.array_equal(centroids(b), centroids(index["shards"][0]))

    s, ids = StoredIndex(grown, x.astype(np.float16)).search(q, 5)
    exact = np.argmax(q @ x.T, axis=1)
    assert (ids[:, 0] == exact).mean() >= 0.95
    assert (ids[:, 0] >= 5000).sum() > 0  # appended rows are found
    assert np.all(np.diff(s, axis=1) <= 0)  # exact scores, best first
    with pytest.raises(Exception, match="holds 6000 images but the map 5000"):
        StoredIndex(grown, x[:5000])


def test_localizer_uses_the_stored_index(street, tmp_path):
    from vpr_core.io.geoset import load_geoset
    from vpr_core.localize.localizer import Localizer
    from vpr_core.map.build import build_and_save
    from vpr_core.map.search import StoredIndex

    out = tmp_path / "ivf.vprmap"
    build_and_save(load_geoset(street / "database"), out, device="cpu", index="ivfpq")
    loc = Localizer.from_file(out, device="cpu", reranker="none", temporal="none")
    assert isinstance(loc.index, StoredIndex)
    exact = Localizer.from_file(out, device="cpu", reranker="none", temporal="none", index="flat")
    assert not isinstance(exact.index, StoredIndex)
    q = np.asarray(loc.map.descriptors[:5], np.float32)
    assert np.array_equal(loc.index.search(q, 3)[1], exact.index.search(q, 3)[1])

    from vpr_core.errors import MapError
    from vpr_core.map.format import load_map, save_map

    m = load_map(out)
    m.index = {**m.index, "shards": [np.asarray(m.index["shards"][0])[: len(m.index["shards"][0]) // 2]]}
    save_map(m, tmp_path / "cut.vprmap")  # a shard cut in half: refused in one line, not a faiss traceback
    with pytest.raises(MapError, match="stored index is corrupt"):
        Localizer.from_file(tmp_path / "cut.vprmap", device="cpu", reranker="none", temporal="none")


def test_merge_like_and_append(street, tmp_path):
    from vpr_core.map.format import load_map

    db = sorted((street / "database").glob("*.jpg"))
    a_dir, b_dir = tmp_path / "run1", tmp_path / "run2"
    for d, part in ((a_dir, db[:14]), (b_dir, db[14:])):
        d.mkdir()
        for p in part:
            shutil.copy(p, d / p.name)
    a, b, c = tmp_path / "a.vprmap", tmp_path / "b.vprmap", tmp_path / "c.vprmap"
    r = vpr("map", "build", "--images", a_dir, "--out", a, "--index", "ivfpq", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    r = vpr("map", "build", "--images", b_dir, "--out", b, "--like", a, "--device", "cpu")
    assert r.returncode == 0, r.stderr
    ma, mb = load_map(a), load_map(b)
    assert np.array_equal(ma.model_state["vlad.centers"], mb.model_state["vlad.centers"])
    assert ma.grids.codec.same(mb.grids.codec) and mb.index is not None  # A's codec and index training reused
    r = vpr("map", "merge", a, b, "--out", c)
    assert r.returncode == 0, r.stderr
    mc = load_map(c)
    assert len(mc) == len(db) and mc.names == ma.names + mb.names and mc.origin == ma.origin
    assert len(mc.index["shards"]) == 2 and np.array_equal(mc.grids.data[14:], mb.grids.data)

    # appending run 2 to run 1 gives the merged map, without describing run 1 again
    grown = tmp_path / "grown.vprmap"
    r = vpr("map", "build", "--images", b_dir, "--append", a, "--out", grown, "--device", "cpu")
    assert r.returncode == 0 and "appended 10 images" in r.stdout, r.stderr
    mg = load_map(grown)
    assert mg.names == mc.names and np.array_equal(mg.grids.data, mc.grids.data)
    assert_vectors_close(mg.descriptors, mc.descriptors, NET_RTOL)
    assert hits(grown, street / "queries") == hits(c, street / "queries")

    # a map with its own vocabulary is refused, in one line that says how to fix it
    own = tmp_path / "own.vprmap"
    assert vpr("map", "build", "--images", b_dir, "--out", own, "--device", "cpu").returncode == 0
    r = vpr("map", "merge", a, own, "--out", tmp_path / "bad.vprmap")
    assert r.returncode != 0 and "--like" in r.stderr and "another vocabulary" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "bad.vprmap").exists()


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray not installed (pip install .[ray])")
def test_ray_build_on_two_workers_matches_and_resumes_after_a_kill(street, street_map, tmp_path):
    from vpr_core.map.format import load_map

    out = tmp_path / "ray.vprmap"
    parts = Path(f"{out}.parts")
    cmd = [*VPR, "map", "build", "--images", street / "database", "--out", out, "--device", "cpu"]
    cmd += ["--ray", "local", "--ray-block", "1", "--ray-workers", "2"]
    env = dict(os.environ)
    # first run: killed (driver, Ray and its workers) once a few blocks are on disk
    proc = subprocess.Popen(list(map(str, cmd)), env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=2)
    deadline = time.time() + 300
    while time.time() < deadline and len(list(parts.glob("block_*.npz"))) < 3:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    ray_stop = [str(Path(sys.executable).parent / "ray"), "stop", "--force"]  # the killed run's Ray processes
    subprocess.run(ray_stop, capture_output=True, env=env)
    done = len(list(parts.glob("block_*.npz")))
    assert 3 <= done < 24 and not out.exists()
    r = subprocess.run(list(map(str, cmd)), capture_output=True, text=True, timeout=600, env=env)
    subprocess.run(ray_stop, capture_output=True, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"resuming the Ray build: {done} of 24 blocks" in r.stderr and "2 workers" in r.stderr
    assert not parts.exists()  # blocks removed once the map is written
    ray_map, single = load_map(out), load_map(street_map)
    assert ray_map.names == single.names and ray_map.fingerprint == single.fingerprint
    assert_vectors_close(ray_map.descriptors, single.descriptors, NET_RTOL)
    assert (np.asarray(ray_map.grids.data) == np.asarray(single.grids.data)).mean() > 0.99
    assert hits(out, street / "queries") == hits(street_map, street / "queries")


def test_a_ray_address_that_does_not_answer_fails_at_once_in_one_line(street, tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "m.vprmap"
    r = vpr("map", "build", "--images", street / "database", "--out", out, "--ray", f"127.0.0.1:{port}")
    assert_one_line_error(r, "no Ray head answers there", "ray start --head")
    assert "vocabulary" not in r.stderr and not out.exists()


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray not installed (pip install .[ray])")
def test_many_bags_build_one_map_on_ray(street, street_map, tmp_path):
    from test_bag import run_bag

    from vpr_core.map.format import load_map

    db = sorted((street / "database").glob("*.jpg"))
    bags = []
    for i, part in enumerate((db[:10], db[10:])):  # two runs of one route, recorded as two bags
        d = tmp_path / f"run{i}"
        d.mkdir()
        for p in part:
            shutil.copy(p, d / p.name)
        bags.append(run_bag(d, tmp_path / f"bag{i}", "mcap", compressed=True))
    out = tmp_path / "fleet.vprmap"
    r = vpr(
        "map", "build", "--bag", *bags, "--image-topic", "/camera/image", "--fix-topic", "/gps/fix",
        "--out", out, "--ray", "local", "--ray-workers", "2", "--ray-block", "4", "--device", "cpu",
    )  # fmt: skip
    subprocess.run([str(Path(sys.executable).parent / "ray"), "stop", "--force"], capture_output=True)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "kept 24, skipped 0" in r.stdout
    fleet, single = load_map(out), load_map(street_map)
    assert fleet.info["bag"]["path"] == [str(b) for b in bags] and len(fleet) == 24
    assert np.abs(fleet.xy - single.xy).max() < 0.02  # the second bag's fixes land in the same ENU frame
    assert_vectors_close(fleet.descriptors, single.descriptors, NET_RTOL)
    assert hits(out, street / "queries") == hits(street_map, street / "queries")
