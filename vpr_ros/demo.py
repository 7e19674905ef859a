"""``make demo``: the synthetic street replayed to the real node over DDS.

Renders the demo world (vpr_core.demo), builds a map from its mapping run, starts
``vpr_localizer`` as a separate process, publishes the query run as sensor_msgs/Image
one frame at a time and prints each fix and the final accuracy.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from vpr_core.dataset import load_geoset
from vpr_core.demo import DEMO_THRESHOLD_M, generate
from vpr_core.geodesy import to_utm
from vpr_core.mapping import build_and_save

from .harness import NodeProcess, Peer, new_domain


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("demo_out"))
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args(argv)
    out: Path = args.out
    print(f"rendering the synthetic street (seed {args.seed}) into {out}/ ...")
    db_run, q_run, _ = generate(out, args.seed)
    db = load_geoset(db_run.folder)
    q = load_geoset(q_run.folder, zone=db.zone)
    map_path = out / "demo.vprmap"
    vmap = build_and_save(db, map_path, device=args.device, source=str(db_run.folder))
    print(f"map {map_path}: {len(vmap)} images ({vmap.model})")
    domain = new_domain()
    log = Path(tempfile.mkdtemp(prefix="vpr_demo_")) / "node.log"
    node = NodeProcess(domain, log, map_path=map_path, image_topic="/camera/image", device=args.device)
    peer = None
    try:
        node.wait_ready()
        print(f"node up (ROS_DOMAIN_ID={domain}); replaying {len(q_run.images)} query frames over DDS")
        peer = Peer(domain, topic="/camera/image")
        peer.wait_matched()
        errors, lat = [], []
        for i, img in enumerate(q_run.images):
            t = time.monotonic()
            peer.pub.publish(peer.raw(img, i))
            if not peer.wait_for(lambda i=i: len(peer.fixes) > i, 30):
                print(f"frame {i:3d}: no fix within 30 s")
                return 1
            t_fix, fix = peer.fixes[i]
            lat.append((t_fix - t) * 1e3)
            e, n = to_utm(np.array([fix.latitude]), np.array([fix.longitude]), vmap.zone)
            err = float(np.hypot(e[0] - q.east[i], n[0] - q.north[i]))
            errors.append(err)
            status = "FIX   " if fix.status.status >= 0 else "NO_FIX"
            print(f"frame {i:3d}: {status} lat {fix.latitude:.7f} lon {fix.longitude:.7f}  conf {peer.conf[i] if i < len(peer.conf) else float('nan'):.2f}  error {err:6.2f} m  {lat[-1]:5.0f} ms")
        err = np.array(errors)
        print(
            f"\naccuracy over DDS: {100 * np.mean(err <= DEMO_THRESHOLD_M):.1f}% of fixes within {DEMO_THRESHOLD_M:g} m "
            f"(median error {np.median(err):.2f} m); publish->fix latency p50 {np.percentile(lat, 50):.0f} ms, p95 {np.percentile(lat, 95):.0f} ms"
        )
        print("(synthetic data: proves the pipeline end to end; real accuracy comes from real data, see bench/)")
        return 0
    finally:
        if peer is not None:
            peer.close()
        node.stop()


if __name__ == "__main__":
    sys.exit(main())
