"""The ``vpr`` command: one module per verb, each adding its own arguments.

Every user-facing failure is a :class:`VprError` and ends as one ``error:`` line on
stderr with exit status 2; nothing half-written is left behind. Verbs from other
packages (``vpr play`` from vpr_ros) come in through the ``vpr.commands`` entry point.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from ..errors import VprError
from . import calibrate, demo, eval, export, map, models, train
from .common import VprArgumentParser

__all__ = ["build_parser", "main"]

log = logging.getLogger("vpr")

VERBS = (map, eval, calibrate, train, export, demo, models)


def build_parser() -> argparse.ArgumentParser:
    p = VprArgumentParser(
        prog="vpr", description="Visual place recognition: build geotagged image maps, localize and evaluate."
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)
    for verb in VERBS:
        verb.add(sub)
    add_plugins(sub)
    return p


def add_plugins(sub) -> None:
    """Commands other packages add (entry point group ``vpr.commands``), e.g. ``vpr play`` from vpr_ros - core never
    imports them."""
    from importlib.metadata import entry_points

    for ep in entry_points(group="vpr.commands"):
        try:
            ep.load()(sub)
        except ImportError as e:  # the plugin's dependencies (e.g. rclpy) are missing: say so when it is called

            def unavailable(args: argparse.Namespace, name: str = ep.name, why: str = str(e)) -> int:
                raise VprError(
                    f"'vpr {name}' is unavailable here ({why}); install the ROS extras: pip install -e '.[ros]'"
                )

            sp = sub.add_parser(ep.name, help=f"(unavailable: {e})")
            sp.add_argument("rest", nargs=argparse.REMAINDER)
            sp.set_defaults(func=unavailable)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        import torch

        torch.set_num_threads(max(1, torch.get_num_threads()))
        return int(args.func(args) or 0)
    except VprError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `vpr models | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
