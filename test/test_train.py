"""DHE training: the REI loss goes down, resume is exact, a kill during save never corrupts the checkpoint."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import numpy as np
import pytest
import torch
from conftest import VPR, assert_one_line_error, reduction_atol
from conftest import vpr as run_vpr

from vpr_core.rerank.dhe import DHEHead, load_dhe_head
from vpr_core.train.dhe import DEFAULTS, PairSource, init_identity, train_dhe
from vpr_core.train.pairs import geotagged_pairs, homographic_pair, random_trapezoid
from vpr_core.train.rei import rei_loss

SMALL = {"batch_size": 3, "save_every": 5, "log_every": 1, "head_grid": [12, 9]}


def test_trapezoids_and_pairs():
    rng = np.random.default_rng(0)
    t0 = random_trapezoid(rng, 0.0)
    assert np.array_equal(t0, [[-1, -1], [1, -1], [1, 1], [-1, 1]])
    t = random_trapezoid(rng, 0.6)
    assert t[0, 0] == t[3, 0] and t[1, 0] == t[2, 0]  # vertical sides
    assert np.all(np.abs(t) <= 1) and np.all(np.abs(t) >= 0.4)
    img = np.random.default_rng(1).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    a, b = homographic_pair(img, rng, 0.6, (80, 60))
    assert a.shape == b.shape == (60, 80, 3)
    xy = np.array([[0.0, 0], [10, 0], [100, 0]])
    desc = np.array([[1.0, 0], [0.9, 0.1], [1.0, 0]])
    assert geotagged_pairs(xy, desc, 25.0, 0.5).tolist() == [[0, 1]]


def held_out_loss(head, street, seed=123):
    from vpr_core.models import build_global_model
    from vpr_core.runtime.extractor import Extractor

    src = PairSource(street / "database", {**DEFAULTS, **SMALL, "batch_size": 6, "seed": seed})
    ex = Extractor(build_global_model("xfeat-gem", {"input_size": [320, 240], "keep_aspect": False}), "cpu")
    qs, ps = src.batch(0)
    with torch.no_grad():
        _, fq = ex.describe_local(ex.to_tensor(qs))
        _, fp = ex.describe_local(ex.to_tensor(ps))
        head.eval()
        loss, _ = rei_loss(head, fq, fp, (320, 240), (12, 9), (20, 15), torch.Generator().manual_seed(0))
    return float(loss)


def test_training_lowers_rei_loss(street, tmp_path):
    head = DHEHead(108)
    init_identity(head, (320, 240))
    before = held_out_loss(head, street)
    out = train_dhe(
        street / "database",
        tmp_path / "h.torch",
        {**SMALL, "iterations": 40, "batch_size": 4},
        log=tmp_path / "log.jsonl",
    )
    after = held_out_loss(load_dhe_head(str(out), 108), street)
    assert after < 0.9 * before, (before, after)
    rows = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert rows[-1]["iteration"] == 40 and all("loss" in r for r in rows)
    assert (tmp_path / "h.loss.png").read_bytes()[:4] == b"\x89PNG"
    meta = json.loads((tmp_path / "h.torch.json").read_text())
    assert (
        meta["iteration"] == 40
        and meta["config"]["lr"] == 1e-4
        and meta["data"]["num_images"] == 24
        and meta["code_version"]
    )


def test_resume_is_exact(street, tmp_path):
    conf = {**SMALL, "iterations": 10}
    full = train_dhe(street / "database", tmp_path / "full.torch", conf)
    part = tmp_path / "part.torch"
    train_dhe(street / "database", part, {**conf, "iterations": 5})
    train_dhe(street / "database", part, conf, resume=True)
    a = torch.load(full, weights_only=True)
    b = torch.load(part, weights_only=True)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k  # bit for bit: same machine, same thread count (docs/reliability.md)
    assert json.loads((tmp_path / "part.torch.json").read_text())["iteration"] == 10
    from vpr_core.errors import VprError

    with pytest.raises(VprError, match="batch_size=4 but the checkpoint was trained with 3"):
        train_dhe(street / "database", part, {**conf, "batch_size": 4, "iterations": 12}, resume=True)


def test_kill_during_save_leaves_checkpoint_loadable(street, tmp_path):
    ckpt = tmp_path / "k.torch"
    cmd = [
        *VPR,
        "train",
        "dhe",
        "--images",
        str(street / "database"),
        "--out",
        str(ckpt),
        "--iterations",
        "100000",
        "--batch-size",
        "2",
        "--save-every",
        "1",
        "--device",
        "cpu",
    ]
    for n, delay in enumerate((0.13, 0.41, 0.77, 1.05)):
        p = subprocess.Popen(cmd + (["--resume"] if n else []), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        t = time.time()
        while not (ckpt.with_name("k.torch.json").exists() and time.time() - t > 1.0):
            assert p.poll() is None, "training died on its own"
            time.sleep(0.05)
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)  # no chance to clean up: the worst case
        p.wait()
        head = load_dhe_head(str(ckpt), 108)  # strict: a torn file would fail here
        meta = json.loads(ckpt.with_name("k.torch.json").read_text())
        optim = torch.load(ckpt.with_name("k.torch.optim"), weights_only=True)
        assert head.tokens == 108 and meta["iteration"] >= 1 and optim["iteration"] >= meta["iteration"] - 1


def test_trained_head_serves_the_dhe_reranker(street, street_map, tmp_path):
    from vpr_core.errors import VprError
    from vpr_core.eval.recall import evaluate
    from vpr_core.io.geoset import load_geoset
    from vpr_core.localize.localizer import Localizer

    out = train_dhe(street / "database", tmp_path / "h.torch", {**SMALL, "iterations": 2})
    loc = Localizer.from_file(street_map, device="cpu", reranker="dhe", reranker_weights=str(out))
    report, _ = evaluate(loc, load_geoset(street / "queries", frame=loc.map.frame), 5.0, progress=False)
    assert report["reranker_trained"] and report["num_queries"] == 10
    with pytest.raises(VprError, match="for a 108-cell grid but this map gives 80 cells"):
        Localizer.from_file(
            street_map, device="cpu", reranker="dhe", reranker_weights=str(out), reranker_options={"head_grid": [10, 8]}
        ).localize(np.zeros((240, 320, 3), np.uint8))


def test_geowarp_overlap_targets_are_exact():
    """The regression targets of a self-supervised pair are where the overlap's corners land in each view."""
    from vpr_core.train.pairs import homographic_pair_with_targets, random_trapezoid, to_warped, trapezoid_intersection

    unit = np.array([[-1.0, -1], [1, -1], [1, 1], [-1, 1]])
    assert np.allclose(trapezoid_intersection(unit, unit), unit) and np.allclose(to_warped(unit, unit), unit)
    t1 = np.array([[-1.0, -0.8], [0.5, -1.0], [0.5, 1.0], [-1.0, 0.6]])
    t2 = np.array([[-0.5, -1.0], [1.0, -0.9], [1.0, 0.9], [-0.5, 1.0]])
    inter = trapezoid_intersection(t1, t2)
    # left side at x=-0.5 (t2's), right side at x=0.5 (t1's); top/bottom = the tighter edge
    assert np.allclose(inter[:, 0], [-0.5, 0.5, 0.5, -0.5])
    assert inter[0, 1] == pytest.approx(max(-0.8 + (-0.2) * (0.5 / 1.5), -1.0)) and inter[3, 1] == pytest.approx(
        min(0.6 + 0.4 * (0.5 / 1.5), 1.0)
    )
    # in t1's view, t1's own right side maps to the frame's right edge
    w1 = to_warped(inter, t1)
    assert np.allclose(w1[[1, 2], 0], 1.0)
    # image check: a white dot drawn at the overlap's corner appears at the predicted target pixel of both views
    img = np.zeros((240, 320, 3), np.uint8)
    rng = np.random.default_rng(5)
    a, b, ta, tb = homographic_pair_with_targets(img, rng, 0.6, (320, 240))
    assert ta.shape == tb.shape == (4, 2) and np.all(np.abs(ta) <= 1 + 1e-6) and np.all(np.abs(tb) <= 1 + 1e-6)
    rng = np.random.default_rng(9)
    q1, q2 = random_trapezoid(rng, 0.6), random_trapezoid(rng, 0.6)
    inter = trapezoid_intersection(q1, q2)
    corner = (
        0.7 * inter[2] + 0.3 * inter[0]
    )  # inside the overlap, near its bottom-right corner (a dot on the edge would be clipped)
    src = np.zeros((240, 320), np.float32)
    px = ((corner + 1) / 2 * [320, 240]).astype(int)
    src[px[1] - 3 : px[1] + 4, px[0] - 3 : px[0] + 4] = 255
    from vpr_core.train.pairs import warp_to_frame

    for q in (q1, q2):
        view = warp_to_frame(np.dstack([src] * 3).astype(np.uint8), q, (320, 240))[..., 0].astype(float)
        ys, xs = np.nonzero(view > 100)
        got = np.array([xs.mean(), ys.mean()])
        want = (to_warped(corner[None], q)[0] + 1) / 2 * [320, 240]
        assert np.linalg.norm(got - want) < 2, (got, want)


def test_geowarp_training_learns_the_overlap(street, tmp_path):
    from vpr_core.rerank.geowarp import GeoWarpRerank
    from vpr_core.train.geowarp import DEFAULTS as GW
    from vpr_core.train.geowarp import GeoWarpTrainer, train_geowarp

    conf = {
        "iterations": 30,
        "batch_size": 4,
        "optim": "adam",
        "lr": 1e-3,
        "save_every": 10,
        "log_every": 1,
        "features_wise_w": 0.0,
        "consistency_w": 0.0,
    }
    out = train_geowarp(street / "database", tmp_path / "gw.torch", conf, log=tmp_path / "gw.jsonl")
    rows = [json.loads(x) for x in (tmp_path / "gw.jsonl").read_text().splitlines()]
    first, last = np.mean([r["ss"] for r in rows[:5]]), np.mean([r["ss"] for r in rows[-5:]])
    assert last < 0.8 * first, (first, last)
    rr = GeoWarpRerank({"weights": str(out)})  # the checkpoint is in the layout the re-ranker loads strictly
    assert rr.trained
    # all three losses run, with the reference's weights, on geotagged query-positive pairs
    from vpr_core.models import build_global_model
    from vpr_core.runtime.extractor import Extractor
    from vpr_core.train.dhe import PairSource

    c = {**GW, "batch_size": 2}
    src = PairSource(street / "database", c)
    assert len(src.geo_pairs) > 0
    tr = GeoWarpTrainer(
        rr.head.train(),
        Extractor(build_global_model("xfeat-gem", {"input_size": [320, 240], "keep_aspect": False}), "cpu"),
        src,
        c,
    )
    loss, stats = tr.step(0)
    assert set(stats) == {"ss", "consistency", "features_wise"} and torch.isfinite(loss)
    terms = [stats["ss"], 10 * stats["features_wise"], 0.1 * stats["consistency"]]
    assert float(loss.detach()) == pytest.approx(sum(terms), abs=reduction_atol(4, sum(map(abs, terms))))
    loss.backward()
    assert rr.head.linear.weight.grad.abs().sum() > 0


def test_geowarp_resume_is_exact(street, tmp_path):
    from vpr_core.train.geowarp import train_geowarp

    conf = {"iterations": 4, "batch_size": 2, "save_every": 2}
    full = train_geowarp(street / "database", tmp_path / "full.torch", conf)
    part = tmp_path / "part.torch"
    train_geowarp(street / "database", part, {**conf, "iterations": 2})
    train_geowarp(street / "database", part, conf, resume=True)
    a, b = torch.load(full, weights_only=True), torch.load(part, weights_only=True)
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_joint_stage_trains_backbone_and_head(street, tmp_path):
    from vpr_core.models import build_global_model

    conf = {
        **SMALL,
        "iterations": 3,
        "batch_size": 2,
        "joint": True,
        "pairs": "both",
        "mine_every": 5,
        "save_every": 5,
        "negatives": 1,
    }
    out = train_dhe(street / "database", tmp_path / "j.torch", conf, log=tmp_path / "j.jsonl")
    rows = [json.loads(x) for x in (tmp_path / "j.jsonl").read_text().splitlines()]
    for r in rows:  # fp32 sum of two terms, each rounded once more when logged
        assert r["loss"] == pytest.approx(
            r["triplet"] + 100 * r["rei"], abs=reduction_atol(4, r["triplet"] + 100 * r["rei"])
        )
    backbone = out.with_name(out.name + ".backbone")
    official = build_global_model("xfeat-gem")
    tuned = build_global_model("xfeat-gem", {"weights": str(backbone)})  # loads strictly in XFeat's own key layout
    assert tuned.fingerprint() != official.fingerprint()  # a map built on it is not confused with the official weights
    load_dhe_head(str(out), 108)
    from vpr_core.errors import VprError

    with pytest.raises(VprError, match="multiple of mine_every"):
        train_dhe(street / "database", tmp_path / "x.torch", {**conf, "mine_every": 3})


def test_map_adapt_stores_a_head_the_reranker_uses(street, street_map, tmp_path):
    """``vpr map adapt``: fine-tunes on the map's database images only, stores the head in the map, dhe picks it up."""
    import shutil

    from vpr_core.eval.recall import evaluate
    from vpr_core.io.geoset import load_geoset
    from vpr_core.localize.localizer import Localizer
    from vpr_core.map.format import load_map
    from vpr_core.rerank.dhe import SHIPPED_HEADS, WEIGHTS_DIR

    out = tmp_path / "adapted.vprmap"
    run_vpr(
        "map", "adapt", street_map, "--out", out, "--iterations", 3, "--batch-size", 2, "--log", tmp_path / "a.jsonl"
    )
    m = load_map(out)
    assert m.info["dhe_adapted"] == {"iterations": 3, "images": 24, "init": "shipped"}
    shipped = torch.load(WEIGHTS_DIR / SHIPPED_HEADS["xfeat-vlad"], weights_only=True)
    assert not np.allclose(
        m.dhe_head.state["linear.weight"], shipped["linear.weight"].float().numpy()
    )  # it was trained
    assert load_map(street_map).dhe_head is None  # --out leaves the source map alone
    loc = Localizer(m, device="cpu", reranker="dhe")
    assert loc.reranker.source == "map-adapted"
    report, _ = evaluate(loc, load_geoset(street / "queries", frame=m.frame), 5.0, progress=False)
    assert report["reranker_weights"] == "map-adapted" and report["num_queries"] == 10
    # explicit weights win over the map's head
    assert Localizer(
        m, device="cpu", reranker="dhe", reranker_weights=str(WEIGHTS_DIR / SHIPPED_HEADS["xfeat-vlad"])
    ).reranker.source.endswith(".pt")
    # images gone: a clear error naming the fix, exit 2, the map untouched
    moved = tmp_path / "moved"
    shutil.copytree(street / "database", moved)
    (moved / m.names[0]).unlink()
    before = out.read_bytes()
    r = run_vpr("map", "adapt", out, "--images", moved, "--iterations", 1, ok=False)
    assert_one_line_error(r, "1 of the map's 24 images are missing", "--images")
    assert out.read_bytes() == before
