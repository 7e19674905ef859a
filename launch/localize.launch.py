"""Start the vpr_localizer node: ros2 launch vpr_ros localize.launch.py map:=route.vprmap
image_topic:=/camera/image_raw [namespace:=robot1] [respawn:=true] [log_level:=debug] [autostart:=false]

The node exits with status 1 when it cannot serve (a map that does not load, a dead worker): respawn:=true
restarts it. autostart:=false leaves configure/activate to a lifecycle manager (nav2_lifecycle_manager)."""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

#: Seconds before a respawn (with respawn:=true): a node that exits at once does not spin the CPU.
RESPAWN_DELAY_S = 2.0


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
        DeclareLaunchArgument(
            "autostart", default_value="true", description="configure + activate at start; false: a lifecycle manager"
        ),
        DeclareLaunchArgument(
            "respawn", default_value="false", description="restart the node when it exits (it exits 1 on a fatal fault)"
        ),
        DeclareLaunchArgument("log_level", default_value="info", description="debug, info, warn, error or fatal"),
    ]
    node = Node(
        package="vpr_ros",
        executable="localize_node",
        name="vpr_localizer",
        namespace=LaunchConfiguration("namespace"),
        output="screen",
        respawn=LaunchConfiguration("respawn"),
        respawn_delay=RESPAWN_DELAY_S,
        ros_arguments=["--log-level", LaunchConfiguration("log_level")],
        parameters=[
            LaunchConfiguration("config"),
            {
                "map_path": LaunchConfiguration("map"),
                "image_topic": LaunchConfiguration("image_topic"),
                "use_sim_time": LaunchConfiguration("use_sim_time"),
                "autostart": LaunchConfiguration("autostart"),
            },
        ],
    )
    return LaunchDescription([*args, node])
