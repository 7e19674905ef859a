"""Shared fixtures: a small synthetic street (rendered, not downloaded) and a map of it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(2)
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")


@pytest.fixture(scope="session")
def street(tmp_path_factory) -> Path:
    """``database/`` (24 frames, 2 m apart) and ``queries/`` (10 frames, offset, darker, occluded)."""
    from vpr_core.demo import generate

    root = tmp_path_factory.mktemp("street")
    generate(root, seed=3, n_map=24, n_query=10)
    return root


@pytest.fixture(scope="session")
def street_map(street, tmp_path_factory) -> Path:
    from vpr_core.io.geoset import load_geoset
    from vpr_core.map.build import build_and_save

    out = tmp_path_factory.mktemp("maps") / "street.vprmap"
    build_and_save(
        load_geoset(street / "database"), out, device="cpu", source=str(street / "database")
    )  # as `vpr map build` records it
    return out
