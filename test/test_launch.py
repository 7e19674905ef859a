"""launch/localize.launch.py run for real: colcon-built package, the real ros2/launch + launch_ros (Jazzy), DDS.

The launch system is not on PyPI; ../shared/ros2_launch holds its unmodified sources. Without it (a user's
clone) the test skips with that reason.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from vpr_ros.harness import Peer, new_domain, ros_env

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_SRC = ROOT.parent / "shared" / "ros2_launch"

pytestmark = pytest.mark.skipif(
    not (LAUNCH_SRC / "run_launch.py").is_file(),
    reason=f"the ROS 2 launch sources are not at {LAUNCH_SRC} (they are not on PyPI)",
)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    ws = tmp_path_factory.mktemp("ws")
    (ws / "src").mkdir()
    (ws / "src" / "vpr_ros").symlink_to(ROOT)
    colcon = Path(sys.executable).with_name("colcon")
    r = subprocess.run([str(colcon), "build", "--base-paths", "src"], cwd=ws, capture_output=True, text=True,
                       env=dict(os.environ, PYTHONWARNINGS="ignore"), timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    return ws / "install" / "vpr_ros"


def launch(installed: Path, domain: int, seconds: float, log: Path, **args: str) -> subprocess.Popen:
    site = next((installed / "lib").glob("python3*/site-packages"))
    env = ros_env(domain) | {
        "PYTHONPATH": os.pathsep.join([str(LAUNCH_SRC), str(site)]),
        "AMENT_PREFIX_PATH": str(installed),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    cmd = [
        sys.executable,
        str(LAUNCH_SRC / "run_launch.py"),
        str(installed / "share/vpr_ros/launch/localize.launch.py"),
    ]
    cmd += [str(seconds)] + [f"{k}:={v}" for k, v in args.items()]
    # a session of its own: stop() ends launch and every node it started (a SIGTERM to launch alone left the node
    # running after the test, in its DDS domain, for the rest of the machine's life)
    return subprocess.Popen(cmd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the launch process group, as Ctrl-C would reach it; SIGKILL what is left after 30 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(30)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def test_launch_file_runs_the_managed_node(installed, street_map, street, tmp_path):
    from rcl_interfaces.srv import GetParameters

    from vpr_core.io.images import load_image

    config = yaml.safe_load((installed / "share/vpr_ros/config/localize.yaml").read_text())
    config["/**"]["ros__parameters"] |= {"reranker": "none", "device": "cpu"}  # a config:= of one's own
    cfg = tmp_path / "mine.yaml"
    cfg.write_text(yaml.safe_dump(config))  # keyed /** as shipped: it applies under the namespace below
    domain = new_domain()
    log = tmp_path / "launch.log"
    proc = launch(installed, domain, 90, log, map=str(street_map), config=str(cfg), image_topic="cam/image",
                  namespace="robot1", use_sim_time="true")  # fmt: skip
    node = "/robot1/vpr_localizer"
    peer = Peer(domain, topic="/robot1/cam/image", node_name="robot1/vpr_localizer")
    try:
        deadline = time.time() + 60
        while time.time() < deadline and "listening on" not in log.read_text():
            assert proc.poll() is None, log.read_text()
            time.sleep(0.2)
        assert peer.state(node) == "active"  # autostart: configured and activated through the lifecycle
        peer.wait_matched()
        img = load_image(sorted((street / "queries").iterdir())[0])
        peer.pub.publish(peer.raw(img, 0))
        assert peer.wait_for(lambda: len(peer.fixes) == 1, 30), log.read_text()
        assert peer.wait_for(lambda: peer.last_diag().get("reranker") == "none", 10)  # the config file applied
        got = peer.call(
            GetParameters, f"{node}/get_parameters", GetParameters.Request(names=["map_path", "use_sim_time"])
        )
        assert got.values[0].string_value == str(street_map) and got.values[1].bool_value is True
        assert "listening on /robot1/cam/image" in log.read_text()  # namespace and image_topic honoured
    finally:
        peer.close()
        stop(proc)
    assert "Traceback" not in log.read_text()

    bad = tmp_path / "bad.log"
    proc = launch(installed, new_domain(), 40, bad, map="/nonexistent/route.vprmap")
    deadline = time.time() + 60
    while time.time() < deadline and "process has died" not in bad.read_text():
        time.sleep(0.5)
    stop(proc)
    out = bad.read_text()
    lines = [ln for ln in out.splitlines() if "map not found" in ln]
    assert len(lines) == 1 and "cannot configure" in lines[0] and "exit code 1" in out and "Traceback" not in out, out


def test_launch_arguments_respawn_autostart_log_level(installed, street_map, tmp_path):
    """respawn:=true restarts a node that exits (a map that does not load exits 1); autostart:=false leaves it
    unconfigured for a lifecycle manager; log_level reaches the node (debug lines appear)."""
    log = tmp_path / "respawn.log"
    proc = launch(installed, new_domain(), 40, log, map="/nonexistent/route.vprmap", respawn="true")
    deadline = time.time() + 60
    while time.time() < deadline and log.read_text().count("map not found") < 2:
        time.sleep(0.5)
    stop(proc)
    out = log.read_text()
    assert out.count("map not found") >= 2 and "Traceback" not in out, out

    domain = new_domain()
    log = tmp_path / "manual.log"
    proc = launch(installed, domain, 60, log, map=str(street_map), autostart="false", log_level="debug")
    peer = Peer(domain)
    try:
        deadline = time.time() + 60
        state = ""
        while time.time() < deadline and state != "unconfigured":
            assert proc.poll() is None, log.read_text()
            with contextlib.suppress(TimeoutError):
                state = peer.state("/vpr_localizer")
            time.sleep(0.5)
        assert state == "unconfigured"  # nothing configured it
        assert "[DEBUG]" in log.read_text()
    finally:
        peer.close()
        stop(proc)
