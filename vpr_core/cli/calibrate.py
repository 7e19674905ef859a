"""``vpr calibrate``: fit the confidence of one re-ranker on a labelled run and store it in the map."""

from __future__ import annotations

import argparse

from .common import add_config_args, add_geo_args, config_from_args, positive_float

__all__ = ["add"]


def cmd_calibrate(args: argparse.Namespace) -> int:
    from ..eval.calibrate import calibrate

    calibrate(args.map, args.queries, args.csv, args.threshold, config_from_args(args), args.out, args.plot)
    return 0


def add(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser(
        "calibrate",
        help="fit the confidence on a labelled run and store it in the map",
        description="Localize a labelled run, fit P(top-1 within --threshold | inliers, margins) for the chosen "
        "re-ranker, "
        "store it in the map and report reliability (predicted vs observed). Use a run other than the one you evaluate "
        "on.",
    )
    c.add_argument("--map", required=True, metavar="MAP")
    add_geo_args(c, "--queries", "labelled query images")
    c.add_argument(
        "--threshold", type=positive_float, default=25.0, help="a fix counts as correct within this many metres"
    )
    c.add_argument(
        "--out", metavar="MAP", help="write the calibrated map here (default: update MAP in place, atomically)"
    )
    c.add_argument("--plot", metavar="OUT.png", help="reliability diagram")
    add_config_args(c, ["reranker", "reranker_top_k", "reranker_options", "device"])
    c.set_defaults(func=cmd_calibrate)
