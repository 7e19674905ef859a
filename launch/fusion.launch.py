"""vpr_localizer fused by robot_localization (recipes in config/fusion_*.yaml; needs robot_localization, tf2_ros).

    ros2 launch vpr_ros fusion.launch.py map:=route.vprmap image_topic:=/camera/image_raw mode:=pose \
        vpr_map_x:=0 vpr_map_y:=0 vpr_map_yaw:=0

mode:=pose fuses ~/pose (x, y) into the map EKF; mode:=navsat sends ~/fix through navsat_transform_node.
The static transform map -> vpr_map places the map's ENU origin in your map frame (README explains how to
measure it); with mode:=navsat it is not needed (navsat_transform finds the datum itself).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.conditions import LaunchConfigurationEquals
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

#: The frames and topics the recipes connect (the node's defaults).
VPR_MAP_FRAME = "vpr_map"
VPR_FIX_TOPIC = "/vpr_localizer/fix"


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory("vpr_ros")
    args = [
        DeclareLaunchArgument("map", description="map file built with 'vpr map build'"),
        DeclareLaunchArgument("image_topic", default_value="image", description="camera topic"),
        DeclareLaunchArgument("mode", default_value="pose", choices=["pose", "navsat"], description="fusion recipe"),
        DeclareLaunchArgument("vpr_map_x", default_value="0.0", description="vpr_map origin in the map frame, m"),
        DeclareLaunchArgument("vpr_map_y", default_value="0.0", description="vpr_map origin in the map frame, m"),
        DeclareLaunchArgument("vpr_map_yaw", default_value="0.0", description="rotation map -> vpr_map, rad"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="use /clock (bag replay)"),
    ]
    localize = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(share, "launch", "localize.launch.py")),
        launch_arguments={
            "map": LaunchConfiguration("map"),
            "image_topic": LaunchConfiguration("image_topic"),
            "use_sim_time": LaunchConfiguration("use_sim_time"),
        }.items(),
    )
    vpr_map_tf = Node(
        package="tf2_ros",
        executable="static_transform_publisher",
        name="map_to_vpr_map",
        arguments=["--x", LaunchConfiguration("vpr_map_x"), "--y", LaunchConfiguration("vpr_map_y"),
                   "--yaw", LaunchConfiguration("vpr_map_yaw"), "--frame-id", "map", "--child-frame-id", VPR_MAP_FRAME],
        condition=LaunchConfigurationEquals("mode", "pose"),
    )  # fmt: skip
    sim = {"use_sim_time": LaunchConfiguration("use_sim_time")}
    ekf_pose = Node(
        package="robot_localization",
        executable="ekf_node",
        name="ekf_filter_node_map",
        parameters=[os.path.join(share, "config", "fusion_pose.yaml"), sim],
        remappings=[("odometry/filtered", "odometry/global")],
        condition=LaunchConfigurationEquals("mode", "pose"),
    )
    navsat = Node(
        package="robot_localization",
        executable="navsat_transform_node",
        name="navsat_transform",
        parameters=[os.path.join(share, "config", "fusion_navsat.yaml"), sim],
        remappings=[("gps/fix", VPR_FIX_TOPIC), ("odometry/filtered", "odometry/global")],
        condition=LaunchConfigurationEquals("mode", "navsat"),
    )
    ekf_navsat = Node(
        package="robot_localization",
        executable="ekf_node",
        name="ekf_filter_node_map",
        parameters=[os.path.join(share, "config", "fusion_navsat.yaml"), sim],
        remappings=[("odometry/filtered", "odometry/global")],
        condition=LaunchConfigurationEquals("mode", "navsat"),
    )
    return LaunchDescription([*args, localize, vpr_map_tf, ekf_pose, navsat, ekf_navsat])
