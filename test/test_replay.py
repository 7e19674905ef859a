"""Online replay as on a robot: `vpr play BAG` publishes over real DDS, the node runs on sim time."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from vpr_core.io.bags import FixSample, write_run_bag
from vpr_core.io.geoset import load_geoset
from vpr_ros.harness import new_domain, ros_env, running_node

T0 = 1_000_000_000_000
PERIOD = 250_000_000


def test_player_drives_the_node_on_sim_time(street, street_map, tmp_path):
    q = load_geoset(street / "queries", frame=load_geoset(street / "database").frame)
    stamps = [T0 + i * PERIOD for i in range(len(q.paths))]
    bag = write_run_bag(
        tmp_path / "query_run",
        [(s, p.read_bytes()) for s, p in zip(stamps, q.paths)],
        [FixSample(s, float(la), float(lo)) for s, la, lo in zip(stamps, q.lat, q.lon)],
        image_topic="/cam/image/compressed",
    )
    domain = new_domain()
    with running_node(
        tmp_path / "node.log",
        {"topic": "/unused"},
        domain,
        map_path=street_map,
        image_topic="/cam/image/compressed",
        input="compressed",
        device="cpu",
        use_sim_time=True,
        diagnostics_period=0.5,
        reranker="none",
    ) as (_, peer):  # fmt: skip  (none: fast, every 4 Hz frame answered)
        r = subprocess.run(
            [str(Path(sys.executable).parent / "vpr"), "play", str(bag), "--wait", "30", "--rate", "1"],
            env=ros_env(domain),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert r.returncode == 0, r.stderr
        assert f"played {2 * len(stamps)} messages" in r.stdout
        assert peer.wait_for(lambda: len(peer.fixes) == len(stamps), 30), f"{len(peer.fixes)} of {len(stamps)} fixes"
        got = [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for _, m in peer.fixes]
        assert got == stamps  # every frame answered, in order, stamped with its bag stamp
        est_e, est_n, _ = q.frame.enu([m.latitude for _, m in peer.fixes], [m.longitude for _, m in peer.fixes])
        err = np.hypot(est_e - q.east, est_n - q.north)
        assert np.median(err) < 5.0, err
        # the node's own clock is the bag's: diagnostics are stamped in bag time (1000 s), not wall time
        assert peer.wait_for(lambda: len(peer.diags) > 0, 10)
        diag_t = [d.header.stamp.sec for d in peer.diags]
        assert any(T0 // 10**9 <= t <= T0 // 10**9 + 60 for t in diag_t), diag_t


def test_play_reports_bad_input(tmp_path):
    from conftest import assert_one_line_error, vpr

    assert_one_line_error(
        vpr("play", tmp_path / "missing", env=ros_env(new_domain()), timeout=60, ok=False), "bag not found"
    )
