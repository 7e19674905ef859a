"""Drive the node over real DDS: a node subprocess and a peer that publishes frames and records outputs.

Used by the tests, `make demo` and bench/bench_node.py.

Each run gets its own ROS_DOMAIN_ID and keeps discovery on this host, so runs do not
see each other or the network.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseWithCovarianceStamped
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image, NavSatFix
from std_msgs.msg import Float32

_domains = itertools.count((os.getpid() % 40) * 5 + 1)


def new_domain() -> int:
    return next(_domains) % 200 + 1


def ros_env(domain: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        ROS_DOMAIN_ID=str(domain),
        ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
        PYTHONUNBUFFERED="1",
        RCUTILS_COLORIZED_OUTPUT="0",
    )
    return env


class NodeProcess:
    """``python -m vpr_ros.localize_node`` with parameters, its log in a file."""

    def __init__(self, domain: int, log: Path, **params) -> None:
        args = [sys.executable, "-m", "vpr_ros.localize_node", "--ros-args"]
        for k, v in params.items():
            v = str(v).lower() if isinstance(v, bool) else v
            args += ["-p", f"{k}:={v}"]
        self.log = log
        self._f = log.open("w")
        self.proc = subprocess.Popen(args, env=ros_env(domain), stdout=self._f, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 60.0) -> None:
        t = time.time()
        while time.time() - t < timeout:
            if "listening on" in self.log.read_text():
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"node exited {self.proc.returncode}: {self.log.read_text()}")
            time.sleep(0.1)
        raise TimeoutError(self.log.read_text())

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return -1

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(2)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._f.close()
        return self.log.read_text()


class Peer:
    """The test's side: publishes frames, records everything the node publishes."""

    def __init__(
        self,
        domain: int,
        topic: str = "/cam/image",
        compressed: bool = False,
        node_name: str = "vpr_localizer",
        pub_qos: QoSProfile | None = None,
    ) -> None:
        self.ctx = Context()
        rclpy.init(context=self.ctx, domain_id=domain)
        self.node = rclpy.create_node("vpr_test_peer", context=self.ctx)
        qos = pub_qos or QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.pub = self.node.create_publisher(CompressedImage if compressed else Image, topic, qos)
        self.fixes: list[tuple[float, NavSatFix]] = []
        self.poses: list[PoseWithCovarianceStamped] = []
        self.conf: list[float] = []
        self.diags: list[DiagnosticArray] = []
        out = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        self.node.create_subscription(
            NavSatFix, f"/{node_name}/fix", lambda m: self.fixes.append((time.monotonic(), m)), out
        )
        self.node.create_subscription(PoseWithCovarianceStamped, f"/{node_name}/pose", self.poses.append, out)
        self.node.create_subscription(Float32, f"/{node_name}/confidence", self._on_confidence, out)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self.diags.append, out)
        self.extra: dict[str, list] = {}
        self._clients: dict[str, Any] = {}
        self.executor = SingleThreadedExecutor(context=self.ctx)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _on_confidence(self, msg: Float32) -> None:
        self.conf.append(msg.data)

    def _spin(self) -> None:
        while self.ctx.ok():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:  # context shut down under us
                return

    def subscribe(self, msg_type, topic: str) -> list:
        box: list = []
        self.node.create_subscription(
            msg_type, topic, box.append, QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        )
        return box

    def call(self, srv_type, name: str, request, timeout: float = 30.0):
        """Call a service of the node and wait for the answer (the peer spins in its own thread)."""
        client = self._clients.get(name)
        if client is None:
            client = self._clients[name] = self.node.create_client(srv_type, name)
        if not client.wait_for_service(timeout_sec=timeout):
            raise TimeoutError(f"service {name} not available")
        future = client.call_async(request)
        t = time.time()
        while not future.done():
            if time.time() - t > timeout:
                raise TimeoutError(f"service {name} did not answer")
            time.sleep(0.01)
        return future.result()

    def lifecycle(self, transition: str | int, node: str = "/vpr_localizer") -> bool:
        """``~/change_state`` by label (configure, activate, ...) or id; True when the transition succeeded."""
        from lifecycle_msgs.msg import Transition
        from lifecycle_msgs.srv import ChangeState

        req = ChangeState.Request()
        req.transition = Transition(id=transition) if isinstance(transition, int) else Transition(label=transition)
        return bool(self.call(ChangeState, f"{node}/change_state", req).success)

    def state(self, node: str = "/vpr_localizer") -> str:
        from lifecycle_msgs.srv import GetState

        return str(self.call(GetState, f"{node}/get_state", GetState.Request()).current_state.label)

    def set_param(self, name: str, value, node: str = "/vpr_localizer"):
        """Set one parameter through the standard service; returns the SetParametersResult."""
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter

        req = SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()])
        return self.call(SetParameters, f"{node}/set_parameters", req).results[0]

    def wait_matched(self, timeout: float = 20.0) -> None:
        t = time.time()
        while self.pub.get_subscription_count() == 0:
            if time.time() - t > timeout:
                raise TimeoutError("node never subscribed")
            time.sleep(0.05)

    def stamp(self, i: int):
        from builtin_interfaces.msg import Time

        return Time(sec=1000 + i, nanosec=123_000 + i)

    def raw(self, rgb: np.ndarray, i: int, encoding: str = "rgb8") -> Image:
        msg = Image(height=rgb.shape[0], width=rgb.shape[1], encoding=encoding, step=rgb.shape[1] * 3)
        msg.header.stamp = self.stamp(i)
        msg.header.frame_id = "camera"
        msg.data = rgb.tobytes()
        return msg

    def wait_for(self, cond, timeout: float = 20.0) -> bool:
        t = time.time()
        while time.time() - t < timeout:
            if cond():
                return True
            time.sleep(0.02)
        return False

    def last_diag(self) -> dict[str, str]:
        for arr in reversed(self.diags):
            for st in arr.status:
                if "vpr_localizer" in st.name:
                    return {kv.key: kv.value for kv in st.values} | {
                        "_level": int.from_bytes(st.level, "little") if isinstance(st.level, bytes) else int(st.level),
                        "_message": st.message,
                    }
        return {}

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.ctx)
        self._thread.join(timeout=2)


@contextmanager
def running_node(
    log: Path, peer_kwargs: dict | None = None, domain: int | None = None, **params
) -> Iterator[tuple[NodeProcess, Peer]]:
    """A started node and a connected peer on a private domain; stops both, and fails on a traceback in the node's
    log."""
    domain = domain or new_domain()
    node = NodeProcess(domain, log, **params)
    peer = None
    try:
        node.wait_ready()
        peer = Peer(domain, **(peer_kwargs or {}))
        yield node, peer
    finally:
        if peer is not None:
            peer.close()
        out = node.stop()
        if "Traceback" in out:
            raise AssertionError(f"node raised:\n{out}")
