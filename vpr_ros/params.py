"""The node's parameters, generated: the pipeline's from ``LocalizerConfig``, the node's own from ``NodeSettings``.

Both are dataclasses of ``vpr_core.config.knob`` fields, so a parameter's name, default,
description, range, choices and whether it may change at run time are written once;
``config/localize.yaml`` carries the same keys (a test checks it).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType
from rclpy._rclpy_pybind11 import RCLError
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
    qos_profile_system_default,
)

from vpr_core.config import Knob, from_surface, knob, knobs, validate
from vpr_core.errors import VprError
from vpr_core.localize.config import LocalizerConfig
from vpr_core.localize.outputs import MAP_FRAME

__all__ = ["IMAGE_QOS", "INPUTS", "OPTIONAL", "PARAMETERS", "RUNTIME", "NodeSettings", "declare", "read"]

IMAGE_QOS = {
    # Reliable keep-last-1: newest frame only, and large frames survive Fast DDS defaults
    # (measured here: best-effort received 1 of 20 960x540 frames, reliable 20 of 20).
    "reliable": QoSProfile(
        depth=1,
        history=HistoryPolicy.KEEP_LAST,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.VOLATILE,
    ),
    "sensor_data": qos_profile_sensor_data,
    "system_default": qos_profile_system_default,
}
#: raw: sensor_msgs/Image; compressed: sensor_msgs/CompressedImage (jpeg/png).
INPUTS = ("raw", "compressed")


@dataclass
class NodeSettings:
    """What the node needs beside the pipeline: where frames come from, frames of the outputs, diagnostics."""

    map_path: str = knob("", "Map file built with 'vpr map build' (required).", type=str, ros="map_path")
    image_topic: str = knob(
        "image",
        "Camera topic (sensor_msgs/Image, or CompressedImage with input: compressed).",
        type=str,
        ros="image_topic",
    )
    input: str = knob(
        "raw",
        "raw (sensor_msgs/Image) or compressed (sensor_msgs/CompressedImage, jpeg/png).",
        type=str,
        choices=lambda: INPUTS,
        ros="input",
    )
    odom_topic: str = knob(
        "",
        "nav_msgs/Odometry topic for the temporal filter: distance and turn between frame stamps; empty = none (the "
        "filter's speed prior, max_speed).",
        type=str,
        ros="odom_topic",
    )
    camera_info_topic: str = knob(
        "",
        "sensor_msgs/CameraInfo of the camera: its field of view (K, width) sets camera_fov for the heading from "
        "matches; empty = camera_fov as given.",
        type=str,
        ros="camera_info_topic",
    )
    autostart: bool = knob(
        True,
        "Configure and activate at start-up (ros2 run, the launch file); false: wait for lifecycle_manager or "
        "~/change_state. A failed autostart exits with status 1.",
        type=bool,
        ros="autostart",
    )
    map_frame: str = knob(
        MAP_FRAME,
        "frame_id of ~/pose: ENU metres (local tangent plane) at the map origin. Give the transform from your "
        "map/odom tree to it (README: Fusing with robot_localization / Nav2).",
        type=str,
        ros="map_frame",
    )
    base_frame: str = knob(
        "base_link",
        "The robot's base frame: ~/pose is its position, from the camera's by TF (base_frame -> the image's "
        "frame_id). Without that transform (or tf2_ros) the node says so once and publishes the camera's position; "
        "empty: always the camera's.",
        type=str,
        ros="base_frame",
    )
    map_frame_parent: str = knob(
        "",
        "Parent frame of map_frame (e.g. map, your Nav2 map): the node broadcasts the static transform "
        "map_frame_parent -> map_frame from map_datum, and publish_initial_pose and ~/relocalize_pose use it. "
        "Empty: no transform (give one yourself).",
        type=str,
        ros="map_frame_parent",
    )
    map_datum: list = knob(
        [],
        "[lat, lon] or [lat, lon, alt] of map_frame_parent's origin (an ENU plane there); empty: the map's origin "
        "(then the transform is the identity).",
        type=list,
        ros="map_datum",
    )
    publish_initial_pose: bool = knob(
        False,
        "Publish the first STATUS_FIX pose after activation and after each ~/relocalize to /initialpose in "
        "map_frame_parent (Nav2's AMCL takes it; yaw unknown: its variance is pi^2).",
        type=bool,
        ros="publish_initial_pose",
    )
    fix_frame_id: str = knob(
        "", "frame_id of ~/fix; empty = the camera image's frame_id.", type=str, ros="fix_frame_id"
    )
    publish_pose_when_lost: bool = knob(
        False,
        "Publish ~/pose also for STATUS_NO_FIX estimates (a pose consumer has no status to check: keep false).",
        type=bool,
        ros="publish_pose_when_lost",
    )
    image_qos: str = knob(
        "reliable",
        "reliable (keep-last 1), sensor_data (best effort) or system_default.",
        type=str,
        choices=lambda: tuple(IMAGE_QOS),
        ros="image_qos",
    )
    publish_debug_image: bool = knob(
        False, "Publish ~/debug_image: the frame beside its best map match.", type=bool, ros="publish_debug_image"
    )
    map_images_dir: str = knob(
        "",
        "Folder of the map's images for the debug view; empty = the folder the map was built from.",
        type=str,
        ros="map_images_dir",
    )
    diagnostics_period: float = knob(
        1.0,
        "Seconds between /diagnostics messages (applies at once, in every state).",
        type=float,
        range=(0.1, 60.0),
        ros="diagnostics_period",
        runtime=True,
    )


_TYPES = {
    list: ParameterType.PARAMETER_DOUBLE_ARRAY,
    str: ParameterType.PARAMETER_STRING,
    int: ParameterType.PARAMETER_INTEGER,
    float: ParameterType.PARAMETER_DOUBLE,
    bool: ParameterType.PARAMETER_BOOL,
}


def _descriptor(k: Knob) -> ParameterDescriptor:
    text = k.help
    if k.choices is not None:
        text += f" One of: {', '.join(c or '(empty)' for c in k.choices())}."
    text += " Changeable while running." if k.runtime else " Takes effect at configure."
    d = ParameterDescriptor(description=text, type=_TYPES[k.type])
    if k.range is not None and k.type is int:
        d.integer_range = [IntegerRange(from_value=int(k.range[0]), to_value=int(k.range[1]), step=1)]
    elif k.range is not None:
        d.floating_point_range = [
            FloatingPointRange(from_value=float(k.range[0]), to_value=float(k.range[1]), step=0.0)
        ]
    return d


def _parameters() -> dict[str, tuple[Any, ParameterDescriptor]]:
    out: dict[str, tuple[Any, ParameterDescriptor]] = {}
    for cls in (NodeSettings, LocalizerConfig):
        for k in knobs(cls, "ros"):
            s = k.on("ros")
            out[s.name] = (s.default, _descriptor(k))
    return out


#: name -> (default, descriptor) of every parameter the node declares.
PARAMETERS = _parameters()
#: Parameters that apply at once, in any lifecycle state; the others are read at configure.
RUNTIME = {k.on("ros").name for cls in (NodeSettings, LocalizerConfig) for k in knobs(cls, "ros") if k.runtime}


#: Array parameters whose default is empty: declared by type (rclpy cannot type an empty list), unset until given;
#: config/localize.yaml shows them commented out (rcl's YAML parser refuses an empty array).
OPTIONAL = {name for name, (default, _) in PARAMETERS.items() if default == []}


def declare(node) -> None:
    from rclpy.parameter import Parameter

    for name, (default, desc) in PARAMETERS.items():
        node.declare_parameter(name, Parameter.Type.DOUBLE_ARRAY if name in OPTIONAL else default, desc)


def _value(node, name: str) -> Any:
    from rclpy.exceptions import ParameterUninitializedException

    try:
        value = node.get_parameter(name).value
    except ParameterUninitializedException:
        return []
    return list(value) if name in OPTIONAL else value


def check_topics(node, settings: NodeSettings) -> None:
    """Every ``*_topic`` setting is a valid ROS name: rcl would otherwise refuse it only when the subscription is
    made (on activate), and a node started with ``autostart`` would sit configured and deaf."""
    from rclpy.exceptions import InvalidTopicNameException
    from rclpy.validate_topic_name import validate_topic_name

    for name in (f.name for f in dataclasses.fields(settings) if f.name.endswith("_topic")):
        value = getattr(settings, name)
        if not value:
            continue
        try:
            validate_topic_name(value)
            node.resolve_topic_name(value)
        except (InvalidTopicNameException, RCLError, ValueError) as e:
            why = str(e).splitlines()[0].removeprefix("Invalid topic name: ").rstrip(":")
            raise VprError(
                f"parameter {name}: {value!r} is not a valid ROS topic name ({why}); "
                "use letters, digits, '_' and '/' (e.g. /camera/image_raw)"
            ) from None


def read(node) -> tuple[NodeSettings, LocalizerConfig]:
    """The declared parameters as the two config objects, validated (one-line VprError naming the parameter)."""
    values = {name: _value(node, name) for name in PARAMETERS}
    settings = from_surface(NodeSettings, values, "ros")
    validate(settings, "ros")
    if not settings.map_path:
        raise VprError(
            "parameter map_path is empty; pass -p map_path:=/path/to/route.vprmap (build one with 'vpr map build')"
        )
    check_topics(node, settings)
    if settings.publish_initial_pose and not settings.map_frame_parent:
        raise VprError(
            "parameter publish_initial_pose needs map_frame_parent (the frame of your Nav2 map, e.g. map): "
            "/initialpose must be in that frame"
        )
    return settings, from_surface(LocalizerConfig, values, "ros").validate("ros")
