"""What the node delegates, tested without ROS: newest-frame slot, health verdicts, throttled reports, debug view,
and the per-frame path's contracts (device tensors, re-rankers bound once, no global RNG use)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch
from conftest import reduction_atol

from vpr_core.online.debug_view import DebugView
from vpr_core.online.health import ERROR, OK, WARN, Health, ProblemLog
from vpr_core.online.latest import LatestFrame


def test_latest_frame_keeps_only_the_newest():
    slot: LatestFrame[int] = LatestFrame()
    assert slot.take(timeout=0.01) is None
    assert slot.put(1, now=1.0) is False
    assert slot.put(2, now=2.0) is True and slot.put(3, now=3.0) is True
    assert slot.take(timeout=0.01) == (3, 3.0)
    assert (slot.received, slot.dropped) == (3, 2)
    assert slot.take(timeout=0.01) is None


def test_latest_frame_under_a_fast_producer():
    slot: LatestFrame[int] = LatestFrame()
    got: list[int] = []

    def consume() -> None:
        while not slot.closed:
            item = slot.take(timeout=0.05)
            if item is not None:
                got.append(item[0])
                time.sleep(0.002)  # a worker slower than the camera

    t = threading.Thread(target=consume)
    t.start()
    for i in range(500):
        slot.put(i)
    time.sleep(0.1)
    slot.close()
    t.join(timeout=2)
    assert not t.is_alive()
    assert got == sorted(got) and got[-1] == 499  # always the newest, never out of order
    assert slot.received == 500 and slot.dropped == 500 - len(got)


def test_problem_log_throttles_per_kind():
    log = ProblemLog(every_s=5.0)
    assert log.should_log("frame skipped: odd width 641", now=0.0)
    assert not log.should_log("frame skipped: odd width 643", now=1.0)  # same problem, other numbers
    assert log.should_log("localization failed: boom", now=1.0)
    assert log.should_log("frame skipped: odd width 645", now=5.5)


def test_health_verdicts_and_figures():
    h = Health(window_s=5.0)
    assert h.verdict(0.0, "/cam") == (WARN, "no frames on /cam")
    h.frame_received(1.0)
    h.frame_answered(1.1, {"total": 40.0, "rerank": 10.0}, fix=True)
    h.frame_received(1.2, replaced=False)
    h.frame_answered(1.3, {"total": 60.0, "rerank": 30.0}, fix=False)
    assert h.verdict(1.5, "/cam")[0] == OK
    kv = h.values(1.5)
    assert kv["frames_processed"] == "2" and kv["fixes_below_min_confidence"] == "1"
    assert kv["latency_total_ms_p50"] == "50.0" and float(kv["input_rate_hz"]) == pytest.approx(0.4)
    h.frame_bad("frame skipped: bad encoding")
    assert h.verdict(1.5, "/cam") == (WARN, "1 bad frames, 0 failures") and h.values(1.5)["last_error"].startswith(
        "frame skipped"
    )
    assert h.verdict(100.0, "/cam")[0] == WARN  # nothing arrived for a while
    h.qos_mismatch("incompatible")
    assert h.verdict(1.5, "/cam")[0] == ERROR


def test_debug_view(street, street_map):
    from vpr_core.io.images import load_image
    from vpr_core.localize.localizer import Localizer

    loc = Localizer.from_file(street_map, device="cpu")
    img = load_image(sorted((street / "queries").iterdir())[0])
    est = loc.localize(img)
    with_map = DebugView(loc.map.names, street / "database").render(img, est, 0.5, "none")
    without = DebugView(loc.map.names, None).render(img, est, 0.5, "none")
    assert with_map.shape[0] == 240 and with_map.shape == without.shape
    right = slice(with_map.shape[1] // 2 + 10, None)
    assert with_map[60:, right].std() > 5 and np.allclose(without[60:, right], 64)  # the match, or a grey panel


def test_per_frame_outputs_stay_tensors_and_search_takes_them(street_map):
    from vpr_core.localize.localizer import Localizer
    from vpr_core.localize.retrieval import Index, TorchIndex

    loc = Localizer.from_file(street_map, device="cpu", reranker="ransac")
    x = loc.extractor.to_tensor([np.zeros((240, 320, 3), np.uint8)])
    g, grid = loc.runner(x, local=True)
    assert isinstance(g, torch.Tensor) and isinstance(grid, torch.Tensor) and g.device == loc.extractor.device
    assert loc.runner(x, local=False)[1] is None
    db = loc.map.descriptors
    for index in (Index(db), TorchIndex(db)):
        s_t, i_t = index.search(g, 5)
        s_n, i_n = index.search(g.numpy(), 5)
        assert np.array_equal(i_t, i_n) and np.allclose(s_t, s_n, rtol=0, atol=reduction_atol(db.shape[1]))
    assert isinstance(loc.local.stored, torch.Tensor)  # the map's grid codes, converted once at start-up
    grids = loc.local.gather(np.array([2, 0]), "cpu")  # decoded per frame: unit cells of the model's grid shape
    assert grids.shape == (2, *loc.map.grids.shape) and torch.allclose(
        grids.norm(dim=1), torch.ones(1), rtol=0, atol=reduction_atol(grids.shape[1])
    )


def test_rerankers_are_bound_not_edited(street_map):
    from vpr_core.localize.localizer import Localizer
    from vpr_core.rerank import build_reranker

    for name in ("ransac", "dhe"):
        loc = Localizer.from_file(street_map, device="cpu", reranker=name)
        assert loc.reranker.conf == build_reranker(name).conf  # the Localizer wrote nothing into it
        assert loc.reranker.frame == loc.model.input_size
    with pytest.raises(Exception, match="no frame"):
        _ = build_reranker("ransac").frame


def test_library_code_leaves_the_global_rng_alone(street_map):
    """No seeding and no draws from torch's global stream: heads initialise from a local generator."""
    from vpr_core.localize.localizer import Localizer
    from vpr_core.rerank.dhe import DHEHead
    from vpr_core.rerank.geowarp import GeoWarpHead

    torch.manual_seed(123)  # the caller's stream
    loc = Localizer.from_file(street_map, device="cpu", reranker="dhe")
    loc.reranker.head, loc.reranker.trained = (
        None,
        False,
    )  # a map without a head: an untrained one is built on first use
    before = torch.random.get_rng_state()
    loc.localize(np.zeros((240, 320, 3), np.uint8))
    a = DHEHead(108, generator=torch.Generator().manual_seed(0))
    b = DHEHead(108, generator=torch.Generator().manual_seed(0))
    GeoWarpHead(generator=torch.Generator().manual_seed(0))
    assert torch.equal(torch.random.get_rng_state(), before)
    assert all(
        torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values())
    )  # seeded: reproducible
    assert float(a.pe.detach().abs().sum()) == 0.0 and float(a.linear.weight.detach().std()) > 0
