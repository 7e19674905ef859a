"""The ament_python package: colcon build installs what `ros2 launch`/`ros2 run` need.

launch_ros is not pip-installable, so the launch file is checked statically.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from vpr_ros.localize_node import PARAMETERS

ROOT = Path(__file__).resolve().parents[1]


def test_colcon_build(tmp_path):
    colcon = Path(sys.executable).with_name("colcon")
    src = tmp_path / "src"
    src.mkdir()
    (src / "vpr_ros").symlink_to(ROOT)
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    r = subprocess.run(
        [str(colcon), "build", "--base-paths", "src"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    inst = tmp_path / "install" / "vpr_ros"
    share = inst / "share" / "vpr_ros"
    for rel in ("launch/localize.launch.py", "config/localize.yaml", "package.xml"):
        assert (share / rel).is_file(), rel
    assert (inst / "share" / "ament_index" / "resource_index" / "packages" / "vpr_ros").is_file()
    exe = inst / "lib" / "vpr_ros" / "localize_node"
    assert exe.is_file() and os.access(exe, os.X_OK)  # what `ros2 run vpr_ros localize_node` executes
    site = next((inst / "lib").glob("python3*/site-packages"))
    assert os.access(inst / "lib" / "vpr_ros" / "player", os.X_OK)  # `ros2 run vpr_ros player BAG`
    check = (
        "import vpr_ros.localize_node, vpr_core.cli, vpr_core.rerank.dhe as d; "
        "p = d.WEIGHTS_DIR / d.SHIPPED_HEADS['xfeat-vlad']; assert p.is_file() and p.stat().st_size > 1e6, p"
    )
    r = subprocess.run(
        [sys.executable, "-c", check], env=dict(env, PYTHONPATH=str(site)), capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and getattr(n.func, "id", getattr(n.func, "attr", None)) == name
    ]


def test_launch_file_static():
    tree = ast.parse((ROOT / "launch" / "localize.launch.py").read_text())
    assert any(isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description" for n in tree.body)
    args = {c.args[0].value for c in _calls(tree, "DeclareLaunchArgument")}
    assert args == {"map", "config", "image_topic", "use_sim_time", "namespace", "autostart", "respawn", "log_level"}
    (node,) = _calls(tree, "Node")
    kw = {k.arg: k.value for k in node.keywords}
    assert ast.unparse(kw["respawn"]) == "LaunchConfiguration('respawn')" and "respawn_delay" in kw
    assert ast.unparse(kw["ros_arguments"]) == "['--log-level', LaunchConfiguration('log_level')]"
    assert (
        kw["package"].value == "vpr_ros"
        and kw["executable"].value == "localize_node"
        and kw["name"].value == "vpr_localizer"
    )
    setup = (ROOT / "setup.py").read_text()
    assert "localize_node = vpr_ros.localize_node:main" in setup
    params_src = ast.unparse(kw["parameters"])
    for key in ("LaunchConfiguration('config')", "'map_path'", "'image_topic'", "'use_sim_time'", "'autostart'"):
        assert key in params_src, key
    paths = [ast.unparse(c) for c in _calls(tree, "join")]
    assert any("'config'" in p and "'localize.yaml'" in p for p in paths)


def test_config_matches_node_parameters():
    conf = yaml.safe_load((ROOT / "config" / "localize.yaml").read_text())
    assert list(conf) == ["/**"]  # applies under any namespace (a `vpr_localizer:` key is ignored under one)
    params = conf["/**"]["ros__parameters"]
    from vpr_ros.params import OPTIONAL

    assert set(params) == set(PARAMETERS) - OPTIONAL, set(params) ^ (set(PARAMETERS) - OPTIONAL)
    text = (ROOT / "config" / "localize.yaml").read_text()
    assert OPTIONAL and all(f"# {name}: [" in text for name in OPTIONAL)  # shown, commented out
    for k, v in params.items():
        assert type(v) is type(PARAMETERS[k][0]), (k, v)


#: Parameters robot_localization (ros2 branch, Jazzy) declares, read from its sources: ros_filter.cpp
#: (RosFilter::loadParams, the filter and every sensor) and navsat_transform.cpp (NavSatTransform's constructor).
RL_FILTER = {
    "use_sim_time", "print_diagnostics", "gravitational_acceleration", "debug", "debug_out_file", "map_frame",
    "odom_frame", "base_link_frame", "base_link_frame_output", "world_frame", "tf_prefix", "publish_tf",
    "publish_acceleration", "permit_corrected_publication", "transform_time_offset", "transform_timeout",
    "frequency", "sensor_timeout", "two_d_mode", "smooth_lagged_data", "history_length", "reset_on_time_jump",
    "use_control", "stamped_control", "control_timeout", "control_config", "acceleration_limits",
    "acceleration_gains", "deceleration_limits", "deceleration_gains", "dynamic_process_noise_covariance",
    "initial_state", "disabled_at_startup", "process_noise_covariance", "initial_estimate_covariance",
}  # fmt: skip
RL_SENSOR = {  # per input kind, the suffixes after e.g. "odom0"
    "odom": {"", "_config", "_differential", "_relative", "_queue_size", "_pose_rejection_threshold",
             "_twist_rejection_threshold", "_nodelay"},
    "pose": {"", "_config", "_differential", "_relative", "_queue_size", "_rejection_threshold", "_nodelay"},
    "twist": {"", "_config", "_queue_size", "_rejection_threshold", "_nodelay"},
    "imu": {"", "_config", "_differential", "_relative", "_queue_size", "_pose_rejection_threshold",
            "_twist_rejection_threshold", "_linear_acceleration_rejection_threshold",
            "_remove_gravitational_acceleration", "_nodelay"},
}  # fmt: skip
RL_NAVSAT = {
    "use_sim_time", "magnetic_declination_radians", "yaw_offset", "zero_altitude", "publish_filtered_gps",
    "use_odometry_yaw", "wait_for_datum", "use_local_cartesian", "frequency", "delay", "transform_timeout",
    "broadcast_cartesian_transform", "broadcast_cartesian_transform_as_parent_frame", "datum", "datum_at_sea_level",
}  # fmt: skip


def rl_unknown(params: dict, navsat: bool = False) -> list[str]:
    """The keys of a parameter block that robot_localization does not declare (silently ignored there)."""
    import re

    if navsat:
        return sorted(set(params) - RL_NAVSAT)
    bad = []
    for key in params:
        m = re.fullmatch(r"(odom|pose|twist|imu)(\d+)(.*)", key)
        if not (key in RL_FILTER or (m and m.group(3) in RL_SENSOR[m.group(1)])):
            bad.append(key)
    return bad


def test_fusion_recipe_keys_are_robot_localization_parameters():
    """A misspelt key is silently ignored by robot_localization (``odom1_rejection_threshold``: no gate at all)."""
    assert rl_unknown({"odom1_rejection_threshold": 5.0, "pose0_rejection_threshold": 5.0}) == [
        "odom1_rejection_threshold"
    ]
    assert rl_unknown({"wait_for_datum": True, "datum_yaw": 0.0}, navsat=True) == ["datum_yaw"]
    pose = yaml.safe_load((ROOT / "config" / "fusion_pose.yaml").read_text())
    nav = yaml.safe_load((ROOT / "config" / "fusion_navsat.yaml").read_text())
    assert list(pose) == ["ekf_filter_node_map"] and set(nav) == {"ekf_filter_node_map", "navsat_transform"}
    for block, navsat in ((pose["ekf_filter_node_map"], False), (nav["ekf_filter_node_map"], False),
                          (nav["navsat_transform"], True)):  # fmt: skip
        params = block["ros__parameters"]
        assert rl_unknown(params, navsat) == []
        for key, value in params.items():  # one type per array (rcl's parser refuses a mix; "1e4" is a string)
            if isinstance(value, list):
                assert len({type(v) for v in value}) == 1, key


def test_fusion_recipes_match_the_node_defaults():
    """config/fusion_*.yaml and launch/fusion.launch.py connect the topics and frames the node publishes by default,
    with a gate on every VPR input, a wide initial covariance, and the datum fixed (not the first fix's)."""
    import numpy as np

    from vpr_ros.params import NodeSettings

    node = "/vpr_localizer"  # the node's name in localize.launch.py
    pose = yaml.safe_load((ROOT / "config" / "fusion_pose.yaml").read_text())["ekf_filter_node_map"]["ros__parameters"]
    assert pose["pose0"] == f"{node}/pose" and pose["world_frame"] == "map"
    assert pose["pose0_config"][:6] == [True, True, False, False, False, False] and not any(pose["pose0_config"][6:])
    assert pose["smooth_lagged_data"] is True and pose["history_length"] >= 1.5  # > the node's p95 latency on CPU
    assert 0 < pose["pose0_rejection_threshold"] < 10
    p0 = np.array(pose["initial_estimate_covariance"], dtype=float).reshape(15, 15)
    assert (p0 == np.diag(np.diag(p0))).all() and (np.diag(p0) > 0).all() and p0[0, 0] >= 1e3 and p0[1, 1] >= 1e3
    nav = yaml.safe_load((ROOT / "config" / "fusion_navsat.yaml").read_text())
    t = nav["navsat_transform"]["ros__parameters"]
    assert t["zero_altitude"] is True and t["use_odometry_yaw"] is False and t["delay"] > 0
    assert t["wait_for_datum"] is True and len(t["datum"]) == 3 and t["use_local_cartesian"] is True
    ekf = nav["ekf_filter_node_map"]["ros__parameters"]
    assert ekf["odom1"] == "odometry/gps" and ekf["odom1_config"][:2] == [True, True] and ekf["smooth_lagged_data"]
    assert 0 < ekf["odom1_pose_rejection_threshold"] < 10
    tree = ast.parse((ROOT / "launch" / "fusion.launch.py").read_text())
    consts = {
        n.targets[0].id: n.value.value
        for n in tree.body
        if isinstance(n, ast.Assign) and isinstance(n.targets[0], ast.Name) and isinstance(n.value, ast.Constant)
    }
    assert consts["VPR_MAP_FRAME"] == NodeSettings().map_frame == "vpr_map"
    assert consts["VPR_FIX_TOPIC"] == f"{node}/fix"
    assert consts["IMU_TOPIC"] == ekf["imu0"]  # navsat_transform listens on `imu`: remapped to the EKF's IMU
    src = (ROOT / "launch" / "fusion.launch.py").read_text()
    assert '("gps/fix", VPR_FIX_TOPIC)' in src and '("imu", IMU_TOPIC)' in src
    assert '"--child-frame-id", VPR_MAP_FRAME' in src and '"datum": [lat, lon, yaw]' in src
    for name in ("fusion_pose.yaml", "fusion_navsat.yaml", "localize.yaml"):
        assert name in src
    # the node as the recipes run it: the inlier covariance at the confidence bench/bench_fusion.py measured
    node_params = ast.literal_eval(
        next(
            ast.unparse(n.value)
            for n in tree.body
            if isinstance(n, ast.Assign) and n.targets[0].id == "FUSION_NODE_PARAMS"
        )
    )
    assert set(node_params) <= set(PARAMETERS)
    bench = (ROOT / "bench" / "bench_fusion.py").read_text()
    assert f'"inlier": {node_params["min_confidence"]}' in bench and node_params["covariance_model"] == "inlier"


def test_fusion_launch_datum_and_transform(street_map):
    """What fusion.launch.py computes (vpr_core.localize.frames): the datum is the map's origin from the file header,
    or the launch argument; map -> vpr_map is the map origin's ENU position at that datum, turned by map_yaw."""
    import math

    from vpr_core.errors import VprError
    from vpr_core.localize.frames import datum_of, map_to_vpr_map
    from vpr_core.map.format import load_map

    origin = load_map(street_map).origin
    assert datum_of(str(street_map), "") == pytest.approx(origin)
    assert datum_of(str(street_map), "45.5, 9.25") == (45.5, 9.25, 0.0)
    with pytest.raises(VprError, match="lat,lon"):
        datum_of(str(street_map), "45.5")
    lat, lon, h = origin
    x, y, z, yaw = map_to_vpr_map((lat - 0.001, lon - 0.002, h), origin, 0.0)
    assert x == pytest.approx(0.002 * 111320 * math.cos(math.radians(lat)), rel=0.01)
    assert y == pytest.approx(0.001 * 110900, rel=0.01) and abs(yaw) < 1e-4 and abs(z) < 1.0
    # a map frame whose x axis points north: the origin east of the datum is at -y there
    x2, y2, _, yaw2 = map_to_vpr_map((lat - 0.001, lon - 0.002, h), origin, math.pi / 2)
    assert (x2, y2) == pytest.approx((y, -x), abs=1e-6) and yaw2 == pytest.approx(-math.pi / 2, abs=1e-4)
    src = (ROOT / "launch" / "fusion.launch.py").read_text()
    assert "datum_of(" in src and "map_to_vpr_map(" in src


def test_package_xml_declares_every_ros_import():
    """``rosdep install`` installs what package.xml names: every ROS package vpr_ros and the launch files import
    (tf2_ros's Python module comes from tf2_ros_py), and the packages the launch files start."""
    import re
    import xml.etree.ElementTree as ET

    deps = {e.text for e in ET.parse(ROOT / "package.xml").getroot().iter("exec_depend")}
    ros_modules = {"rclpy", "rcl_interfaces", "rosgraph_msgs", "builtin_interfaces", "sensor_msgs", "geometry_msgs",
                   "std_msgs", "diagnostic_msgs", "std_srvs", "lifecycle_msgs", "nav_msgs", "tf2_ros",
                   "ament_index_python", "launch", "launch_ros"}  # fmt: skip
    key = {"tf2_ros": "tf2_ros_py"}
    files = [*(ROOT / "vpr_ros").glob("*.py"), *(ROOT / "launch").glob("*.py")]
    imported = {
        m for f in files for m in re.findall(r"^\s*(?:from|import) ([a-z_0-9]+)", f.read_text(), re.M)
    } & ros_modules
    assert imported >= {"rclpy", "launch_ros", "rcl_interfaces"}
    assert {key.get(m, m) for m in imported} <= deps, {key.get(m, m) for m in imported} - deps
    started = set(re.findall(r'package="([a-z_0-9]+)"', (ROOT / "launch" / "fusion.launch.py").read_text()))
    assert started - {"vpr_ros"} <= deps, started - deps
    assert {"python3-numpy", "python3-opencv", "pymap3d-pip"} <= deps
