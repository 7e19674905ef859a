"""``vpr eval``: localize a labelled query set (folder, CSV) or a bag and report Recall@N, errors and latency."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import MapError, VprError
from .common import (
    add_config_args,
    add_geo_args,
    config_from_args,
    geoset,
    need_topics,
    outputs_apart,
    positive_float,
    seed,
)

__all__ = ["EVAL_KNOBS", "add"]

#: The LocalizerConfig knobs ``vpr eval`` exposes (all of its per-frame settings).
EVAL_KNOBS = [
    "global_model",
    "top_k",
    "model_options",
    "backend",
    "retrieval",
    "reranker",
    "reranker_top_k",
    "reranker_options",
    "device",
    "min_confidence",
    "temporal",
    "temporal_options",
]


def cmd_eval(args: argparse.Namespace) -> int:
    from ..eval.plots import plot_report
    from ..eval.recall import evaluate
    from ..eval.report import print_report, write_json
    from ..io.geoset import in_sequence
    from ..localize.localizer import Localizer
    from ..map.format import load_map

    config = config_from_args(args)
    outputs_apart(
        {"--map": args.map, "--queries": args.queries, "--csv": getattr(args, "csv", None), "--bag": args.bag},
        {"--json": args.json, "--plot": args.plot, "--out-bag": args.out_bag},
    )
    vmap = load_map(args.map)
    queries = None if args.bag else in_sequence(geoset(args, args.queries, vmap.frame), args.shuffle)
    if args.bag and args.shuffle is not None:
        raise VprError("--shuffle applies to folders and CSVs; a bag is replayed in stamp order")
    if args.odom_topic and not args.bag:
        raise VprError("--odom-topic needs --bag (folders and CSVs carry no odometry)")
    if args.bag:
        need_topics(args)
    elif args.out_bag:
        raise VprError("--out-bag needs --bag (it copies the input bag and adds the estimates)")
    try:
        loc = Localizer(vmap, config)
    except MapError as e:  # the map cannot serve this configuration: name the file
        raise MapError(f"{args.map}: {e}") from None
    for why in loc.runner.fallbacks:
        print(f"note: {why}", file=sys.stderr)
    if loc.auto is not None:
        print(f"note: {loc.auto.summary()}", file=sys.stderr)
    if not loc.reranker.trained:
        print(
            f"note: re-ranker '{config.reranker}' runs UNTRAINED (no weights given); its numbers are not the method's",
            file=sys.stderr,
        )
    if args.bag:
        return eval_bag(args, loc)
    report, estimates = evaluate(loc, queries, args.threshold, progress=not args.quiet, frame_period=args.frame_period)
    print_report(report)
    if args.json:
        write_json(report, args.json)
        print(f"report: {args.json}")
    if args.plot:
        plot_report(report, estimates, queries.xy, vmap.xy, args.plot)
        print(f"plot: {args.plot}")
    return 0


def eval_bag(args: argparse.Namespace, loc) -> int:
    from ..eval.bag import evaluate_bag, write_estimates_bag
    from ..eval.plots import plot_trajectory
    from ..eval.report import print_report, write_json

    if args.out_bag and Path(args.out_bag).exists():
        raise VprError(f"{args.out_bag}: exists; remove it or choose another --out-bag")
    r = evaluate_bag(
        loc,
        args.bag,
        args.image_topic,
        args.fix_topic,
        args.threshold,
        args.max_fix_age,
        args.max_fix_std,
        progress=not args.quiet,
        odom_topic=args.odom_topic,
    )
    print_report(r.report)
    print(
        f"  bag: {r.report['frames_localized']} frames localized at {r.report['throughput_fps']:.1f} frames/s; "
        f"{r.report['num_queries']} scored; skipped: {r.skips.summary()}"
    )
    if args.json:
        write_json(r.report, args.json)
        print(f"report: {args.json}")
    if args.plot:
        plot_trajectory(r.report, r.estimates, r.true_xy, loc.map.xy, args.plot)
        print(f"plot: {args.plot}")
    if args.out_bag:
        n = write_estimates_bag(
            args.bag, args.out_bag, r.all_estimates, min_confidence=loc.config.min_confidence, storage=args.out_format
        )
        print(f"bag: {args.out_bag} ({n} messages; estimates on /vpr/fix and /vpr/pose)")
    return 0


def add(sub: argparse._SubParsersAction) -> None:
    from ..io.bags import STORAGES

    e = sub.add_parser(
        "eval",
        help="localize a labelled query set and report Recall@N",
        description="Localize each query image against MAP and report Recall@1/5/10/20, top-1 error and per-stage "
        "latency.",
    )
    e.add_argument("--map", required=True, metavar="MAP")
    add_geo_args(e, "--queries", "query images", bag=True)
    e.add_argument(
        "--out-bag",
        metavar="PATH",
        help="with --bag: a copy of the bag plus the estimates on /vpr/fix (NavSatFix) and /vpr/pose",
    )
    e.add_argument("--out-format", choices=STORAGES, default="mcap", help="storage of --out-bag (default mcap)")
    e.add_argument("--threshold", type=positive_float, default=25.0, help="positive radius in metres (default 25)")
    e.add_argument("--json", metavar="OUT", help="write the report as JSON")
    e.add_argument(
        "--plot",
        metavar="OUT.png",
        help="write a trajectory/recall plot (with --bag: the run on a metric ENU grid, coloured by error)",
    )
    e.add_argument(
        "--shuffle",
        type=seed,
        metavar="SEED",
        help="localize the queries in a seeded random order (checks a temporal filter on unordered input)",
    )
    e.add_argument(
        "--frame-period",
        type=positive_float,
        default=1.0,
        metavar="S",
        help="seconds between consecutive folder/CSV queries, which carry no stamps (default 1)",
    )
    e.add_argument(
        "--odom-topic", default="", metavar="T", help="with --bag: nav_msgs/Odometry topic for the temporal filter"
    )
    e.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_config_args(e, EVAL_KNOBS)
    e.set_defaults(func=cmd_eval)
