"""An evaluation report as JSON on disk and as the few lines a person reads."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ..io.files import atomic_write

__all__ = ["print_report", "write_json"]


def _plain(v: Any) -> Any:
    """NaN and Inf (a statistic over no fixes) as null: the JSON standard has no NaN, and strict readers refuse it."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    return v


def write_json(report: dict[str, Any], path: str | Path) -> None:
    text = json.dumps(_plain(report), indent=2, allow_nan=False) + "\n"
    atomic_write(Path(path), lambda tmp: tmp.write_text(text))


def print_report(report: dict[str, Any]) -> None:
    rec = "  ".join(f"R@{k.split('@')[1]} {v:5.1f}" for k, v in report.items() if k.startswith("recall@"))
    rr = f" + {report['reranker']}" if report.get("reranker", "none") != "none" else ""
    if rr and report.get("reranker_weights", "n/a") != "n/a":
        rr += f" [{report['reranker_weights']}]"
    print(
        f"{report.get('model', '')}{rr} on {report['num_queries']} queries, threshold {report['threshold_m']:g} m, map "
        f"{report.get('map_size', '?')} images"
    )
    print(f"  {rec}")
    print(
        f"  top-1 error median {report['median_error_m']:.2f} m, p90 {report['p90_error_m']:.2f} m; mean confidence "
        f"{report['mean_confidence']:.2f}"
    )
    cov = report.get("covariance")
    if cov and cov["n"]:
        print(
            f"  covariance: {cov['coverage_2sigma']:.1f}% of {cov['n']} FIX estimates (confidence >= "
            f"{cov['min_confidence']:g}) inside their 95% ellipse; mean NEES {cov['nees']:.2f} (2 = consistent)"
        )
    elif cov:
        print(f"  covariance: no estimate reached confidence {cov['min_confidence']:g} (all NO_FIX)")
    if report.get("temporal", "none") != "none":
        print(
            f"  temporal {report['temporal']}: track answered {report['tracked_pct']:.1f}% of frames; first correct "
            f"frame {report['first_correct_frame']}, first correct FIX {report['first_correct_fix']}, locked (10 right "
            f"in a row) from frame {report['locked_frame']}"
        )
    lat = "  ".join(f"{k} {v['p50']:.1f}/{v['p95']:.1f}" for k, v in report["latency_ms"].items())
    print(f"  latency ms p50/p95: {lat}")
