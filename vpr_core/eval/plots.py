"""Pictures of an evaluation: recall and errors on the map, a replayed trajectory, a reliability diagram."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..io.files import atomic_write
from ..localize.calibration import reliability
from ..localize.localizer import Estimate

__all__ = ["plot_reliability", "plot_report", "plot_trajectory"]


def plot_report(
    report: dict[str, Any], estimates: list[Estimate], true_xy: np.ndarray, map_xy: np.ndarray, path: str | Path
) -> None:
    """Left: map, queries coloured by top-1 error, a line to each wrong top-1. Right: Recall@N."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    thr = report["threshold_m"]
    o = map_xy.mean(axis=0)
    est_xy = np.array([[e.east, e.north] for e in estimates]) - o
    tq = true_xy - o
    err = np.linalg.norm(est_xy - tq, axis=1)
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 5), gridspec_kw={"width_ratios": [2, 1]})
    a.scatter(*(map_xy - o).T, s=6, c="lightgray", label="map images")
    for t, e, ok in zip(tq, est_xy, err <= thr):
        if not ok:
            a.plot([t[0], e[0]], [t[1], e[1]], color="tab:red", lw=0.6, alpha=0.6)
    sc = a.scatter(
        *tq.T, s=14, c=np.minimum(err, 4 * thr), cmap="RdYlGn_r", vmin=0, vmax=4 * thr, label="queries (top-1 error)"
    )
    fig.colorbar(sc, ax=a, label="top-1 error [m]")
    a.set_aspect("equal", adjustable="datalim")
    a.set_xlabel("east [m]")
    a.set_ylabel("north [m]")
    a.legend(loc="best", fontsize=8)
    a.set_title(f"{report.get('model', '')}: R@1 {report['recall@1']:.1f}% at {thr:g} m")
    ns = [int(k.split("@")[1]) for k in report if k.startswith("recall@")]
    b.plot(ns, [report[f"recall@{n}"] for n in ns], "o-")
    b.set_xscale("log")
    b.set_xticks(ns, [str(n) for n in ns])
    b.set_ylim(0, 101)
    b.set_xlabel("N")
    b.set_ylabel("Recall@N [%]")
    b.grid(alpha=0.3)
    fig.tight_layout()
    atomic_write(Path(path), lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)


def plot_trajectory(
    report: dict[str, Any],
    estimates: list[Estimate],
    true_xy: np.ndarray,
    map_xy: np.ndarray,
    path: str | Path,
) -> None:
    """A replayed run on a metric ENU grid (metres from the map origin): ground truth as a line, estimates coloured
    by error."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    thr = report["threshold_m"]
    est = np.array([[e.east, e.north] for e in estimates])
    gt = true_xy
    err = np.linalg.norm(est - gt, axis=1)
    fig, ax = plt.subplots(figsize=(8, 6.5))
    ax.scatter(map_xy[:, 0], map_xy[:, 1], s=5, c="lightgray", label="map images")
    ax.plot(*gt.T, "-", color="black", lw=1.2, label="ground truth (bag fixes)")
    sc = ax.scatter(
        est[:, 0],
        est[:, 1],
        s=16,
        c=np.minimum(err, 4 * thr),
        cmap="RdYlGn_r",
        vmin=0,
        vmax=4 * thr,
        label="estimates",
        zorder=3,
    )
    fig.colorbar(sc, ax=ax, label="error [m]")
    ax.set_aspect("equal", adjustable="datalim")
    ax.grid(alpha=0.3)
    ax.set_xlabel("east [m]")
    ax.set_ylabel("north [m]")
    ax.legend(loc="best", fontsize=8)
    ax.set_title(
        f"{report.get('model', '')} + {report.get('reranker', 'none')}: R@1 {report['recall@1']:.1f}% at {thr:g} m, "
        f"median error {np.median(err):.1f} m"
    )
    fig.tight_layout()
    atomic_write(Path(path), lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)


def plot_reliability(before: np.ndarray, after: np.ndarray, y: np.ndarray, path: str, name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="perfect")
    for pred, label in ((before, "uncalibrated"), (after, "calibrated")):
        r = reliability(pred, y)
        ax.plot([a for a, _, _ in r], [b for _, b, _ in r], "o-", label=label)
    ax.set_xlabel("predicted confidence")
    ax.set_ylabel("observed fraction correct")
    ax.set_title(f"reliability: {name}")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend()
    atomic_write(Path(path), lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
