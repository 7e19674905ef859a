"""Settings declared once, shown on every surface: dataclass fields that know their CLI flag and ROS parameter.

A setting is a dataclass field made with :func:`knob`: its library default, help text,
type, choices (a callable, so registries are read when asked) and range, and how it
appears on each surface (the ``vpr`` command line, the ROS node). Where a surface
deliberately uses another name or default, the field carries that with a one-line
reason. The CLI adds its arguments with :func:`add_arguments`; the node declares its
parameters from :func:`knobs`; both validate through :func:`validate`, so a choice
list or a range exists in one place.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import VprError

__all__ = [
    "RULES",
    "Knob",
    "Surface",
    "add_arguments",
    "check_option",
    "check_options",
    "from_surface",
    "knob",
    "knobs",
    "parse_sets",
    "validate",
]

SURFACES = ("cli", "ros")


@dataclass(frozen=True)
class Surface:
    """How a setting appears on one surface: its name there, its default there and, when that differs, why."""

    name: str
    default: Any
    why: str = ""


@dataclass(frozen=True)
class Knob:
    field: str
    help: str
    type: type
    default: Any
    choices: Callable[[], Sequence[str]] | None
    range: tuple[float, float] | None
    surfaces: dict[str, Surface]
    runtime: bool  # may change while the node runs (parameter service)
    accepts: Callable[[Any], bool] | None  # values allowed beside the choices (e.g. "cuda:1")
    registry: bool  # choices are registered method names: a miss is "unknown", not "invalid"

    def on(self, surface: str) -> Surface | None:
        return self.surfaces.get(surface)


def knob(
    default: Any,
    help: str,
    *,
    type: type,
    choices: Callable[[], Sequence[str]] | None = None,
    range: tuple[float, float] | None = None,
    cli: str | tuple[str, Any, str] | None = None,
    ros: str | tuple[str, Any, str] | None = None,
    runtime: bool = False,
    accepts: Callable[[Any], bool] | None = None,
    registry: bool = False,
) -> Any:
    """A dataclass field; ``cli``/``ros`` give the name on that surface, or (name, default, why) where the default
    differs."""
    surfaces: dict[str, Surface] = {}
    for key, spec in (("cli", cli), ("ros", ros)):
        if spec is None:
            continue
        if isinstance(spec, str):
            surfaces[key] = Surface(spec, default)
        else:
            name, value, why = spec
            if not why:
                raise ValueError(f"{name}: a surface default that differs needs its reason")
            surfaces[key] = Surface(name, value, why)
    meta = {"knob": (help, type, choices, range, surfaces, runtime, accepts, registry)}
    if isinstance(default, dict | list):
        return dataclasses.field(default_factory=functools.partial(_fresh_copy, default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _fresh_copy(value: Any) -> Any:
    """A new copy of a JSON-like default per instance (a shared dict default would leak between configs)."""
    return json.loads(json.dumps(value))


def knobs(cls: type, surface: str | None = None) -> list[Knob]:
    """The settings of a config class (those shown on ``surface`` only, when given), in declaration order."""
    out = []
    for f in dataclasses.fields(cls):
        if "knob" not in f.metadata:
            continue
        help_, type_, choices, range_, surfaces, runtime, accepts, registry = f.metadata["knob"]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        k = Knob(f.name, help_, type_, default, choices, range_, surfaces, runtime, accepts, registry)
        if surface is None or k.on(surface) is not None:
            out.append(k)
    return out


def _label(k: Knob, surface: str | None) -> str:
    s = k.on(surface) if surface else None
    if s is None:
        return k.field
    return f"parameter {s.name}" if surface == "ros" else s.name


def check(k: Knob, value: Any, surface: str | None = None) -> None:
    """One setting's value against its type, choices and range; a one-line VprError naming it on ``surface``."""
    label = _label(k, surface)
    if k.type in (int, float) and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise VprError(f"{label}={value!r} is not a number; give a {k.type.__name__}")
    if k.type is float and not math.isfinite(float(value)):
        raise VprError(f"{label}={value} is not finite; give a number in [{k.range[0]:g}, {k.range[1]:g}]")
    if k.range is not None and not (k.range[0] <= value <= k.range[1]):
        raise VprError(f"{label}={value} is out of range; give a value in [{k.range[0]:g}, {k.range[1]:g}]")
    if k.choices is not None:
        allowed = list(k.choices())
        if value not in allowed and not (k.accepts and k.accepts(value)):
            shown = ", ".join(repr(c) if c == "" else str(c) for c in allowed)
            raise VprError(f"{label}='{value}' is {'unknown' if k.registry else 'invalid'}; choose one of {shown}")


def validate(config: Any, surface: str | None = None) -> None:
    """Every setting of ``config``; errors name the setting as ``surface`` shows it (flag or parameter)."""
    for k in knobs(type(config)):
        check(k, getattr(config, k.field), surface)


def parse_sets(items: Sequence[str] | None, flag: str = "--set") -> dict[str, Any]:
    """``KEY=VALUE`` pairs; values parsed as JSON when they are JSON (numbers, lists, bools)."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise VprError(f"{flag} expects key=value, got '{item}'")
        key, value = item.split("=", 1)
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _arg_type(k: Knob, flag: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = k.type(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a {k.type.__name__}") from None
        try:
            check(k, value, "cli")
        except VprError as e:
            raise argparse.ArgumentTypeError(str(e).split("=", 1)[1] if "=" in str(e) else str(e)) from None
        return value

    parse.__name__ = k.type.__name__  # argparse names the type in its messages
    return parse


def add_arguments(parser: argparse.ArgumentParser, cls: type, fields: Sequence[str], keep_unset: bool = False) -> None:
    """Add the CLI arguments of ``cls``'s ``fields`` (each must be shown on the CLI) to ``parser``; with
    ``keep_unset`` a flag not given leaves no attribute (a preset's value stands)."""
    by_field = {k.field: k for k in knobs(cls, "cli")}
    for name in fields:
        k = by_field[name]
        s = k.on("cli")
        assert s is not None
        help_ = k.help
        if k.type is dict:
            extra = {"default": argparse.SUPPRESS} if keep_unset else {}
            parser.add_argument(s.name, action="append", metavar="KEY=VALUE", dest=k.field, help=help_, **extra)
            continue
        kw: dict[str, Any] = {"dest": k.field, "default": argparse.SUPPRESS if keep_unset else s.default}
        if k.choices is not None and k.accepts is None:
            kw["choices"] = [c for c in k.choices() if c != ""]  # "" is the default's "not set", never typed
            kw["type"] = k.type
        else:
            kw["type"] = _arg_type(k, s.name)
        if k.type is not str and k.choices is None:
            kw["metavar"] = k.type.__name__.upper()
        default_text = s.default if s.default != "" else "none"
        parser.add_argument(s.name, help=f"{help_} (default: {default_text})", **kw)


def from_surface(cls: type, values: dict[str, Any], surface: str) -> Any:
    """An instance of ``cls`` from a surface's values keyed by field (argparse dests) or by parameter name (ROS)."""
    kw: dict[str, Any] = {}
    for k in knobs(cls, surface):
        s = k.on(surface)
        key = k.field if surface == "cli" else s.name
        if key not in values:
            continue
        value = values[key]
        if k.type is dict and surface == "cli":
            value = parse_sets(value, s.name)
        elif value is None:
            value = s.default
        kw[k.field] = value
    return cls(**kw)


# ---------------------------------------------------------------------------------------------------------------
# Options of a method (global model --set, re-ranker --rerank-set, temporal --temporal-set, training --set, and the
# same as ROS parameters): one check, by the type of the option's default and a rule.
# ---------------------------------------------------------------------------------------------------------------
#: Numeric rules by name: (test, what the message says).
RULES: dict[str, tuple[Callable[[float], bool], str]] = {
    ">0": (lambda v: v > 0, "above 0"),
    ">=0": (lambda v: v >= 0, "0 or more"),
    ">=1": (lambda v: v >= 1, "1 or more"),
    "(0,1)": (lambda v: 0 < v < 1, "between 0 and 1"),
    "[0,1]": (lambda v: 0 <= v <= 1, "between 0 and 1"),
    "(0,1]": (lambda v: 0 < v <= 1, "above 0 and at most 1"),
    "seed": (lambda v: 0 <= v < 2**32, "an integer in [0, 4294967295]"),
}
#: The largest side of a [width, height] option in pixels or cells (a typo like 40000 would allocate gigabytes).
MAX_SIDE = 8192


def _pair_problem(value: Any, lo: int, key: str) -> str:
    ok = isinstance(value, list | tuple) and len(value) == 2
    ok = ok and all(isinstance(v, int) and not isinstance(v, bool) and lo <= v <= MAX_SIDE for v in value)
    return "" if ok else f"must be [width, height], integers >= {lo} (at most {MAX_SIDE}), e.g. [320,240]"


def check_option(owner: str, key: str, value: Any, default: Any, rule: Any = None) -> Any:  # noqa: C901 (one branch per option kind, each a one-line error)
    """Option ``key`` of ``owner`` (e.g. "re-ranker 'dhe'") as the type of its ``default``, within ``rule``: a
    name of ``RULES``, an inclusive ``(lo, hi)``, ``"pair>=N"`` for [width, height], or a set of allowed strings.
    Returns the value as that type; else one VprError naming the option, the value and the fix. Why one function:
    options arrive as text from four surfaces and a bad one must fail at start-up, never as a traceback or NaN
    on the first frame."""

    def fail(problem: str) -> VprError:
        return VprError(f"{owner}: option {key}={value!r} {problem}")

    if isinstance(rule, str) and rule.startswith("pair>="):
        if value is None and default is None:
            return None
        problem = _pair_problem(value, int(rule[6:]), key)
        if problem:
            raise fail(problem.replace("e.g. [", f"e.g. {key}=["))
        return [int(v) for v in value]
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise fail("must be true or false")
        return value
    if isinstance(default, int | float):
        want_int = isinstance(default, int)
        kind, noun = ("an integer", "integer") if want_int else ("a number", "number")
        try:
            if isinstance(value, bool) or isinstance(value, list | dict | type(None)):  # text "5" is a number
                raise ValueError
            v = float(value)
            if not math.isfinite(v) or (want_int and not v.is_integer()):
                raise ValueError
        except (TypeError, ValueError, OverflowError):
            raise fail(f"is not {kind}; give a finite {noun}") from None
        if isinstance(rule, tuple):
            if not rule[0] <= v <= rule[1]:
                lo, hi = (str(int(b)) if float(b).is_integer() else f"{b:g}" for b in rule)
                raise fail(f"is out of range; give a value in [{lo}, {hi}]")
        elif rule is not None:
            ok, what = RULES[rule]
            if not ok(v):
                raise fail(f"must be {what} (default {default})")
        return int(v) if want_int else v
    if isinstance(rule, set | frozenset):
        if value not in rule:
            raise fail(f"is not one of {', '.join(sorted(rule))}")
        return value
    if isinstance(default, str) or default is None:
        if not (value is None or isinstance(value, str)):
            raise fail("must be a string (a name or a file path)")
        return value
    return value


def check_options(
    owner: str, defaults: dict[str, Any], conf: dict[str, Any] | None, rules: dict[str, Any] | None = None
) -> dict[str, Any]:
    """``defaults`` updated by ``conf``, every option checked by ``check_option`` (unknown names refused)."""
    unknown = sorted(set(conf or {}) - set(defaults))
    if unknown:
        raise VprError(f"{owner}: unknown option(s) {', '.join(unknown)}; known: {', '.join(defaults)}")
    rules = rules or {}
    return {k: check_option(owner, k, v, defaults[k], rules.get(k)) for k, v in {**defaults, **(conf or {})}.items()}
