"""Arguments several verbs share, and the pieces of their handlers that repeat."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from ..config import MAX_SIDE, RULES
from ..errors import VprError
from ..io.geoset import GeoSet, load_geoset
from ..localize.config import LocalizerConfig

__all__ = [
    "VprArgumentParser",
    "add_config_args",
    "add_device_arg",
    "add_geo_args",
    "config_from_args",
    "fraction",
    "geoset",
    "image_side",
    "need_topics",
    "nonnegative_float",
    "outputs_apart",
    "positive_float",
    "positive_int",
    "seed",
]


class VprArgumentParser(argparse.ArgumentParser):
    """argparse, with its errors as one line naming the argument and where the help is (exit status 2)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}; see '{self.prog} --help'\n")


def _number(kind, check, what: str):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not {what}") from None
        if not math.isfinite(value) or not check(value):
            raise argparse.ArgumentTypeError(f"{text} is not {what}")
        return value

    parse.__name__ = what
    return parse


positive_int = _number(int, lambda v: v >= 1, "a positive integer")
positive_float = _number(float, lambda v: v > 0, "a positive number")
nonnegative_float = _number(float, lambda v: v >= 0, "a number >= 0")
fraction = _number(float, lambda v: 0 <= v <= 1, "a number in [0, 1]")
seed = _number(int, RULES["seed"][0], RULES["seed"][1])
image_side = _number(int, lambda v: 32 <= v <= MAX_SIDE, f"an integer in [32, {MAX_SIDE}]")


def outputs_apart(inputs: dict[str, object], outputs: dict[str, object]) -> None:
    """No output flag names a file or folder that an input flag reads: writing the report over the map would
    destroy the map (atomically, so nothing else would warn)."""
    read = {Path(str(p)).resolve(): flag for flag, p in inputs.items() if p}
    for flag, p in outputs.items():
        if p and Path(str(p)).resolve() in read:
            raise VprError(f"{flag} {p} is the input given to {read[Path(str(p)).resolve()]}; write it elsewhere")


def add_device_arg(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda (default: auto)")


def add_config_args(sp: argparse.ArgumentParser, fields: list[str]) -> None:
    """The ``LocalizerConfig`` knobs ``fields`` as this verb's arguments (flags, defaults and choices from the
    config)."""
    from ..config import add_arguments

    add_arguments(sp, LocalizerConfig, fields)


def config_from_args(args: argparse.Namespace) -> LocalizerConfig:
    from ..config import from_surface

    return from_surface(LocalizerConfig, vars(args), "cli").validate("cli")


def add_geo_args(
    sp: argparse.ArgumentParser, folder: str, what: str, bag: bool = False, many_bags: bool = False
) -> None:
    """Where the geotagged images come from: a VPR-convention folder, a CSV or (``bag``) a ROS bag (several with
    ``many_bags``)."""
    g = sp.add_mutually_exclusive_group(required=True)
    g.add_argument(
        folder,
        metavar="DIR",
        help=f"folder of {what} named @utm_east@utm_north@zone@letter@lat@lon@... (VPR convention)",
    )
    g.add_argument(
        "--csv", metavar="FILE", help="CSV with columns image,lat,lon[,alt,heading]; image paths relative to the CSV"
    )
    if bag:
        g.add_argument(
            "--bag",
            metavar="PATH",
            nargs="+" if many_bags else None,
            help="ROS 2 bag (folder, .mcap or .db3) or ROS 1 .bag with images and NavSatFix"
            + ("; several bags (a fleet's runs) make one map" if many_bags else ""),
        )
        sp.add_argument("--image-topic", metavar="T", help="with --bag: sensor_msgs/Image or CompressedImage topic")
        sp.add_argument(
            "--fix-topic",
            metavar="T",
            help="with --bag: sensor_msgs/NavSatFix topic (interpolated at each image stamp)",
        )
        if many_bags:  # building a map: the images' headings
            sp.add_argument(
                "--heading-topic",
                metavar="T",
                help="with --bag: sensor_msgs/Imu whose orientation (ENU, REP-145) gives each map image's heading; "
                "without it, the direction of travel",
            )
        sp.add_argument(
            "--max-fix-age",
            type=positive_float,
            default=1.0,
            metavar="S",
            help="skip images whose neighbouring fixes are further than S seconds (default 1)",
        )
        sp.add_argument(
            "--max-fix-std",
            type=positive_float,
            default=10.0,
            metavar="M",
            help="skip fixes whose horizontal std (covariance) exceeds M metres (default 10)",
        )


def geoset(args: argparse.Namespace, folder: str | None, frame=None) -> GeoSet:
    return load_geoset(folder, getattr(args, "csv", None), frame)


def need_topics(args: argparse.Namespace) -> None:
    if not args.image_topic or not args.fix_topic:
        raise VprError("--bag needs --image-topic (Image or CompressedImage) and --fix-topic (NavSatFix)")
