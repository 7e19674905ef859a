"""One config object: the CLI arguments and the node parameters are generated from it, choice lists exist once."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from vpr_core.cli import build_parser
from vpr_core.cli.eval import EVAL_KNOBS
from vpr_core.config import knobs
from vpr_core.errors import VprError
from vpr_core.localize.config import LocalizerConfig
from vpr_core.localize.retrieval import INDEX_KINDS, RETRIEVALS
from vpr_core.rerank import RERANKERS
from vpr_core.runtime.backends import BACKENDS
from vpr_core.runtime.extractor import DEVICES

ROOT = Path(__file__).resolve().parent.parent


def subparser(parser: argparse.ArgumentParser, *path: str) -> argparse.ArgumentParser:
    for name in path:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[name]
    return parser


def options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {s: a for a in parser._actions for s in a.option_strings}


def test_cli_arguments_come_from_the_config():
    ev = options(subparser(build_parser(), "eval"))
    by_field = {k.field: k for k in knobs(LocalizerConfig, "cli")}
    for field in EVAL_KNOBS:
        k = by_field[field]
        action = ev[k.on("cli").name]
        assert action.dest == field
        assert action.default == (k.on("cli").default if k.type is not dict else None)
    assert ev["--rerank"].choices == ["auto", *RERANKERS.names()]
    assert ev["--backend"].choices == list(BACKENDS)
    assert ev["--retrieval"].choices == list(RETRIEVALS)
    # the flags users know are unchanged
    for flag in (
        "--model",
        "--set",
        "--top-k",
        "--rerank",
        "--rerank-k",
        "--rerank-set",
        "--device",
        "--backend",
        "--retrieval",
        "--min-confidence",
    ):
        assert flag in ev, flag
    cal = options(subparser(build_parser(), "calibrate"))
    assert {"--rerank", "--rerank-k", "--rerank-set", "--device"} <= set(cal)


def test_node_parameters_come_from_the_config():
    pytest.importorskip("rclpy")
    from vpr_ros.params import PARAMETERS, NodeSettings

    expected = {k.on("ros").name: k for cls in (LocalizerConfig, NodeSettings) for k in knobs(cls, "ros")}
    assert set(PARAMETERS) == set(expected)
    for name, (default, desc) in PARAMETERS.items():
        k = expected[name]
        assert default == k.on("ros").default
        assert not desc.read_only, name  # settable before configure; the node refuses changes while configured
        assert ("Changeable while running" in desc.description) == k.runtime, name
        if k.range is not None:
            lo, hi = (
                (desc.integer_range or desc.floating_point_range)[0].from_value,
                (desc.integer_range or desc.floating_point_range)[0].to_value,
            )
            assert (lo, hi) == k.range, name
    from vpr_ros.params import RUNTIME

    assert RUNTIME == {"min_confidence", "diagnostics_period"}  # changeable at run time; the rest is read at configure
    assert "auto" in PARAMETERS["reranker"][1].description and "One of:" in PARAMETERS["reranker"][1].description


def test_surfaces_that_differ_say_why():
    diffs = {k.field: k for k in knobs(LocalizerConfig) if any(s.default != k.default for s in k.surfaces.values())}
    assert set(diffs) == {"reranker", "temporal"}
    assert diffs["reranker"].on("cli").default == "none" and diffs["reranker"].on("ros").default == "auto"
    assert diffs["temporal"].on("cli").default == "none" and diffs["temporal"].on("ros").default == "hmm"
    assert {k.on(s).default for k in knobs(LocalizerConfig) if k.field == "min_confidence" for s in ("cli", "ros")} == {
        0.5
    }
    for k in diffs.values():
        assert any(s.why for s in k.surfaces.values()), k.field


@pytest.mark.parametrize(
    "overrides,message",
    [
        (
            {"reranker": "magic"},
            "reranker='magic' is unknown; choose one of auto, dhe, dhe+lighterglue, geowarp, lighterglue, lightglue, "
            "loftr, none, ransac",
        ),
        ({"backend": "fast"}, "backend='fast' is invalid"),
        ({"top_k": 0}, "top_k=0 is out of range"),
        ({"min_confidence": float("nan")}, "not finite"),
        ({"device": "gpu"}, "device='gpu' is invalid"),
        ({"reranker": "ransac", "reranker_weights": "/x.torch"}, "takes no weights"),
        ({"estimate": {"sigma": 1}}, "unknown option"),
    ],
)
def test_validation_is_one_line(overrides, message):
    with pytest.raises(VprError, match=re.escape(message)):
        LocalizerConfig(**overrides).validate()


def test_validation_names_the_surface():
    with pytest.raises(VprError, match=r"^parameter reranker='x' is unknown"):
        LocalizerConfig(reranker="x").validate("ros")
    LocalizerConfig(device="cuda:1").validate()  # an indexed GPU is a valid device name


def test_reranker_conf_combines_explicit_knobs():
    c = LocalizerConfig(
        reranker="dhe", reranker_top_k=8, reranker_weights="h.pt", reranker_options={"threshold_cells": 2.0}
    )
    assert c.reranker_conf() == {"threshold_cells": 2.0, "top_k": 8, "weights": "h.pt"}


def test_cli_refuses_out_of_range_with_one_line(tmp_path):
    from conftest import assert_one_line_error, vpr

    r = vpr("eval", "--map", "m", "--queries", "q", "--rerank-k", "-5", ok=False)
    assert_one_line_error(r, "--rerank-k: -5 is out of range")


def test_choice_lists_exist_once():
    """Each choice list is written in one place: no other source file spells it out."""
    sources = [p for pkg in ("vpr_core", "vpr_ros") for p in (ROOT / pkg).rglob("*.py")]
    text = {p: p.read_text() for p in sources}
    for choices in (
        BACKENDS,
        RETRIEVALS,
        DEVICES,
        INDEX_KINDS,
        ("raw", "compressed"),
        ("reliable", "sensor_data", "system_default"),
    ):
        spelled = re.compile(r"[\(\[]\s*" + r",\s*".join(f'"{re.escape(c)}"' for c in choices) + r"\s*,?\s*[\)\]]")
        where = [p.relative_to(ROOT).as_posix() for p, t in text.items() if spelled.search(t)]
        assert len(where) <= 1, f"{choices} spelled out in {where}"
