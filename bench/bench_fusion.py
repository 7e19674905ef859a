#!/usr/bin/env python3
"""Closed loop, GPS denied: drifting wheel odometry fused with the localizer's pose by an EKF as the recipe does it.

    python bench/bench_fusion.py ../shared/datasets [--sets nordland corridor] [--json OUT.json] [--plot OUT.png]

A robot drives each shared set's query route in its recorded order (nordland: 399 winter frames 40 m apart along
16 km of line, 2 s apart, 20 m/s; corridor: 111 frames 1 m apart, 1 s apart, 1 m/s). Its wheel odometry (10 Hz,
seeded) reports forward speed with a 2 % scale error and yaw rate with a 0.5 deg/min bias, both with white noise,
and states only the white noise as its covariance (as wheel odometry does). The localizer runs on every frame as
the node does (map from ``vpr map build``: nordland with the ``thumbnail`` model, corridor with the default;
``temporal: hmm``; ``--rerank``, default none) and its pose goes to the filter only with STATUS_FIX
(confidence >= 0.5), as ``~/pose`` does.

The filter is filterpy's ExtendedKalmanFilter with robot_localization's semantics in 2-D, configured from
``config/fusion_pose.yaml``: state x, y, yaw, forward speed, yaw rate; constant-velocity prediction at 10 Hz with
the recipe's ``process_noise_covariance`` (per second, times dt); odometry fuses vx and vyaw (``odom0_config``)
with the twist covariance it states (its white noise and its 2 % scale tolerance); the pose fuses x and y with the
message's covariance, gated like ``pose0_rejection_threshold`` (rejected when the squared Mahalanobis distance of
the innovation is >= its square); it starts at the map frame's origin with the recipe's
``initial_estimate_covariance``. The node runs as fusion.launch.py starts it (``covariance_model: inlier``,
``min_confidence: 0.8``) and, for comparison, with its defaults (``mixture``, 0.5).

Reported per set, for odometry alone (integrated from the true start) and fused: RMS and max position error at
10 Hz, the share of published poses the gate rejected, the fused NEES (mean over the frames against the 95 %
chi-square band of its mean; and the share of frames inside the 95 % ellipse), the time to the first accepted
update, and the largest error of an accepted update. One plot: both tracks and the truth, and error over time.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml
from filterpy.kalman import ExtendedKalmanFilter
from scipy.stats import chi2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vpr_core.io.geoset import in_sequence, load_geoset
from vpr_core.io.images import load_image
from vpr_core.localize.estimate import COVARIANCE_MODELS
from vpr_core.localize.localizer import Localizer
from vpr_core.localize.outputs import STATUS_FIX, fix_fields
from vpr_core.map.build import build_and_save

# set -> (model, seconds between frames, recall threshold m)
SETS = {"nordland": ("thumbnail", 2.0, 25.0), "corridor": ("xfeat-vlad", 1.0, 2.5)}
ODOM_HZ = 10.0
SCALE_ERROR = 0.02
YAW_BIAS = math.radians(0.5) / 60.0  # rad/s
SPEED_NOISE = 0.05  # m/s, white, plus 1 % of the speed
YAW_RATE_NOISE = 0.005  # rad/s, white
# The recipe, read from config/fusion_pose.yaml: the gate, the initial and the process covariance of the state
# robot_localization keeps in 2-D (x, y, yaw, vx, vyaw of its 15: indices 0, 1, 5, 6, 11).
RECIPE = yaml.safe_load((Path(__file__).resolve().parents[1] / "config" / "fusion_pose.yaml").read_text())[
    "ekf_filter_node_map"
]["ros__parameters"]
STATE = [0, 1, 5, 6, 11]
GATE_SIGMAS = float(RECIPE["pose0_rejection_threshold"])
P0 = np.array(RECIPE["initial_estimate_covariance"]).reshape(15, 15)[np.ix_(STATE, STATE)]
Q_RATE = np.array(RECIPE["process_noise_covariance"]).reshape(15, 15)[np.ix_(STATE, STATE)]  # per second
#: The node's min_confidence: its default with the mixture covariance; the fusion recipes' with inlier (a Kalman
#: filter takes every accepted fix as right, so it asks for more).
MIN_CONFIDENCE = {"mixture": 0.5, "inlier": 0.8}


class PlanarEkf(ExtendedKalmanFilter):
    """State (x, y, yaw, v, w): unicycle constant-velocity motion, the 2-D subset of robot_localization's model."""

    def __init__(self) -> None:
        super().__init__(dim_x=5, dim_z=2)
        self.P = P0.copy()

    def predict_dt(self, dt: float) -> None:
        x, y, yaw, v, w = self.x[:, 0]
        c, s = math.cos(yaw), math.sin(yaw)
        self.F = np.array(
            [[1, 0, -v * s * dt, c * dt, 0], [0, 1, v * c * dt, s * dt, 0], [0, 0, 1, 0, dt], [0, 0, 0, 1, 0],
             [0, 0, 0, 0, 1]], dtype=float,
        )  # fmt: skip
        self.Q = Q_RATE * dt
        self.x = np.array([[x + v * c * dt], [y + v * s * dt], [yaw + w * dt], [v], [w]])
        self.P = self.F @ self.P @ self.F.T + self.Q

    def fuse(self, z: np.ndarray, r: np.ndarray, rows: list[int], gate: float | None = None) -> tuple[bool, float]:
        """A linear measurement of state ``rows`` (robot_localization's *_config); gated when ``gate`` is given.
        Returns (accepted, squared Mahalanobis distance)."""
        h = np.zeros((len(rows), 5))
        h[np.arange(len(rows)), rows] = 1.0
        innov = z.reshape(-1, 1) - h @ self.x
        s = h @ self.P @ h.T + r
        d2 = float((innov.T @ np.linalg.solve(s, innov))[0, 0])
        if gate is not None and d2 >= gate * gate:
            return False, d2
        self.update(z.reshape(-1, 1), lambda _x: h, lambda x: h @ x, R=r)
        return True, d2


def route(east: np.ndarray, north: np.ndarray, frame_dt: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The truth at the odometry rate: times, (x, y) and yaw, driving straight between consecutive frames."""
    steps = int(round(frame_dt * ODOM_HZ))
    t, xy, yaw = [], [], []
    for i in range(len(east) - 1):
        d = np.array([east[i + 1] - east[i], north[i + 1] - north[i]])
        heading = math.atan2(d[1], d[0]) if np.hypot(*d) > 1e-6 else (yaw[-1] if yaw else 0.0)
        for k in range(steps):
            t.append((i + k / steps) * frame_dt)
            xy.append(np.array([east[i], north[i]]) + d * k / steps)
            yaw.append(heading)
    t.append((len(east) - 1) * frame_dt)
    xy.append(np.array([east[-1], north[-1]]))
    yaw.append(yaw[-1])
    return np.array(t), np.array(xy), np.unwrap(np.array(yaw))


def odometry(xy: np.ndarray, yaw: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Measured forward speed and yaw rate between consecutive truth samples: scale error, bias, white noise."""
    dt = 1.0 / ODOM_HZ
    v = np.hypot(*np.diff(xy, axis=0).T) / dt
    w = np.diff(yaw) / dt
    v_m = v * (1 + SCALE_ERROR) + rng.normal(0, SPEED_NOISE + 0.01 * v)
    w_m = w + YAW_BIAS + rng.normal(0, YAW_RATE_NOISE, len(w))
    return v_m, w_m


def dead_reckon(x0: np.ndarray, yaw0: float, v: np.ndarray, w: np.ndarray) -> np.ndarray:
    dt = 1.0 / ODOM_HZ
    yaw = yaw0 + np.concatenate([[0.0], np.cumsum(w * dt)])
    step = np.stack([v * np.cos(yaw[:-1]), v * np.sin(yaw[:-1])], 1) * dt
    return np.concatenate([x0[None], x0 + np.cumsum(step, 0)])


def localize_route(root: Path, name: str, tmp: Path, rerank: str, covariances: list[str]) -> tuple[object, dict]:
    """The route's queries in order and the localizer's estimate of each, per covariance model."""
    model, frame_dt, _ = SETS[name]
    base = root / name / "images" / "test"
    db = load_geoset(base / "database")
    q = in_sequence(load_geoset(base / "queries", frame=db.frame))
    vmap = build_and_save(db, tmp / f"{name}.vprmap", model=model, device="cpu", source=str(base))
    images = [load_image(p) for p in q.paths]
    out = {}
    for cov in covariances:
        loc = Localizer(vmap, device="cpu", temporal="hmm", reranker=rerank, covariance=cov)
        out[cov] = [loc.localize(img, stamp=i * frame_dt) for i, img in enumerate(images)]
    return q, out


def run(q, ests: list, name: str, seed: int, covariance: str) -> dict:
    _, frame_dt, _ = SETS[name]
    t, truth, yaw = route(q.east, q.north, frame_dt)
    rng = np.random.default_rng(seed)
    v_m, w_m = odometry(truth, yaw, rng)
    odo = dead_reckon(truth[0], yaw[0], v_m, w_m)
    steps = int(round(frame_dt * ODOM_HZ))
    ekf = PlanarEkf()  # at the map frame's origin, yaw 0, with the recipe's wide initial covariance
    # the twist covariance the odometry states: its white noise plus its scale tolerance (a driver's
    # twist_covariance set to cover a 2 % wheel-radius error), and the gyro-grade yaw-rate noise
    speed = float(np.mean(np.abs(v_m)))
    odo_r = np.diag([(SPEED_NOISE + (0.01 + SCALE_ERROR) * speed) ** 2, (YAW_RATE_NOISE + YAW_BIAS) ** 2])
    min_conf = MIN_CONFIDENCE[covariance]
    fused, nees, accepted_err = [], [], []
    published = rejected = 0
    first_accept = None
    for n in range(len(t)):
        if n > 0:
            ekf.predict_dt(1.0 / ODOM_HZ)
            ekf.fuse(np.array([v_m[n - 1], w_m[n - 1]]), odo_r, [3, 4])
        if n % steps == 0:
            e = ests[n // steps]
            ff = fix_fields(e, min_conf)
            if ff.status == STATUS_FIX:  # ~/pose is published
                published += 1
                ok, _ = ekf.fuse(np.array([e.east, e.north]), np.asarray(e.covariance)[:2, :2], [0, 1], GATE_SIGMAS)
                if ok:
                    accepted_err.append(float(np.hypot(e.east - truth[n, 0], e.north - truth[n, 1])))
                    first_accept = t[n] if first_accept is None else first_accept
                else:
                    rejected += 1
            err = ekf.x[:2, 0] - truth[n]
            nees.append(float(err @ np.linalg.solve(ekf.P[:2, :2], err)))
        fused.append(ekf.x[:2, 0].copy())
    fused_a = np.array(fused)
    settle = int(np.searchsorted(t, first_accept if first_accept is not None else t[-1]))
    e_f = np.hypot(*(fused_a - truth).T)[settle:]  # fused error from the first accepted fix on
    e_o = np.hypot(*(odo - truth).T)
    nees_a = np.array(nees)[int(math.ceil(settle / steps)) :]
    m = len(nees_a)
    return {
        "set": name,
        "covariance": covariance,
        "frames": len(ests),
        "route_m": float(np.sum(np.hypot(*np.diff(truth, axis=0).T))),
        "duration_s": float(t[-1]),
        "odom_rms_m": float(np.sqrt(np.mean(e_o**2))),
        "odom_max_m": float(e_o.max()),
        "fused_rms_m": float(np.sqrt(np.mean(e_f**2))),
        "fused_max_m": float(e_f.max()),
        "published": published,
        "gated_pct": 100.0 * rejected / max(published, 1),
        "first_accept_s": first_accept,
        "max_accepted_err_m": max(accepted_err) if accepted_err else None,
        "nees_mean": float(nees_a.mean()),
        "nees_band95": [float(chi2.ppf(0.025, 2 * m) / m), float(chi2.ppf(0.975, 2 * m) / m)],
        "nees_in95_pct": float(100 * np.mean(nees_a <= chi2.ppf(0.95, 2))),
        "_tracks": (t, truth, odo, fused_a),
    }


def plot(rows: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), 2, figsize=(12, 3.8 * len(rows)), squeeze=False)
    for ax, r in zip(axes, rows):
        t, truth, odo, fused = r["_tracks"]
        ax[0].plot(truth[:, 0], truth[:, 1], "k-", lw=2, label="ground truth")
        ax[0].plot(odo[:, 0], odo[:, 1], "-", color="tab:orange", label="odometry alone")
        ax[0].plot(fused[:, 0], fused[:, 1], "-", color="tab:blue", label="fused (EKF + vpr pose)")
        ax[0].set_xlabel("east (m)")
        ax[0].set_ylabel("north (m)")
        ax[0].set_title(f"{r['set']}, covariance {r['covariance']}: tracks")
        ax[0].legend(fontsize=8)
        ax[1].semilogy(t, np.hypot(*(odo - truth).T) + 1e-3, color="tab:orange", label="odometry alone")
        ax[1].semilogy(t, np.hypot(*(fused - truth).T) + 1e-3, color="tab:blue", label="fused")
        ax[1].set_xlabel("time (s)")
        ax[1].set_ylabel("position error (m)")
        ax[1].set_title(f"{r['set']}: fused RMS {r['fused_rms_m']:.1f} m, odometry {r['odom_rms_m']:.0f} m")
        ax[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("datasets", type=Path, help="folder holding <set>/images/test/{database,queries}")
    ap.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    ap.add_argument("--rerank", default="none", help="re-ranker of the localizer (default none)")
    ap.add_argument("--seed", type=int, default=0, help="odometry noise seed")
    ap.add_argument(
        "--covariance",
        nargs="+",
        default=["inlier", "mixture"],
        choices=list(COVARIANCE_MODELS),
        help="the node's covariance_model (the fusion recipes set inlier)",
    )
    ap.add_argument("--json", type=Path, help="write the table here")
    ap.add_argument("--plot", type=Path, help="write the tracks here (png)")
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.sets:
            if not (args.datasets / name / "images" / "test" / "queries").is_dir():
                print(f"skip {name}: no {args.datasets / name / 'images/test/queries'}", file=sys.stderr)
                continue
            q, ests = localize_route(args.datasets, name, Path(tmp), args.rerank, args.covariance)
            rows += [run(q, ests[cov], name, args.seed, cov) for cov in args.covariance]
    if not rows:
        print(f"error: none of {', '.join(args.sets)} under {args.datasets}", file=sys.stderr)
        return 1
    cols = ["set", "covariance", "frames", "route_m", "odom_rms_m", "odom_max_m", "fused_rms_m", "fused_max_m",
            "gated_pct", "first_accept_s", "max_accepted_err_m", "nees_mean", "nees_in95_pct"]  # fmt: skip
    print(" | ".join(cols) + " | nees_band95")
    for r in rows:
        cells = [f"{r[c]:.1f}" if isinstance(r[c], float) else str(r[c]) for c in cols]
        print(" | ".join(cells) + f" | {r['nees_band95'][0]:.2f}-{r['nees_band95'][1]:.2f}")
    if args.plot:
        plot(rows, args.plot)
    if args.json:
        args.json.write_text(
            json.dumps([{k: v for k, v in r.items() if not k.startswith("_")} for r in rows], indent=1)
        )
    summary = ", ".join(
        f"{r['set']} ({r['covariance']}) fused RMS {r['fused_rms_m']:.1f} m (odometry {r['odom_rms_m']:.0f} m), "
        f"NEES {r['nees_mean']:.2f} (band {r['nees_band95'][0]:.2f}-{r['nees_band95'][1]:.2f}), "
        f"gated {r['gated_pct']:.0f} %"
        for r in rows
    )
    print(f"summary: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
