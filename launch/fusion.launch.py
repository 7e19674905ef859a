"""vpr_localizer fused by robot_localization (recipes in config/fusion_*.yaml; needs robot_localization, tf2_ros).

    ros2 launch vpr_ros fusion.launch.py map:=route.vprmap image_topic:=/camera/image_raw mode:=pose

mode:=pose fuses ~/pose (x, y) into the map EKF; mode:=navsat sends ~/fix through navsat_transform_node.
The map frame's origin is the datum: the map's own origin unless datum:="lat,lon[,alt]" names another (the
origin of the map frame your Nav2 map uses), rotated by map_yaw (0: x east, y north). From it this file
publishes the static transform map -> vpr_map (mode:=pose) or sets navsat_transform's datum (mode:=navsat):
nothing to compute by hand. Prerequisites: odom -> base_link from an odom-frame EKF or the base driver; no AMCL.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

#: The frames and topics the recipes connect (the node's defaults).
VPR_MAP_FRAME = "vpr_map"
VPR_FIX_TOPIC = "/vpr_localizer/fix"
IMU_TOPIC = "imu/data"
#: What the recipes set on vpr_localizer beside config/localize.yaml: a Kalman filter takes each accepted fix as
#: right (the gate handles the rest), so the fix's covariance is its place's spread and more confidence is asked.
FUSION_NODE_PARAMS = {"covariance_model": "inlier", "min_confidence": 0.8}


def _nodes(context, share: str) -> list:
    arg = lambda name: LaunchConfiguration(name).perform(context)  # noqa: E731
    mode, sim = arg("mode"), {"use_sim_time": arg("use_sim_time") == "true"}
    from vpr_core.localize.frames import datum_of, map_to_vpr_map
    from vpr_core.map.format import map_origin

    lat, lon, alt = datum_of(arg("map"), arg("datum"))
    yaw = float(arg("map_yaw"))
    localizer = Node(
        package="vpr_ros",
        executable="localize_node",
        name="vpr_localizer",
        output="screen",
        parameters=[os.path.join(share, "config", "localize.yaml"), FUSION_NODE_PARAMS,
                    {"map_path": arg("map"), "image_topic": arg("image_topic"), **sim}],
    )  # fmt: skip
    if mode == "navsat":
        recipe = os.path.join(share, "config", "fusion_navsat.yaml")
        navsat = Node(
            package="robot_localization",
            executable="navsat_transform_node",
            name="navsat_transform",
            parameters=[recipe, sim, {"datum": [lat, lon, yaw], "wait_for_datum": True}],
            remappings=[("gps/fix", VPR_FIX_TOPIC), ("imu", IMU_TOPIC), ("odometry/filtered", "odometry/global")],
        )
        ekf = Node(package="robot_localization", executable="ekf_node", name="ekf_filter_node_map",
                   parameters=[recipe, sim], remappings=[("odometry/filtered", "odometry/global")])  # fmt: skip
        return [localizer, navsat, ekf]
    x, y, z, rot = map_to_vpr_map((lat, lon, alt), map_origin(arg("map")), yaw)
    tf = Node(
        package="tf2_ros",
        executable="static_transform_publisher",
        name="map_to_vpr_map",
        arguments=["--x", str(x), "--y", str(y), "--z", str(z), "--yaw", str(rot),
                   "--frame-id", "map", "--child-frame-id", VPR_MAP_FRAME],
    )  # fmt: skip
    ekf = Node(package="robot_localization", executable="ekf_node", name="ekf_filter_node_map",
               parameters=[os.path.join(share, "config", "fusion_pose.yaml"), sim],
               remappings=[("odometry/filtered", "odometry/global")])  # fmt: skip
    return [localizer, tf, ekf]


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory("vpr_ros")
    args = [
        DeclareLaunchArgument("map", description="map file built with 'vpr map build'"),
        DeclareLaunchArgument("image_topic", default_value="image", description="camera topic"),
        DeclareLaunchArgument("mode", default_value="pose", choices=["pose", "navsat"], description="fusion recipe"),
        DeclareLaunchArgument(
            "datum", default_value="", description="map frame origin 'lat,lon[,alt]'; empty: the map's"
        ),
        DeclareLaunchArgument("map_yaw", default_value="0.0", description="map frame x axis from east, rad"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="use /clock (bag replay)"),
    ]
    return LaunchDescription([*args, OpaqueFunction(function=_nodes, args=[share])])
