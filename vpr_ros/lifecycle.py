"""Two things rclpy's Jazzy ``LifecycleNode`` does not offer, built on its public API only.

* ``current_state``: the state's label, read through the node's own ``~/get_state`` handler (``Node.services`` and
  ``Service.callback`` are public), so the node never keeps a second copy of its state.
* ``guard_change_state``: ``~/change_state`` with a transition that is impossible in the current state raises
  ``RCLError`` inside rclpy's handler in Jazzy (ros2/rclpy#1209; fixed upstream by ros2/rclpy#1319, not in the
  Jazzy wheels), which ends the executor and with it the node. The handler is wrapped through the public
  ``Service.callback`` so the caller gets ``success: false`` and the node keeps serving.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lifecycle_msgs.srv import ChangeState, GetState
from rclpy._rclpy_pybind11 import RCLError
from rclpy.lifecycle import LifecycleNode
from rclpy.service import Service

__all__ = ["current_state", "guard_change_state"]


def _service(node: LifecycleNode, srv_type: type) -> Service:
    for srv in node.services:
        if srv.srv_type is srv_type:  # one service of each lifecycle type per node
            return srv
    raise RuntimeError(f"{node.get_name()}: no lifecycle {srv_type.__name__} service (communication interface off?)")


def current_state(node: LifecycleNode) -> str:
    """'unconfigured', 'inactive', 'active', 'finalized' or a transition state ('configuring', ...)."""
    resp: Any = _service(node, GetState).callback(GetState.Request(), GetState.Response())
    return str(resp.current_state.label)


def guard_change_state(node: LifecycleNode, refused: Callable[[ChangeState.Request, str], None]) -> None:
    """Refuse an impossible transition with ``success: false`` (``refused`` is told why) instead of a crash."""
    srv = _service(node, ChangeState)
    inner = srv.callback

    def guarded(req: ChangeState.Request, resp: ChangeState.Response) -> ChangeState.Response:
        try:
            return inner(req, resp)
        except (RCLError, RuntimeError) as e:
            refused(req, str(e).splitlines()[0] if str(e) else type(e).__name__)
            resp.success = False
            return resp

    srv.callback = guarded
