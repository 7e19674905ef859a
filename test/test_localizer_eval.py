"""Localizer estimates and the evaluation protocol."""

import numpy as np
import pytest

from vpr_core.errors import MapError, VprError
from vpr_core.eval.recall import evaluate, recalls
from vpr_core.io.geoset import load_geoset
from vpr_core.io.images import load_image
from vpr_core.localize.estimate import estimate_position, margin_confidence, spatial_margin
from vpr_core.localize.localizer import Localizer


def test_recall_protocol_by_hand():
    true = np.array([[0.0, 0.0], [100.0, 0.0]])
    ranked = [np.array([[50.0, 0], [3.0, 0], [1.0, 0]]), np.array([[0.0, 0], [200.0, 0]])]
    r = recalls(ranked, true, threshold=5.0, ns=(1, 2, 3))
    assert r == {"recall@1": 0.0, "recall@2": 50.0, "recall@3": 50.0}


def test_confidence_uses_rivals_elsewhere():
    xy = np.array([[0.0, 0], [2.0, 0], [100.0, 0]])
    # neighbours of the same place score alike: margin is against the far rival only
    assert spatial_margin(np.array([0.9, 0.89, 0.5]), xy, 10.0) == pytest.approx(0.4)
    assert margin_confidence(0.4, 0.05) > 0.99
    doubtful = estimate_position(np.arange(3), np.array([0.9, 0.6, 0.89]), xy, {})
    sure = estimate_position(np.arange(3), np.array([0.9, 0.89, 0.5]), xy, {})
    assert doubtful.confidence < 0.3 < 0.9 < sure.confidence
    assert np.trace(doubtful.cov_xy) > 10 * np.trace(sure.cov_xy)


def test_localize_street(street, street_map):
    loc = Localizer.from_file(street_map, device="cpu", top_k=5)
    q = load_geoset(street / "queries", frame=loc.map.frame)
    est = loc.localize(load_image(q.paths[3]))
    assert len(est.matches) == 5 and 0.0 <= est.confidence <= 1.0
    assert np.all(np.linalg.eigvalsh(est.covariance) > 0)
    assert set(est.timings) == {"preprocess", "global", "search", "rerank", "estimate", "total"}
    assert np.hypot(est.east - q.east[3], est.north - q.north[3]) < 5.0
    assert est.enu[0] == pytest.approx(est.east - loc.map.east[0])
    # gray, RGBA and a 12-megapixel frame are accepted (the huge one downscaled)
    img = load_image(q.paths[3])
    gray = img.mean(axis=2).round().astype(np.uint8)
    for variant in (gray, np.dstack([img, np.full(img.shape[:2], 255, np.uint8)])):
        assert loc.localize(variant).matches[0].index == est.matches[0].index
    big = np.ascontiguousarray(np.kron(img, np.ones((13, 13, 1), np.uint8)))  # 4160 x 3120
    assert loc.localize(big).matches[0].index == est.matches[0].index


def test_evaluate_street(street, street_map):
    loc = Localizer.from_file(street_map, device="cpu")
    q = load_geoset(street / "queries", frame=loc.map.frame)
    report, est = evaluate(loc, q, threshold=5.0, progress=False)
    assert report["num_queries"] == 10 and len(est) == 10
    assert report["recall@1"] >= 70.0 and report["recall@5"] >= 90.0
    assert report["recall@1"] <= report["recall@5"] <= report["recall@10"] <= report["recall@20"]
    assert report["latency_ms"]["global"]["p50"] > 0


def test_wrong_model_or_top_k(street_map):
    with pytest.raises(MapError, match="built with global model 'xfeat-vlad' but 'cosplace'"):
        Localizer.from_file(street_map, device="cpu", global_model="cosplace")
    with pytest.raises(VprError, match="top_k"):
        Localizer.from_file(street_map, device="cpu", top_k=0)


def test_pca_whitening_map(street, tmp_path):
    from vpr_core.map.build import build_and_save
    from vpr_core.map.format import load_map

    db = load_geoset(street / "database")
    m = build_and_save(db, tmp_path / "pca.vprmap", model_options={"pca_dim": 16}, device="cpu")
    assert m.descriptors.shape == (24, 16) and set(m.model_state) == {"vlad.centers", "pca.mean", "pca.proj"}
    loc = Localizer(load_map(tmp_path / "pca.vprmap"), device="cpu")
    assert loc.localize(load_image(db.paths[7])).matches[0].index == 7
    with pytest.raises(VprError, match="lower pca_dim"):
        build_and_save(db, tmp_path / "too_big.vprmap", model_options={"pca_dim": 64}, device="cpu")
    assert not (tmp_path / "too_big.vprmap").exists()


def test_reranker_auto_fits_the_rate_by_measured_cost(street_map):
    """auto: the most accurate re-ranker and the most candidates that fit the frame period, measured here."""
    from vpr_core.localize.localizer import Localizer

    slow = Localizer.from_file(street_map, device="cpu", reranker="auto", target_rate=0.5)  # 2 s a frame: all of dhe
    assert slow.reranker.name == "dhe" and slow.reranker.top_k == 32 and slow.auto.per_candidate_ms["dhe"] > 0
    fast = Localizer.from_file(street_map, device="cpu", reranker="auto", target_rate=1000.0)  # 0.75 ms: nothing fits
    assert fast.reranker.name == "none" and "auto -> none" in fast.auto.summary()
    mid = Localizer.from_file(street_map, device="cpu", reranker="auto", target_rate=10.0)
    per, budget = mid.auto.per_candidate_ms.get("dhe", 0.0), mid.auto.budget_ms - mid.auto.base_ms
    if mid.reranker.name == "dhe":  # whatever this machine allows, K never exceeds the budget
        assert 4 <= mid.reranker.top_k and mid.reranker.top_k * per <= budget + 1e-6


def test_auto_feedback_follows_the_measured_frames():
    """Real frames cost more than the start-up timing (decoding, cold caches): K follows what they measure."""
    from vpr_core.localize.budget import MIN_K, AutoChoice

    a = AutoChoice("dhe", 8, budget_ms=75.0, base_ms=10.0, max_k=32)
    for _ in range(40):  # frames at 120 ms: one candidate fewer every 10 frames, never below MIN_K
        a.observe(120.0)
    assert a.top_k == 4 == MIN_K
    for _ in range(30):
        a.observe(20.0)  # well under budget: one more every 10 frames
    assert a.top_k == 7
    assert AutoChoice("none", 0, 75.0, 10.0).observe(500.0) == 0


def test_outputs_are_checked_before_publishing(street, street_map):
    """The last gate before a navigation filter: an estimate with Inf/NaN numbers, a covariance that is not
    positive definite or a confidence outside [0, 1] goes out as NO_FIX with finite numbers, confidence 0."""
    import dataclasses
    import math

    from vpr_core.localize.outputs import (
        STATUS_FIX,
        STATUS_NO_FIX,
        fix_fields,
        output_fault,
        pose_fields,
    )

    loc = Localizer.from_file(street_map, device="cpu")
    est = loc.localize(load_image(load_geoset(street / "queries").paths[0]))
    est.confidence = 0.9
    assert output_fault(est) is None and fix_fields(est, 0.5).status == STATUS_FIX
    bad_cov = est.covariance.copy()
    bad_cov[0, 0] = -1.0
    inf_alt = dataclasses.replace(est, alt=math.inf, enu=(est.enu[0], est.enu[1], math.inf))
    for bad in (
        inf_alt,  # an Inf altitude: the fix stands, its altitude unknown
        dataclasses.replace(est, covariance=bad_cov),
        dataclasses.replace(est, covariance=est.covariance * math.nan),
        dataclasses.replace(est, confidence=math.nan),
        dataclasses.replace(est, lat=math.inf),
    ):
        ff, pf = fix_fields(bad, 0.5), pose_fields(bad)
        assert all(math.isfinite(v) for v in [ff.latitude, ff.longitude, ff.altitude, *ff.covariance])
        assert all(math.isfinite(v) for v in [*pf.position, *pf.covariance])
        assert math.isfinite(ff.confidence)
        if bad is inf_alt:
            assert ff.status == STATUS_FIX and ff.altitude == 0.0 and pf.position[2] == 0.0
        else:
            assert ff.status == STATUS_NO_FIX and ff.fault == output_fault(bad) and ff.confidence == 0.0
