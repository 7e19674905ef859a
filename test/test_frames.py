"""Frames around the estimate (vpr_core.localize.frames) and the localizer's prior and covariance models."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vpr_core.localize.frames import (
    CHI2_2D_95,
    base_from_camera,
    from_parent,
    inside_ellipse,
    map_to_vpr_map,
    to_parent,
)


def test_base_from_camera_lever_arm():
    cov = np.diag([4.0, 1.0])
    # a camera 0.5 m ahead and 0.2 m left of the base, robot facing north: the base is 0.5 m south, 0.2 m east
    xy, c = base_from_camera((10.0, 20.0), cov, (0.5, 0.2), yaw=math.pi / 2)
    assert xy == pytest.approx((10.2, 19.5)) and np.allclose(c, cov)
    # an uncertain heading widens the covariance across the lever arm, never shrinks it
    _, c2 = base_from_camera((10.0, 20.0), cov, (0.5, 0.2), yaw=math.pi / 2, yaw_var=0.1)
    assert np.all(np.linalg.eigvalsh(c2 - cov) >= -1e-12) and np.trace(c2) > np.trace(cov)
    # no heading: the position stays, each axis gains the circle's spread r^2 / 2
    xy, c3 = base_from_camera((10.0, 20.0), cov, (0.5, 0.2))
    assert xy == (10.0, 20.0) and np.allclose(c3, cov + np.eye(2) * 0.29 / 2)
    # the base is on that circle for every heading: its spread matches the added variance
    yaws = np.linspace(0, 2 * math.pi, 3600, endpoint=False)
    base = np.array([base_from_camera((0.0, 0.0), cov, (0.5, 0.2), y)[0] for y in yaws])
    assert np.allclose(np.cov(base.T, bias=True), np.eye(2) * 0.29 / 2, atol=1e-3)


def test_parent_frame_round_trip_and_ellipse():
    tf = (100.0, -50.0, 2.0, 0.3)
    cov = np.array([[9.0, 2.0], [2.0, 4.0]])
    p, c = to_parent((3.0, 4.0), cov, tf)
    back, cb = from_parent(p, c, tf)
    assert back == pytest.approx((3.0, 4.0)) and np.allclose(cb, cov)
    assert np.linalg.eigvalsh(c) == pytest.approx(np.linalg.eigvalsh(cov))  # a rotation keeps the ellipse
    rng = np.random.default_rng(0)
    pts = rng.multivariate_normal([1.0, 2.0], cov, size=20000)
    share = inside_ellipse(pts, np.array([1.0, 2.0]), cov).mean()
    assert abs(share - 0.95) < 0.01 and CHI2_2D_95 == pytest.approx(5.991, abs=1e-3)


def test_map_to_vpr_map_is_identity_at_the_origin():
    x, y, z, yaw = map_to_vpr_map((48.1, 11.5, 500.0), (48.1, 11.5, 500.0))
    assert max(abs(x), abs(y), abs(z), abs(yaw)) < 1e-6


def test_localizer_prior_and_covariance_models(street_map, street):
    from vpr_core.io.geoset import load_geoset
    from vpr_core.io.images import load_image
    from vpr_core.localize.localizer import Localizer
    from vpr_core.map.format import load_map

    vmap = load_map(street_map)
    q = load_geoset(street / "queries", frame=load_geoset(street / "database").frame)
    img = load_image(q.paths[0])
    mix = Localizer(vmap, device="cpu").localize(img)
    inl = Localizer(vmap, device="cpu", covariance="inlier").localize(img)
    assert (mix.east, mix.north, mix.confidence) == (inl.east, inl.north, inl.confidence)  # only the covariance
    assert np.trace(inl.covariance[:2, :2]) <= np.trace(mix.covariance[:2, :2]) + 1e-9
    # a prior far from the camera: every candidate, and so the answer, lies in its ellipse
    far = int(np.argmax(np.hypot(vmap.east - q.east[0], vmap.north - q.north[0])))
    mean, cov = np.array([vmap.east[far], vmap.north[far]]), np.eye(2) * 9.0
    est = Localizer(vmap, device="cpu").localize(img, prior=(mean, cov))
    inside = inside_ellipse(vmap.xy[[m.index for m in est.matches]], mean, cov)
    assert inside.all() and len(est.matches) == int(inside_ellipse(vmap.xy, mean, cov).sum())
    # an ellipse holding no map image leaves the search whole
    empty = Localizer(vmap, device="cpu").localize(img, prior=(np.array([1e5, 1e5]), np.eye(2)))
    assert (empty.east, empty.north) == (mix.east, mix.north)


def test_heading_from_matches_on_the_rendered_street(street_map, street):
    """The street's map images face east (heading field of their names); each query is turned by a known yaw.
    With the camera's field of view the localizer gives the query's heading and a measured variance."""
    from vpr_core.demo import generate
    from vpr_core.io.geoset import load_geoset
    from vpr_core.io.images import load_image
    from vpr_core.localize.heading import wrap
    from vpr_core.localize.localizer import Localizer
    from vpr_core.localize.outputs import pose_fields
    from vpr_core.map.format import load_map

    vmap = load_map(street_map)
    assert vmap.headings is not None and vmap.headings.source == "geotags" and np.allclose(vmap.headings.yaw, 0.0)
    _, truth, _ = generate(street / "unused", seed=3, n_map=24, n_query=10, write=False)
    q = load_geoset(street / "queries")
    loc = Localizer(vmap, device="cpu", reranker="ransac", camera_fov=90.0)
    errors, z = [], []
    for path, yaw in zip(q.paths, truth.yaw):
        e = loc.localize(load_image(path))
        if math.isfinite(e.yaw):
            errors.append(abs(wrap(e.yaw - yaw)))
            z.append(errors[-1] / math.sqrt(e.yaw_var))
            assert e.yaw_inliers >= 30 and "heading" in e.timings
    assert len(errors) >= 8 and math.degrees(float(np.median(errors))) <= 5.0, np.degrees(errors)
    assert np.mean(np.array(z) <= 3.0) >= 0.8  # the measured variance covers the error
    f = pose_fields(e)
    assert f.yaw == e.yaw and np.array(f.covariance).reshape(6, 6)[5, 5] == pytest.approx(e.yaw_var)
    # without a field of view (or without grids) the heading stays unknown, as before
    blind = Localizer(vmap, device="cpu", reranker="ransac").localize(load_image(q.paths[0]))
    assert math.isnan(blind.yaw) and np.array(pose_fields(blind).covariance).reshape(6, 6)[5, 5] >= 1e5
    assert np.array(pose_fields(blind, unknown_yaw_var=math.pi**2).covariance).reshape(6, 6)[5, 5] == math.pi**2


def test_map_headings_from_the_direction_of_travel():
    from vpr_core.store.parts import Headings

    east = np.array([0.0, 10.0, 5.0, 15.0])  # captured in the order 0, 2, 1, 3: east along y = x
    north = np.array([0.0, 10.0, 5.0, 15.0])
    h = Headings.from_travel(east, north, np.array([0, 2, 1, 3]))
    assert h.source == "travel" and np.allclose(h.yaw, math.pi / 4)
    standing = Headings.from_travel(np.zeros(3), np.zeros(3), np.arange(3))
    assert standing is None  # no motion, no heading


def test_unknown_headings_survive_the_map_file(street_map, tmp_path):
    """NaN is "unknown" in heading.yaw (travel headings where the camera stood still): the map saves, verifies and
    loads with them (a map with a pair of images at one place once failed to load)."""
    from vpr_core.map.format import load_map, save_map, verify_map
    from vpr_core.store.parts import Headings

    m = load_map(street_map)
    yaw = np.zeros(len(m))
    yaw[[0, 5]] = np.nan
    m.headings = Headings(yaw, "travel")
    save_map(m, tmp_path / "m.vprmap")
    verify_map(tmp_path / "m.vprmap")
    back = load_map(tmp_path / "m.vprmap").headings
    assert back.source == "travel" and np.isnan(back.yaw[[0, 5]]).all() and np.isfinite(back.yaw).sum() == len(m) - 2
