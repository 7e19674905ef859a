"""``vpr models``: the registered global models and their default options."""

from __future__ import annotations

import argparse
import json

__all__ = ["add"]


def cmd_models(args: argparse.Namespace) -> int:
    from ..map.config import TINY_SIDE_PX
    from ..models import GLOBAL_MODELS

    for name in GLOBAL_MODELS.names():
        cls = GLOBAL_MODELS.get(name)
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        print(f"{name:12s} {doc}")
        if getattr(cls, "suits", ""):
            print(f"{'':12s} suits: {cls.suits}")
        print(f"{'':12s} defaults: {json.dumps(cls.default_conf)}")
    print(
        f"{'auto':12s} 'vpr map build' without --model: thumbnail when the database images' median shorter side is "
        f"under {TINY_SIDE_PX} px, else xfeat-vlad"
    )
    return 0


def add(sub: argparse._SubParsersAction) -> None:
    m = sub.add_parser(
        "models", help="list the global models", description="List registered global models with their default options."
    )
    m.set_defaults(func=cmd_models)
