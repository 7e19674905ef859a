"""``make demo``: the synthetic street recorded as bags and replayed to the real node over DDS.

Renders the demo world (vpr_core.demo) and records its mapping and query runs as
ROS 2 bags; builds the map from the mapping bag, starts ``vpr_localizer`` as a
separate process with ``use_sim_time``, plays the query bag to it with ``vpr play``
(images + /clock) and prints each fix, the accuracy and publish->fix latency.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from vpr_core.cli.common import positive_float, seed
from vpr_core.demo import DEMO_THRESHOLD_M, FIX_TOPIC, IMAGE_TOPIC, prepare
from vpr_core.io.bags import GeoFrame, GeoFrames

from .harness import new_domain, ros_env, running_node
from .player import play


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("demo_out"))
    ap.add_argument("--seed", type=seed, default=7)
    ap.add_argument("--device", default="auto")
    ap.add_argument(
        "--rate", type=positive_float, default=1.0, help="playback speed (the query run is recorded at 5 Hz)"
    )
    args = ap.parse_args(argv)
    out: Path = args.out
    vmap, map_path, bags = prepare(out, args.seed, args.device)
    truth = {
        f.frame.stamp: (f.east, f.north)
        for f in GeoFrames(bags["query"], IMAGE_TOPIC, FIX_TOPIC, frame=vmap.frame)
        if isinstance(f, GeoFrame)
    }
    domain = new_domain()
    os.environ.update(ros_env(domain))  # the player (this process) joins the node's private domain
    log = Path(tempfile.mkdtemp(prefix="vpr_demo_")) / "node.log"
    with running_node(
        log,
        {"topic": "/vpr_demo/unused"},
        domain,
        map_path=map_path,
        image_topic=IMAGE_TOPIC,
        input="compressed",
        device=args.device,
        use_sim_time=True,
    ) as (_, peer):
        print(f"node up (ROS_DOMAIN_ID={domain}, use_sim_time); playing {bags['query']} over DDS")
        sent: dict[int, float] = {}
        play(
            bags["query"],
            topics=[IMAGE_TOPIC],
            rate=args.rate,
            wait=30,
            quiet=True,
            on_publish=lambda _t, t_ns: sent.__setitem__(t_ns, time.monotonic()),
        )
        deadline = time.monotonic() + 30
        while (
            len(peer.fixes) < len(sent) and time.monotonic() < deadline
        ):  # the node drops frames it is too busy for: wait until fixes stop
            n = len(peer.fixes)
            if not peer.wait_for(lambda n=n: len(peer.fixes) > n, 2.0):
                break
        if not peer.fixes:
            print(f"no fix for {len(sent)} frames; node log: {log}")
            return 1
        errors, lat = [], []
        for i, (t_fix, fix) in enumerate(peer.fixes):
            st = fix.header.stamp.sec * 10**9 + fix.header.stamp.nanosec
            lat.append((t_fix - sent[st]) * 1e3)
            e, n, _ = vmap.frame.enu(fix.latitude, fix.longitude)
            err = float(np.hypot(e[0] - truth[st][0], n[0] - truth[st][1]))
            errors.append(err)
            status = "FIX   " if fix.status.status >= 0 else "NO_FIX"
            conf = peer.conf[i] if i < len(peer.conf) else float("nan")
            print(
                f"frame {i:3d} t={st / 1e9:.1f}: {status} lat {fix.latitude:.7f} lon {fix.longitude:.7f}  conf "
                f"{conf:.2f}  error {err:6.2f} m  {lat[-1]:5.0f} ms"
            )
        err = np.array(errors)
        print(
            f"\n{len(peer.fixes)} of {len(sent)} frames answered at {5 * args.rate:g} Hz (the node skips frames that "
            "arrive while it is busy)"
            f"\naccuracy over DDS: {100 * np.mean(err <= DEMO_THRESHOLD_M):.1f}% of fixes within {DEMO_THRESHOLD_M:g} "
            "m "
            f"(median error {np.median(err):.2f} m); publish->fix latency p50 {np.percentile(lat, 50):.0f} ms, p95 "
            f"{np.percentile(lat, 95):.0f} ms"
        )
        print("(synthetic data: proves the pipeline end to end; real accuracy comes from real data, see bench/)")
        return 0


if __name__ == "__main__":
    sys.exit(main())
