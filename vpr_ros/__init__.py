"""rclpy adapter of vpr_core: the ``vpr_localizer`` node and its message conversions."""
