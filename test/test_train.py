"""DHE training: the REI loss goes down, resume is exact, a kill during save never corrupts the checkpoint."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

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
    from vpr_core.extract import Extractor
    from vpr_core.models import build_global_model

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
    out = train_dhe(street / "database", tmp_path / "h.torch", {**SMALL, "iterations": 40, "batch_size": 4}, log=tmp_path / "log.jsonl")
    after = held_out_loss(load_dhe_head(str(out), 108), street)
    assert after < 0.9 * before, (before, after)
    rows = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert rows[-1]["iteration"] == 40 and all("loss" in r for r in rows)
    assert (tmp_path / "h.loss.png").read_bytes()[:4] == b"\x89PNG"
    meta = json.loads((tmp_path / "h.torch.json").read_text())
    assert meta["iteration"] == 40 and meta["config"]["lr"] == 1e-4 and meta["data"]["num_images"] == 24 and meta["code_version"]


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
        assert torch.allclose(a[k], b[k], atol=1e-6, rtol=0), k
    assert json.loads((tmp_path / "part.torch.json").read_text())["iteration"] == 10
    from vpr_core.errors import VprError

    with pytest.raises(VprError, match="batch_size=4 but the checkpoint was trained with 3"):
        train_dhe(street / "database", part, {**conf, "batch_size": 4, "iterations": 12}, resume=True)


def test_kill_during_save_leaves_checkpoint_loadable(street, tmp_path):
    ckpt = tmp_path / "k.torch"
    vpr = Path(sys.executable).with_name("vpr")
    cmd = [str(vpr), "train", "dhe", "--images", str(street / "database"), "--out", str(ckpt), "--iterations", "100000",
           "--batch-size", "2", "--save-every", "1", "--device", "cpu"]  # fmt: skip
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
    from vpr_core.dataset import load_geoset
    from vpr_core.errors import VprError
    from vpr_core.evaluation import evaluate
    from vpr_core.localizer import Localizer

    out = train_dhe(street / "database", tmp_path / "h.torch", {**SMALL, "iterations": 2})
    loc = Localizer.from_file(street_map, device="cpu", reranker="dhe", reranker_conf={"weights": str(out)})
    report, _ = evaluate(loc, load_geoset(street / "queries", zone=loc.map.zone), 5.0, progress=False)
    assert report["reranker_trained"] and report["num_queries"] == 10
    with pytest.raises(VprError, match="for a 108-cell grid but this map gives 80 cells"):
        Localizer.from_file(street_map, device="cpu", reranker="dhe", reranker_conf={"weights": str(out), "head_grid": [10, 8]}).localize(
            np.zeros((240, 320, 3), np.uint8)
        )
