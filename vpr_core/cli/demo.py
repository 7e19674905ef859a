"""``vpr demo``: render a synthetic street, record its runs as bags, build a map, replay and evaluate."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import add_device_arg, seed

__all__ = ["add"]


def cmd_demo(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    return run_demo(Path(args.out), seed=args.seed, device=args.device)


def add(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser(
        "demo",
        help="generate a synthetic street, build a map, evaluate",
        description="Self-contained demo: renders a synthetic street (mapping run + query run with offset, yaw jitter, "
        "lighting change, occluders), builds a map and evaluates it. Real accuracy comes from real data.",
    )
    d.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    d.add_argument("--seed", type=seed, default=7)
    add_device_arg(d)
    d.set_defaults(func=cmd_demo)
