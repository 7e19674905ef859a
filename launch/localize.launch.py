"""Start the vpr_localizer node: ros2 launch vpr_ros localize.launch.py map:=route.vprmap
image_topic:=/camera/image_raw"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory("vpr_ros")
    args = [
        DeclareLaunchArgument("map", description="map file built with 'vpr map build'"),
        DeclareLaunchArgument(
            "config", default_value=os.path.join(share, "config", "localize.yaml"), description="parameter file"
        ),
        DeclareLaunchArgument("image_topic", default_value="image", description="camera topic"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="use /clock (bag replay)"),
        DeclareLaunchArgument("namespace", default_value="", description="node namespace"),
    ]
    node = Node(
        package="vpr_ros",
        executable="localize_node",
        name="vpr_localizer",
        namespace=LaunchConfiguration("namespace"),
        output="screen",
        parameters=[
            LaunchConfiguration("config"),
            {
                "map_path": LaunchConfiguration("map"),
                "image_topic": LaunchConfiguration("image_topic"),
                "use_sim_time": LaunchConfiguration("use_sim_time"),
            },
        ],
    )
    return LaunchDescription([*args, node])
