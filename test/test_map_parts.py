"""The map's typed parts, the build config and the re-rankers' declared capabilities.

``test/data/street_v2.vprmap`` was written by the last release of format 2 (see ``test/data/README.md``); today's
reader must load it into the same parts and localize the test street's queries as that release did.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import THREADS, assert_one_line_error, vpr

DATA = Path(__file__).parent / "data"
V2 = DATA / "street_v2.vprmap"


def test_a_format_2_map_loads_into_typed_parts_and_localizes_as_its_release_did(street, tmp_path):
    import torch

    from vpr_core.io.geoset import load_geoset
    from vpr_core.io.images import load_image
    from vpr_core.localize.localizer import Localizer
    from vpr_core.map.format import FORMAT_VERSION, load_map, save_map

    torch.set_num_threads(THREADS)
    m = load_map(V2)
    assert m.parts() == ["grids", "sparse", "calibration.ransac"] and m.grids.kind == "pq"
    assert m.grids.shape == (64, 30, 40) and m.grids.data.shape == (24, 30, 40, 8)
    assert m.sparse.conf == {"top_k": 32, "max_side": 160} and m.sparse.keypoints.shape == (24, 32, 2)
    cal = m.calibrations["ransac"]
    assert cal.coef.tolist() == [-2.0, 0.5, 0.1, 0.05] and cal.covariance_scale == 1.5

    v3 = tmp_path / "v3.vprmap"
    save_map(m, v3)  # rewritten in today's layout: the same parts, bit for bit
    header = json.loads(json.loads(v3.read_bytes()[8 : 8 + int.from_bytes(v3.read_bytes()[:8], "little")])[
        "__metadata__"]["vpr_map"])  # fmt: skip
    assert header["version"] == FORMAT_VERSION == 3
    again = load_map(v3)
    assert np.array_equal(again.grids.data, m.grids.data) and again.grids.codec.same(m.grids.codec)
    assert np.array_equal(again.sparse.descriptors, m.sparse.descriptors)
    assert (
        np.array_equal(again.calibrations["ransac"].coef, cal.coef)
        and again.calibrations["ransac"].covariance_scale == 1.5
    )

    want = json.loads((DATA / "street_v2.json").read_text())
    q = load_geoset(street / "queries", frame=m.frame)
    for rr in ("none", "ransac", "lighterglue"):
        loc = Localizer(m, device="cpu", reranker=rr)
        for path, w in zip(q.paths, want[rr]):
            e = loc.localize(load_image(path))
            assert e.matches[0].index == w["top"], (rr, path.name)
            # the same arithmetic from the same arrays: bounded by network rounding across CPUs, not bit-equal
            assert abs(e.confidence - w["confidence"]) < 1e-3, (rr, e.confidence, w["confidence"])
            assert np.allclose(e.covariance, w["cov"], rtol=1e-3, atol=1e-6), rr
    assert Localizer(m, device="cpu", reranker="ransac").covariance_scale == 1.5


def test_a_format_2_adapted_head_is_read_as_the_map_part(tmp_path):
    """Format 2 kept an adapted DHE head as ``extra.dhe_head.*`` arrays (``vpr map adapt``): the shipped head is
    written under those names into the release's file and must come back as the map's ``DheHead``."""
    import torch
    from safetensors import safe_open
    from safetensors.numpy import save_file

    from vpr_core.localize.localizer import Localizer
    from vpr_core.map.format import checksum, load_map
    from vpr_core.rerank.dhe import SHIPPED_HEADS, WEIGHTS_DIR

    shipped = torch.load(WEIGHTS_DIR / SHIPPED_HEADS["xfeat-vlad"], weights_only=True)
    with safe_open(str(V2), "numpy") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        meta = json.loads(f.metadata()["vpr_map"])
    tensors |= {f"extra.dhe_head.{k}": v.float().numpy() for k, v in shipped.items()}
    meta["checksums"] = {k: checksum(v) for k, v in tensors.items()}
    out = tmp_path / "adapted_v2.vprmap"
    save_file(tensors, str(out), metadata={"vpr_map": json.dumps(meta)})
    m = load_map(out)
    assert m.dhe_head is not None and m.dhe_head.tokens == 108
    assert np.array_equal(m.dhe_head.state["linear.weight"], shipped["linear.weight"].float().numpy())
    assert Localizer(m, device="cpu", reranker="dhe").reranker.source == "map-adapted"


def test_every_part_round_trips_and_refuses_bad_shapes():
    from vpr_core.errors import MapError
    from vpr_core.store.parts import Calibration, DheHead, GridCodec, GridStore, Headings, SparseKeypoints

    rng = np.random.default_rng(0)
    n = 5
    fp16 = GridStore(rng.standard_normal((n, 8, 3, 4)).astype(np.float16))
    codec = GridCodec(rng.standard_normal((2, 256, 4)).astype(np.float32), np.eye(8, dtype=np.float32))
    pq = GridStore(rng.integers(0, 255, (n, 3, 4, 2), dtype=np.uint8), codec)
    for g in (fp16, pq):
        back = GridStore.from_tensors(g.to_tensors(), n)
        assert back.kind == g.kind and back.shape == (8, 3, 4) and np.array_equal(back.data, g.data)
    sparse = SparseKeypoints(
        rng.random((n, 6, 2)).astype(np.float16),
        rng.random((n, 6, 64)).astype(np.float16),
        np.full(n, 6, np.int32),
        np.full((n, 2), 64, np.int32),
        6,
        64,
    )
    back = SparseKeypoints.from_tensors(sparse.to_tensors(), n)
    assert back.conf == sparse.conf and np.array_equal(back.descriptors, sparse.descriptors)
    assert SparseKeypoints.concat([sparse, sparse]).keypoints.shape == (2 * n, 6, 2)
    assert SparseKeypoints.concat([sparse, SparseKeypoints.from_tensors(sparse.to_tensors(), n).take([0])]) is not None
    head = DheHead({"pe": np.zeros((1, 12, 4), np.float32), "w": np.ones(3, np.float32)})
    assert DheHead.from_tensors(head.to_tensors()).tokens == 12
    cal = Calibration(np.array([1.0, 2.0, 3.0, 4.0]), 2.5)
    back = Calibration.from_tensors(cal.to_tensors("dhe"))["dhe"]
    assert back.coef.tolist() == cal.coef.tolist() and back.covariance_scale == 2.5
    h = Headings.from_compass(np.array([0.0, 90.0, np.nan, 180.0, 270.0]))
    assert np.allclose(h.yaw[[0, 1, 3, 4]], [math.pi / 2, 0, -math.pi / 2, -math.pi]) and np.isnan(h.yaw[2])
    assert Headings.from_compass(np.full(3, np.nan)) is None
    assert Headings.from_tensors(h.to_tensors(), n, h.conf).source == "geotags"

    bad = [
        (lambda: GridStore.from_tensors(fp16.to_tensors(), n + 1), "grid.features have shape"),
        (lambda: GridStore.from_tensors({**pq.to_tensors(), "grid.rotation": np.eye(4)}, n), "grid.rotation"),
        (lambda: GridStore.from_tensors({"grid.codes": pq.data}, n), "disagree in shape"),
        (lambda: SparseKeypoints.from_tensors({"sparse.keypoints": sparse.keypoints}, n), "lack sparse.descriptors"),
        (lambda: DheHead.from_tensors({"dhe_head.w": np.ones(2)}), "incomplete"),
        (lambda: Calibration.from_tensors({"calibration.x.covariance_scale": np.array([0.0])}), "positive scale"),
        (lambda: Headings.from_tensors({"heading.yaw": np.full(n, np.inf)}, n, None), "Inf"),
        (lambda: Headings(np.zeros(n), "guess"), "heading source 'guess' unknown"),
    ]
    for fn, needle in bad:
        with pytest.raises(MapError, match=needle):
            fn()


def test_build_config_generates_the_flags_and_presets_refine(street, tmp_path):
    """Every MapBuildConfig knob is a ``vpr map build`` flag; ``--preset`` sets several, an explicit flag wins, and
    a bad value is one line naming the flag."""
    from vpr_core.config import knobs
    from vpr_core.map.config import MAP_PRESETS, MapBuildConfig
    from vpr_core.map.format import load_map

    help_text = vpr("map", "build", "--help").stdout
    for k in knobs(MapBuildConfig, "cli"):
        assert k.on("cli").name in help_text, k.field
    assert "--no-local" not in help_text and "--preset" in help_text
    assert MapBuildConfig.preset("learned").local == "both" and MapBuildConfig.preset("learned").pq_conf()["m"] == 32
    assert MapBuildConfig.preset("learned", pq_m=8).pq_conf()["m"] == 8
    assert set(MAP_PRESETS) >= {"default", "learned", "global-only"}

    out = tmp_path / "g.vprmap"
    vpr("map", "build", "--images", street / "database", "--out", out, "--preset", "global-only", "--device", "cpu")
    m = load_map(out)
    assert m.grids is None and m.sparse is None and m.info["local_features"] is None
    out2 = tmp_path / "g2.vprmap"
    vpr("map", "build", "--images", street / "database", "--out", out2, "--preset", "global-only", "--local", "grid",
        "--grid-codec", "fp16", "--device", "cpu")  # fmt: skip
    assert load_map(out2).grids.kind == "fp16"
    r = vpr("map", "build", "--images", street / "database", "--out", out2, "--sparse-keypoints", "0", ok=False)
    assert_one_line_error(r, "--sparse-keypoints")
    r = vpr("map", "build", "--images", street / "database", "--out", out2, "--preset", "huge", ok=False)
    assert_one_line_error(r, "--preset")


def test_capabilities_are_declared_on_the_classes():
    """auto's order, the full-K rule, weights and map needs come from the classes; no list of names elsewhere."""
    from vpr_core.errors import VprError
    from vpr_core.localize.budget import AUTO_WEIGHTS_KIND, auto_options, candidates
    from vpr_core.localize.config import LocalizerConfig
    from vpr_core.rerank import RERANKERS

    assert [c.name for c in candidates()] == ["dhe+lighterglue", "lighterglue", "dhe", "ransac"]
    assert [c.name for c in candidates() if c.auto_full_k] == ["lighterglue"]
    weighted = sorted(n for n in RERANKERS.names() if RERANKERS.get(n).takes_weights())
    assert weighted == sorted(["dhe", "dhe+lighterglue", "geowarp", "lighterglue", "lightglue", "loftr"])
    for name in weighted:  # accepted wherever the class loads weights (lighterglue's were refused before)
        LocalizerConfig(reranker=name, reranker_weights="w.pt").validate()
    with pytest.raises(VprError, match="reranker 'ransac' takes no weights; use reranker"):
        LocalizerConfig(reranker="ransac", reranker_weights="w.pt").validate()
    given = {"top_k": 7, "weights": "head.torch", "threshold_px": 3.0}
    dhe, lg = RERANKERS.get("dhe"), RERANKERS.get("lighterglue")
    assert dhe.weights_kind == AUTO_WEIGHTS_KIND and auto_options(dhe, given)["weights"] == "head.torch"
    assert "weights" not in auto_options(lg, given) and auto_options(lg, given)["threshold_px"] == 3.0
    names = ("none", "ransac", "lighterglue", "dhe+lighterglue", "loftr")
    assert {n: sorted(RERANKERS.get(n).needs) for n in names} == {
        "none": [], "ransac": ["grid"], "lighterglue": ["sparse"], "dhe+lighterglue": ["grid", "sparse"],
        "loftr": ["images"],
    }  # fmt: skip


def test_headings_from_a_csv_are_stored(street, tmp_path):
    from vpr_core.io.geoset import load_geoset
    from vpr_core.map.format import load_map

    rows = load_geoset(street / "database").images[:6]
    csv = tmp_path / "db.csv"
    csv.write_text("image,lat,lon,alt,heading\n" + "".join(f"{g.path},{g.lat},{g.lon},500,{i * 30}\n"
                                                         for i, g in enumerate(rows)))  # fmt: skip
    out = tmp_path / "h.vprmap"
    vpr("map", "build", "--csv", csv, "--out", out, "--preset", "global-only", "--device", "cpu")
    m = load_map(out)
    assert m.headings.source == "geotags" and np.allclose(np.degrees(m.headings.yaw), [90 - 30 * i for i in range(6)])
    assert json.loads(vpr("map", "info", out).stdout)["headings"] == {"source": "geotags"}
