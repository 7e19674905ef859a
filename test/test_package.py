"""The ament_python package: colcon build installs what `ros2 launch`/`ros2 run` need.

launch_ros is not pip-installable, so the launch file is checked statically.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

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
    assert args == {"map", "config", "image_topic", "use_sim_time", "namespace"}
    (node,) = _calls(tree, "Node")
    kw = {k.arg: k.value for k in node.keywords}
    assert (
        kw["package"].value == "vpr_ros"
        and kw["executable"].value == "localize_node"
        and kw["name"].value == "vpr_localizer"
    )
    setup = (ROOT / "setup.py").read_text()
    assert "localize_node = vpr_ros.localize_node:main" in setup
    params_src = ast.unparse(kw["parameters"])
    for key in ("LaunchConfiguration('config')", "'map_path'", "'image_topic'", "'use_sim_time'"):
        assert key in params_src, key
    paths = [ast.unparse(c) for c in _calls(tree, "join")]
    assert any("'config'" in p and "'localize.yaml'" in p for p in paths)


def test_config_matches_node_parameters():
    conf = yaml.safe_load((ROOT / "config" / "localize.yaml").read_text())
    params = conf["vpr_localizer"]["ros__parameters"]
    assert set(params) == set(PARAMETERS), set(params) ^ set(PARAMETERS)
    for k, v in params.items():
        assert type(v) is type(PARAMETERS[k][0]), (k, v)


def test_fusion_recipes_match_the_node_defaults():
    """config/fusion_*.yaml and launch/fusion.launch.py connect the topics and frames the node publishes by default."""
    from vpr_ros.params import NodeSettings

    node = "/vpr_localizer"  # the node's name in localize.launch.py
    pose = yaml.safe_load((ROOT / "config" / "fusion_pose.yaml").read_text())["ekf_filter_node_map"]["ros__parameters"]
    assert pose["pose0"] == f"{node}/pose" and pose["world_frame"] == "map"
    assert pose["pose0_config"][:6] == [True, True, False, False, False, False] and not any(pose["pose0_config"][6:])
    assert pose["smooth_lagged_data"] is True and pose["history_length"] >= 1.5  # > the node's p95 latency on CPU
    nav = yaml.safe_load((ROOT / "config" / "fusion_navsat.yaml").read_text())
    t = nav["navsat_transform"]["ros__parameters"]
    assert t["zero_altitude"] is True and t["use_odometry_yaw"] is False and t["delay"] > 0
    ekf = nav["ekf_filter_node_map"]["ros__parameters"]
    assert ekf["odom1"] == "odometry/gps" and ekf["odom1_config"][:2] == [True, True] and ekf["smooth_lagged_data"]
    tree = ast.parse((ROOT / "launch" / "fusion.launch.py").read_text())
    consts = {
        n.targets[0].id: n.value.value
        for n in tree.body
        if isinstance(n, ast.Assign) and isinstance(n.targets[0], ast.Name) and isinstance(n.value, ast.Constant)
    }
    assert consts["VPR_MAP_FRAME"] == NodeSettings().map_frame == "vpr_map"
    assert consts["VPR_FIX_TOPIC"] == f"{node}/fix"
    src = (ROOT / "launch" / "fusion.launch.py").read_text()
    assert '("gps/fix", VPR_FIX_TOPIC)' in src and '"--child-frame-id", VPR_MAP_FRAME' in src
    for name in ("fusion_pose.yaml", "fusion_navsat.yaml", "localize.launch.py"):
        assert name in src
